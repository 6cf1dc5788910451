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
    """The current decisions that give an image of the project a verified label: what the
    model trains on. Unless the project says otherwise, not the labels the model decided
    mostly by itself (issue 16): a model trained on its own mistakes would confirm them."""
    decisions = Decision.objects.filter(
        image__project=project, is_current=True, excluded=False, image__state__in=VERIFIED_STATES
    )
    if not project.train_on_model_decided:
        decisions = decisions.exclude(rule=Decision.Rule.DYNAMIC, image__model_decided=True)
    return decisions


def unlabeled_image_files(*, project: Project, limit: int) -> list[str]:
    """Cached copies (storage names) of up to `limit` project images without a verified label:
    the pool semi-supervised training learns from. Ordered by SHA-256, a stable sample that
    does not favour old or new images. Any image whose label training does not take as
    verified is in this pool: its pseudo-labels come from the model being trained, never
    from a stored label."""
    return list(
        Image.objects.filter(project=project)
        .exclude(preprocessed="")
        .exclude(pk__in=verified_decisions(project=project).values("image_id"))
        .order_by("sha256")
        .values_list("preprocessed", flat=True)[:limit]
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
