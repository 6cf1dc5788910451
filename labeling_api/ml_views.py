"""REST API of the ML loop: model versions with their figures, and starting a training."""

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.models import ModelVersion, ProjectMember, TrainingRun
from annotate.services import ml, ml_runs
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsTeamAdmin


class ReliabilityBandSerializer(serializers.Serializer[dict[str, Any]]):
    """One confidence band of a model version's calibrated predictions."""

    low = serializers.FloatField(help_text="Lower bound of the band's confidence.")
    high = serializers.FloatField()
    claimed = serializers.FloatField(help_text="Mean confidence of the predictions in the band.")
    measured = serializers.FloatField(help_text="Share of them that were right.")
    count = serializers.IntegerField()


class ModelVersionOutputSerializer(serializers.ModelSerializer[ModelVersion]):
    is_active = serializers.SerializerMethodField()
    reliability = ReliabilityBandSerializer(many=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "is_active",
            "arch",
            "weights_source",
            "device",
            "train_size",
            "holdout_size",
            "top1",
            "top5",
            "nll",
            "baseline_top1",
            "per_class",
            "temperature",
            "ece",
            "reliability",
            "calibration_method",
            "calibration_size",
            "unlabeled_size",
            "training_seconds",
            "classes",
            "training_run",
            "created_at",
        ]

    def get_is_active(self, version: ModelVersion) -> bool:
        return bool(version.pk == self.context["active_version"])


class TrainingRunOutputSerializer(serializers.ModelSerializer[TrainingRun]):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "reason",
            "config",
            "verified_count",
            "attempts",
            "promoted",
            "model_version",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.pk if version else None


class ProjectModelsApi(APIView):
    permission_classes = [IsTeamAdmin]

    @extend_schema(
        responses=inline_serializer(
            "ProjectModelsOutput",
            {
                "active_version": serializers.IntegerField(allow_null=True),
                "verified_labels": serializers.IntegerField(),
                "versions": ModelVersionOutputSerializer(many=True),
                "runs": TrainingRunOutputSerializer(many=True),
            },
        )
    )
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        overview = selectors.project_models_overview(project=project)
        context = {"active_version": overview["active_version"]}
        return Response(
            {
                "active_version": overview["active_version"],
                "verified_labels": overview["verified_labels"],
                "versions": ModelVersionOutputSerializer(
                    overview["versions"], many=True, context=context
                ).data,
                "runs": TrainingRunOutputSerializer(overview["runs"], many=True).data,
            }
        )


class ModelTrainApi(APIView):
    permission_classes = [IsTeamAdmin]

    class ModelTrainInputSerializer(serializers.Serializer[Any]):
        arch = serializers.ChoiceField(choices=ml.ARCHITECTURES, required=False)
        epochs = serializers.IntegerField(min_value=1, max_value=500, required=False)
        learning_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)

    @extend_schema(request=ModelTrainInputSerializer, responses={202: TrainingRunOutputSerializer})
    def post(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.ADMIN
        )
        data = self.ModelTrainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = ml_runs.training_request(
            project=project, requested_by=request.user, overrides=dict(data.validated_data)
        )
        return Response(TrainingRunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)
