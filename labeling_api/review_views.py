"""Review and quality: the disputed queue, reviewers' decisions, the annotator table."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors, verification_selectors
from annotate.models import AnnotatorStats, Image
from annotate.services import ml, review
from annotate.services.errors import NotFound
from labeling_api.permissions import IsReviewer
from labeling_api.serializers import DecisionOutputSerializer, ImageRefSerializer
from labeling_api.views import _project


class ReviewItemSerializer(ImageRefSerializer):
    votes = serializers.SerializerMethodField()
    decision = serializers.SerializerMethodField()
    suggestion = serializers.SerializerMethodField()
    candidates = serializers.SerializerMethodField(
        help_text="Candidate labels under verification, with their yes/no votes."
    )

    class Meta:
        model = Image
        fields = [
            "id",
            "url",
            "width",
            "height",
            "state",
            "flagged_for_review",
            "flag_reason",
            "votes_count",
            "votes",
            "decision",
            "suggestion",
            "candidates",
        ]

    def get_candidates(self, image: Image) -> list[dict]:
        return self.context.get("candidates", {}).get(image.pk, [])

    def get_votes(self, image: Image) -> list[dict]:
        return self.context["breakdowns"].get(image.pk, [])

    def get_decision(self, image: Image) -> dict | None:
        current = [d for d in image.decisions.all() if d.is_current]
        return DecisionOutputSerializer(current[0]).data if current else None

    def get_suggestion(self, image: Image) -> dict | None:
        return ml.suggestion_for_image(image_id=image.pk)


class ReviewQueueApi(GenericAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewItemSerializer

    @extend_schema(responses=ReviewItemSerializer(many=True))
    def get(self, request, project_id: int):
        project = _project(project_id)
        page = self.paginate_queryset(
            review.review_queue(project=project).prefetch_related("decisions__decided_by")
        )
        breakdowns = review.vote_breakdowns(images=page)
        candidates = verification_selectors.candidates_for_review(image_ids=[i.pk for i in page])
        context = {"breakdowns": breakdowns, "candidates": candidates}
        data = ReviewItemSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)


class ImageDecisionApi(APIView):
    permission_classes = [IsReviewer]

    class ImageDecisionInputSerializer(serializers.Serializer):
        label = serializers.IntegerField(allow_null=True, help_text="A label id; null excludes.")
        exclude = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses=DecisionOutputSerializer(many=True))
    def get(self, request, image_id: int):
        image = Image.objects.filter(pk=image_id).first()
        if image is None:
            raise NotFound(f"Image {image_id} does not exist.")
        return Response(
            DecisionOutputSerializer(review.decision_history(image=image), many=True).data
        )

    @extend_schema(
        request=ImageDecisionInputSerializer,
        responses={
            201: inline_serializer(
                "ReviewDecisionOutput",
                {
                    "image": serializers.IntegerField(),
                    "state": serializers.CharField(),
                    "decision": DecisionOutputSerializer(),
                },
            )
        },
    )
    def post(self, request, image_id: int):
        data = self.ImageDecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decision = review.review_decide(
            image_id=image_id,
            reviewer=request.user,
            label_id=data.validated_data["label"],
            exclude=data.validated_data["exclude"],
        )
        return Response(
            {
                "image": image_id,
                "state": decision.image.state,
                "decision": DecisionOutputSerializer(decision).data,
            },
            status=status.HTTP_201_CREATED,
        )


class AnnotatorSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="user_id")
    username = serializers.CharField(source="user.username")
    agreement = serializers.SerializerMethodField()
    gold_accuracy = serializers.SerializerMethodField()
    unreliable = serializers.SerializerMethodField()
    verify_votes = serializers.SerializerMethodField()
    verify_sensitivity = serializers.SerializerMethodField()
    verify_specificity = serializers.SerializerMethodField()

    class Meta:
        model = AnnotatorStats
        fields = [
            "id",
            "username",
            "votes",
            "decided_votes",
            "agreed_votes",
            "agreement",
            "gold_votes",
            "gold_correct",
            "gold_accuracy",
            "estimated_accuracy",
            "batch_accuracy",
            "unreliable",
            "verify_votes",
            "verify_sensitivity",
            "verify_specificity",
        ]

    def _verification(self, stats: AnnotatorStats) -> dict:
        return self.context.get("verification", {}).get(stats.user_id, {})

    def get_verify_votes(self, stats: AnnotatorStats) -> int:
        return self._verification(stats).get("verify_votes", 0)

    def get_verify_sensitivity(self, stats: AnnotatorStats) -> float | None:
        return self._verification(stats).get("verify_sensitivity")

    def get_verify_specificity(self, stats: AnnotatorStats) -> float | None:
        return self._verification(stats).get("verify_specificity")

    def get_agreement(self, stats: AnnotatorStats) -> float | None:
        return stats.agreed_votes / stats.decided_votes if stats.decided_votes else None

    def get_gold_accuracy(self, stats: AnnotatorStats) -> float | None:
        return stats.gold_correct / stats.gold_votes if stats.gold_votes else None

    def get_unreliable(self, stats: AnnotatorStats) -> bool:
        return stats.estimated_accuracy < self.context["threshold"]


class AnnotatorListApi(GenericAPIView):
    permission_classes = [IsReviewer]
    serializer_class = AnnotatorSerializer

    @extend_schema(responses=AnnotatorSerializer(many=True))
    def get(self, request, project_id: int):
        project = _project(project_id)
        page = self.paginate_queryset(selectors.project_annotators(project=project))
        verification = verification_selectors.annotators_verification(
            project_id=project.pk, user_ids=[stats.user_id for stats in page]
        )
        context = {"threshold": project.reliability_threshold, "verification": verification}
        return self.get_paginated_response(
            AnnotatorSerializer(page, many=True, context=context).data
        )
