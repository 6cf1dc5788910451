"""Output shapes shared by several API views. Input serializers live beside their view."""

import functools
from typing import Any

from django.urls import get_script_prefix, reverse
from django.utils.translation import get_language
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate import selectors
from annotate.models import Assignment, Decision, Image, Label, Project, User


class LabelParentSerializer(serializers.Serializer[Any]):
    wnid = serializers.CharField()
    name = serializers.CharField(help_text="Empty when words.txt did not name it.")


class LabelOutputSerializer(serializers.ModelSerializer[Label]):
    """A label as selectors.label_catalog() shows it (the list is built there, for speed)."""

    synonyms = serializers.ListField(child=serializers.CharField())
    # Named like Field.parent, which the stubs see; DRF's metaclass takes declared fields off
    # the class, so at run time the attribute is the binding's as usual.
    parent = serializers.SerializerMethodField(  # type: ignore[assignment]
        help_text="The WordNet synset one level up."
    )

    names = serializers.DictField(
        child=serializers.CharField(), help_text='The name in other languages: {"zh-hans": "猫"}.'
    )
    display_name = serializers.SerializerMethodField(
        help_text="The name in the request's language (Accept-Language, or the language chosen "
        "on the pages), else `name`."
    )

    class Meta:
        model = Label
        fields = [
            "id",
            "wnid",
            "name",
            "gloss",
            "position",
            "synonyms",
            "names",
            "display_name",
            "parent",
        ]

    def get_display_name(self, label: Label) -> str:
        return label.name_in(get_language())

    @extend_schema_field(LabelParentSerializer(allow_null=True))
    def get_parent(self, label: Label) -> dict[str, Any] | None:
        return {"wnid": label.parent_wnid, "name": label.parent_name} if label.parent_wnid else None


class ProjectOutputSerializer(serializers.ModelSerializer[Project]):
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
            "suggestion_threshold",
            "semi_supervised",
            "serving_order",
            "plurality_at_max_votes",
            "gold_rate",
            "gold_rate_min",
            "gold_half_life",
            "reliability_threshold",
            "model_max_accuracy",
            "flag_confidence",
            "train_on_model_decided",
            "lease_seconds",
            "task",
            "grid_size",
            "candidate_min_probability",
            "when_all_rejected",
            "private",
            "review_any_state",
            "labels",
            "progress",
            "created_at",
        ]

    def get_progress(self, project: Project) -> dict[str, int]:
        progress: dict[str, int] = self.context["progress"][project.pk]
        return progress


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


class ImageRefSerializer(serializers.ModelSerializer[Image]):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "url", "width", "height"]

    def get_url(self, image: Image) -> str:
        return image_url(image.pk)


class DecisionOutputSerializer(serializers.ModelSerializer[Decision]):
    decided_by = serializers.SlugRelatedField[User](slug_field="username", read_only=True)
    rule_display = serializers.CharField(
        source="get_rule_display",
        read_only=True,
        help_text="The rule's name in the request's language, for pages.",
    )

    class Meta:
        model = Decision
        fields = [
            "label",
            "excluded",
            "rule",
            "rule_display",
            "confidence",
            "votes_count",
            "decided_by",
            "created_at",
        ]


def current_decision(image: Image) -> dict[str, Any] | None:
    """The image's current decision, shaped; read from `current_decisions` where the selector
    fetched it with the image (selectors.images_for_review, review_queue), else queried."""
    current = getattr(image, "current_decisions", None)
    if current is None:
        current = list(image.decisions.filter(is_current=True))
    return DecisionOutputSerializer(current[0]).data if current else None


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

    def get_decision(self, image: Image) -> dict[str, Any] | None:
        return current_decision(image)


class SuggestionTopSerializer(serializers.Serializer[Any]):
    # A field named `label` shadows Field.label (its title) in the stubs; DRF keeps the two
    # apart (the title is set per instance), and the API names this field `label`.
    label = serializers.IntegerField()  # type: ignore[assignment]
    probability = serializers.FloatField()


class SuggestionSerializer(serializers.Serializer[Any]):
    label = serializers.IntegerField()  # type: ignore[assignment]
    confidence = serializers.FloatField()
    top = SuggestionTopSerializer(
        many=True, help_text="The model's most probable labels (at most 5), most probable first."
    )


_datetime = serializers.DateTimeField()


def assignment_answer(assignment: Assignment, project_id: int) -> dict[str, Any]:
    """The lease answer, built without serializer machinery: it is on every volunteer's every
    image. Shape documented (and checked against) AssignmentOutputSerializer. No labels: the
    page reads them once (selectors.label_catalog), so the answer's size stays the same at any
    label count."""
    image = assignment.image
    # Read with the lease itself where it could be (PostgreSQL), else here.
    if hasattr(assignment, "leased_suggestion"):
        suggestion = assignment.leased_suggestion
    else:
        suggestion = selectors.image_suggestion(project_id=project_id, image_id=image.pk)
    return {
        "id": assignment.pk,
        "image": {
            "id": image.pk,
            "url": image_url(image.pk),
            "width": image.width,
            "height": image.height,
        },
        "suggestion": suggestion,
        "expires_at": _datetime.to_representation(assignment.expires_at),
    }


class AssignmentOutputSerializer(serializers.ModelSerializer[Assignment]):
    image = ImageRefSerializer(read_only=True)
    suggestion = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "image", "suggestion", "expires_at"]

    @extend_schema_field(SuggestionSerializer(allow_null=True))
    def get_suggestion(self, assignment: Assignment) -> dict[str, Any] | None:
        # The active model's calibrated top labels, when the project shows suggestions.
        return selectors.image_suggestion(
            project_id=assignment.image.project_id, image_id=assignment.image_id
        )
