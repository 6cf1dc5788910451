"""Review and quality: the disputed queue, reviewers' decisions, the annotator table."""

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.flag_reasons import flag_reason_display
from annotate.models import AnnotatorStats, Image, ProjectMember
from annotate.selectors import verification as verification_selectors
from annotate.services import review
from labeling_api.authentication import AuthenticatedRequest
from labeling_api.permissions import IsTeamReviewer
from labeling_api.serializers import (
    DecisionOutputSerializer,
    ImageRefSerializer,
    current_decision,
)


class ReviewItemSerializer(ImageRefSerializer):
    votes = serializers.SerializerMethodField()
    decision = serializers.SerializerMethodField()
    suggestion = serializers.SerializerMethodField()
    state_display = serializers.CharField(
        source="get_state_display",
        read_only=True,
        help_text="The state's name in the request's language, for pages.",
    )
    flag_reason_display = serializers.SerializerMethodField(
        help_text="flag_reason in the request's language, for pages."
    )
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
            "state_display",
            "flagged_for_review",
            "flag_reason",
            "flag_reason_display",
            "votes_count",
            "votes",
            "decision",
            "suggestion",
            "candidates",
        ]

    def get_candidates(self, image: Image) -> list[dict[str, Any]]:
        candidates: list[dict[str, Any]] = self.context["candidates"].get(image.pk, [])
        return candidates

    # Each read from what the view fetched for the whole page (selectors.review_details and
    # review_queue's current decisions): no query per row.
    def get_votes(self, image: Image) -> list[dict[str, Any]]:
        votes: list[dict[str, Any]] = self.context["details"].breakdowns.get(image.pk, [])
        return votes

    def get_decision(self, image: Image) -> dict[str, Any] | None:
        return current_decision(image)

    def get_flag_reason_display(self, image: Image) -> str:
        return flag_reason_display(image.flag_reason)

    def get_suggestion(self, image: Image) -> dict[str, Any] | None:
        suggestion: dict[str, Any] | None = self.context["details"].suggestions.get(image.pk)
        return suggestion


class ReviewQueueApi(GenericAPIView[Image]):
    permission_classes = [IsTeamReviewer]
    serializer_class = ReviewItemSerializer

    @extend_schema(responses=ReviewItemSerializer(many=True))
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.REVIEWER
        )
        page = self.paginate_queryset(selectors.review_queue(project=project))
        details = selectors.review_details(images=page or [])
        candidates = verification_selectors.candidates_for_review(
            image_ids=[image.pk for image in page or []]
        )
        context = {"details": details, "candidates": candidates}
        data = ReviewItemSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)


class ImageDecisionApi(APIView):
    permission_classes = [IsTeamReviewer]

    class ImageDecisionInputSerializer(serializers.Serializer[Any]):
        # `label` shadows Field.label in the stubs only (see serializers.SuggestionSerializer).
        label = serializers.IntegerField(  # type: ignore[assignment]
            allow_null=True, help_text="A label id; null excludes."
        )
        exclude = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses=DecisionOutputSerializer(many=True))
    def get(self, request: AuthenticatedRequest, image_id: int) -> Response:
        image = selectors.access_image_for_reviewer(user=request.user, image_id=image_id)
        return Response(
            DecisionOutputSerializer(selectors.decision_history(image=image), many=True).data
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
    def post(self, request: AuthenticatedRequest, image_id: int) -> Response:
        data = self.ImageDecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        selectors.access_image_for_reviewer(user=request.user, image_id=image_id)
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


class AnnotatorSerializer(serializers.ModelSerializer[AnnotatorStats]):
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

    def _verification(self, stats: AnnotatorStats) -> dict[str, Any]:
        found: dict[str, Any] = self.context.get("verification", {}).get(stats.user_id, {})
        return found

    def get_verify_votes(self, stats: AnnotatorStats) -> int:
        return int(self._verification(stats).get("verify_votes", 0))

    def get_verify_sensitivity(self, stats: AnnotatorStats) -> float | None:
        return self._verification(stats).get("verify_sensitivity")

    def get_verify_specificity(self, stats: AnnotatorStats) -> float | None:
        return self._verification(stats).get("verify_specificity")

    def get_agreement(self, stats: AnnotatorStats) -> float | None:
        return stats.agreed_votes / stats.decided_votes if stats.decided_votes else None

    def get_gold_accuracy(self, stats: AnnotatorStats) -> float | None:
        return stats.gold_correct / stats.gold_votes if stats.gold_votes else None

    def get_unreliable(self, stats: AnnotatorStats) -> bool:
        return bool(stats.estimated_accuracy < self.context["threshold"])


class AnnotatorListApi(GenericAPIView[AnnotatorStats]):
    permission_classes = [IsTeamReviewer]
    serializer_class = AnnotatorSerializer

    @extend_schema(responses=AnnotatorSerializer(many=True))
    def get(self, request: AuthenticatedRequest, project_id: int) -> Response:
        project = selectors.access_project(
            user=request.user, project_id=project_id, need=ProjectMember.Role.REVIEWER
        )
        page = self.paginate_queryset(selectors.project_annotators(project=project))
        verification = verification_selectors.annotators_verification(
            project_id=project.pk, user_ids=[stats.user_id for stats in page or []]
        )
        context = {"threshold": project.reliability_threshold, "verification": verification}
        return self.get_paginated_response(
            AnnotatorSerializer(page, many=True, context=context).data
        )
