"""Reads of the ML loop: verified labels, model versions, trainings, suggestions."""

from typing import Any

from django.db.models import F, QuerySet

from annotate.models import (
    ActiveModel,
    Decision,
    Image,
    ModelVersion,
    Project,
    Suggestion,
    TrainingRun,
)

# Images whose label counts as verified: decided by the crowd (gold included) or a reviewer.
VERIFIED_STATES = (Image.State.CONSENSUS, Image.State.REVIEWED)


def verified_decisions(*, project: Project) -> QuerySet[Decision]:
    """The current decisions that give an image of the project a verified label."""
    return Decision.objects.filter(
        image__project=project, is_current=True, excluded=False, image__state__in=VERIFIED_STATES
    )


def project_verified_count(*, project: Project) -> int:
    return verified_decisions(project=project).count()


def project_model_versions(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("id")


def project_active_model_id(*, project: Project) -> int | None:
    return ActiveModel.objects.filter(project=project).values_list("version_id", flat=True).first()


def project_models_overview(*, project: Project, runs: int = 20) -> dict[str, Any]:
    """Which version is active, how many verified labels there are, every version (newest
    first) and the latest `runs` trainings."""
    return {
        "active_version": project_active_model_id(project=project),
        "verified_labels": project_verified_count(project=project),
        "versions": list(ModelVersion.objects.filter(project=project).order_by("-id")),
        "runs": list(TrainingRun.objects.filter(project=project).order_by("-id")[:runs]),
    }


def suggestions_for_images(*, image_ids: list[int]) -> dict[int, dict]:
    """{image id: {label, confidence}} of the active model, for those of the images whose
    project shows suggestions and where the calibrated confidence reaches the project's
    `suggestion_threshold` (a weaker one misleads, as on the labeling page): what
    services.ml_suggestions.suggestion_for_image gives one image, for a whole page of images
    in one query."""
    found = Suggestion.objects.filter(
        image_id__in=image_ids,
        model_version__active_in__project__show_suggestions=True,
        confidence__gte=F("model_version__active_in__project__suggestion_threshold"),
    ).values_list("image_id", "label_id", "confidence")
    return {
        image_id: {"label": label_id, "confidence": confidence}
        for image_id, label_id, confidence in found
    }
