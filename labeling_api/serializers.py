"""Output shapes shared by several API views. Input serializers live beside their view."""

import functools

from django.urls import get_script_prefix, reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate import selectors
from annotate.models import Assignment, Decision, Image, Label, Project
from annotate.services import ml


class LabelOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "wnid", "name", "gloss", "position"]


class ProjectOutputSerializer(serializers.ModelSerializer):
    labels = LabelOutputSerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "min_votes",
            "max_votes",
            "agreement",
            "mode",
            "target_confidence",
            "show_suggestions",
            "serving_order",
            "gold_rate",
            "lease_seconds",
            "task",
            "grid_size",
            "candidate_min_probability",
            "when_all_rejected",
            "labels",
            "progress",
            "created_at",
        ]

    def get_progress(self, project: Project) -> dict[str, int]:
        return self.context["progress"][project.pk]


def image_url(image_id: int) -> str:
    # reverse() once per script prefix rather than per image: it was 5% of a lease's time.
    before, after = _image_url_around_id(get_script_prefix())
    return f"{before}{image_id}{after}"


@functools.lru_cache(maxsize=16)
def _image_url_around_id(script_prefix: str) -> tuple[str, str]:
    url = reverse("api:image-file", args=[_URL_MARK])
    before, _, after = url.partition(str(_URL_MARK))
    return before, after


_URL_MARK = 987654321987  # an id that no other part of the URL contains


class ImageRefSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "url", "width", "height"]

    def get_url(self, image: Image) -> str:
        return image_url(image.pk)


class DecisionOutputSerializer(serializers.ModelSerializer):
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Decision
        fields = [
            "label",
            "excluded",
            "rule",
            "confidence",
            "votes_count",
            "decided_by",
            "created_at",
        ]


class ImageOutputSerializer(ImageRefSerializer):
    decision = serializers.SerializerMethodField()
    preprocessed = serializers.SerializerMethodField(help_text="The CNN's copy is ready.")

    class Meta:
        model = Image
        fields = [
            "id",
            "url",
            "original_name",
            "width",
            "height",
            "format",
            "size_bytes",
            "sha256",
            "state",
            "is_gold",
            "gold_label",
            "votes_count",
            "leases_count",
            "preprocessed",
            "decision",
            "created_at",
        ]

    def get_preprocessed(self, image: Image) -> bool:
        return bool(image.preprocessed)

    def get_decision(self, image: Image) -> dict | None:
        current = getattr(image, "current_decisions", None)
        if current is None:
            current = list(image.decisions.filter(is_current=True))
        return DecisionOutputSerializer(current[0]).data if current else None


class SuggestionSerializer(serializers.Serializer):
    label = serializers.IntegerField()
    confidence = serializers.FloatField()


_datetime = serializers.DateTimeField()


def assignment_answer(assignment: Assignment, project_id: int) -> dict:
    """The lease answer, built without serializer machinery: it is on every volunteer's every
    image. Shape documented (and checked against) AssignmentOutputSerializer."""
    image = assignment.image
    # Read with the lease itself where it could be (PostgreSQL), else here.
    labels, suggestion = getattr(
        assignment, "labels_and_suggestion", None
    ) or selectors.labels_and_suggestion(project_id=project_id, image_id=image.pk)
    return {
        "id": assignment.pk,
        "image": {
            "id": image.pk,
            "url": image_url(image.pk),
            "width": image.width,
            "height": image.height,
        },
        "labels": labels,
        "suggestion": suggestion,
        "expires_at": _datetime.to_representation(assignment.expires_at),
    }


class AssignmentOutputSerializer(serializers.ModelSerializer):
    image = ImageRefSerializer(read_only=True)
    labels = serializers.SerializerMethodField()
    suggestion = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "image", "labels", "suggestion", "expires_at"]

    def get_labels(self, assignment: Assignment) -> list[dict]:
        return LabelOutputSerializer(self.context["labels"], many=True).data

    @extend_schema_field(SuggestionSerializer(allow_null=True))
    def get_suggestion(self, assignment: Assignment) -> dict | None:
        # The active model's calibrated top label, when the project shows suggestions.
        return ml.suggestion_for_image(image_id=assignment.image_id)
