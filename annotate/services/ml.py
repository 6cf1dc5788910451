"""The ML loop's data and models (PRODUCT.md section 5): the backend protocol, where model
files live, on which images a model trains and is judged, and whether a new model replaces the
active one. A training run's lifecycle is in annotate.services.ml_runs; suggestions are in
annotate.services.ml_suggestions.

The PyTorch side arrives as a `MLBackend` handed in by the Celery task (worker.ml's
TorchBackend), because services never import the worker package. It takes and returns plain
data: file paths, class indices, dicts of figures.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.models import ActiveModel, Label, ModelVersion, Project
from annotate.selectors.ml import unlabeled_image_files, verified_decisions
from annotate.services.image_cache import image_cache
from annotate.services.model_store import checkpoint_local

logger = logging.getLogger(__name__)

# worker.ml.config's; "auto": the CPU default (small_cnn) or resnet18 on a GPU worker.
ARCHITECTURES = ("auto", "small_cnn", "resnet18", "mobilenet_v3_small", "resnet50")


class MLBackend(Protocol):
    def train(
        self,
        train_samples: Sequence[tuple[str, int]],
        holdout_samples: Sequence[tuple[str, int]],
        *,
        num_classes: int,
        config: dict[str, Any],
        checkpoint_path: str,
        on_progress: Callable[[int, int, int], None] | None = None,
        unlabeled_paths: Sequence[str] = (),
    ) -> dict[str, Any]: ...

    def evaluate(
        self, checkpoint_path: str, samples: Sequence[tuple[str, int]], *, config: dict[str, Any]
    ) -> dict[str, Any]: ...

    def predict(
        self, checkpoint_path: str, paths: Sequence[str], *, config: dict[str, Any]
    ) -> list[list[float]]: ...


class TrainingImpossible(Exception):
    """The data can't support a training (too few images or classes); the run fails, no retry."""


# --- reads ------------------------------------------------------------------------------------


def model_path(relative: str) -> Path:
    return Path(settings.ML_MODELS_DIR) / relative


def is_holdout(sha256: str, fraction: float | None = None) -> bool:
    """An image's side (held out or trained on) is a function of its SHA-256 alone, so it never
    changes as data grows: a new model and the active one are compared on images neither
    trained on."""
    fraction = settings.ML_HOLDOUT_FRACTION if fraction is None else fraction
    return int(sha256[:8], 16) / 0x1_0000_0000 < fraction


# --- training data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingExample:
    path: str
    label_id: int


def training_data(
    project: Project,
) -> tuple[list[int], list[TrainingExample], list[TrainingExample]]:
    """Class order (label ids) and the verified examples, split into training and held out.
    Images whose cached copy is not written yet wait for the next training."""
    classes = list(
        Label.objects.filter(project=project)
        .order_by("position", "id")
        .values_list("id", flat=True)
    )
    train: list[TrainingExample] = []
    holdout: list[TrainingExample] = []
    rows = list(
        verified_decisions(project=project)
        .exclude(image__preprocessed="")
        .values_list("image__sha256", "image__preprocessed", "label_id")
        .order_by("image_id")
    )
    # Local copies through the storage API (annotate.services.image_cache); a missing one waits.
    paths = image_cache().get_many(preprocessed for _, preprocessed, _ in rows)
    for (sha256, _, label_id), path in zip(rows, paths, strict=True):
        if path is None:
            continue
        example = TrainingExample(path, label_id)
        (holdout if is_holdout(sha256) else train).append(example)
    if len({e.label_id for e in train}) < 2:
        raise TrainingImpossible("training needs verified images of at least two labels")
    if not holdout:
        raise TrainingImpossible("no verified image falls in the held-out share yet")
    return classes, train, holdout


def unlabeled_paths(project: Project, limit: int) -> list[str]:
    """Local copies of the project's images without a verified label, for semi-supervised
    training: through the storage API into the image cache, as the labeled ones."""
    names = unlabeled_image_files(project=project, limit=limit)
    return [path for path in image_cache().get_many(names) if path is not None]


def warm_start_checkpoint(active: ModelVersion | None, classes: list[int]) -> str:
    """The active model's checkpoint when a new training may start from it: same labels in
    the same order (its output layer then fits) and its file present; else "" (cold start).
    The worker also checks architecture and input size."""
    if active is None or list(active.classes) != list(classes):
        return ""
    path = model_path(active.file)
    return str(path) if path.is_file() else ""


# --- whether a new model replaces the active one ---------------------------------------------


def beats(new: dict[str, Any], baseline: dict[str, Any] | None) -> bool:
    """Better top-1 on the same held-out images; on a tie, a lower calibrated log loss (small
    held-out sets often tie at 100%, and the model trained on more data should then win)."""
    if baseline is None:
        return True
    if new["top1"] != baseline["top1"]:
        return bool(new["top1"] > baseline["top1"])
    return bool(new["nll"] < baseline["nll"])


def baseline_figures(
    version: ModelVersion,
    holdout: list[TrainingExample],
    config: dict[str, Any],
    backend: MLBackend,
) -> dict[str, Any] | None:
    """The active model's figures on the new held-out images, mapped to its own classes (a
    label it was not trained on counts as a miss). An unreadable active checkpoint can serve
    nothing, so any new model replaces it."""
    own_index = {label_id: index for index, label_id in enumerate(version.classes)}
    samples = [(e.path, own_index.get(e.label_id, -1)) for e in holdout]
    try:
        return backend.evaluate(str(checkpoint_local(version.file)), samples, config=config)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        logger.error(
            "active model version %s can't be evaluated (%s); it will be replaced",
            version.pk,
            error,
        )
        return None


def model_promote(*, project: Project, version: ModelVersion, expected: int | None) -> bool:
    """Make `version` active if the active one is still `expected`: one conditional UPDATE (or
    the first INSERT), so two trainings finishing together can't both win."""
    now = timezone.now()
    if expected is None:
        try:
            with transaction.atomic():
                ActiveModel.objects.create(project=project, version=version, promoted_at=now)
        except IntegrityError:
            return False
        return True
    return bool(
        ActiveModel.objects.filter(project=project, version_id=expected).update(
            version=version, promoted_at=now
        )
    )
