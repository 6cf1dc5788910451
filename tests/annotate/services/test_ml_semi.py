"""Issue 22 in the services: the unlabeled pool handed to training, the project switch for
semi-supervised learning, warm starts from the active model, calibration figures recorded."""

from pathlib import Path

import pytest

from annotate.models import Image, TrainingRun
from annotate.services import jobs, ml
from annotate.services.image_cache import image_cache
from tests.annotate.services.test_ml import (
    FakeBackend,
    cached_open_image,
    execute,
    promoted_version,
    verified_images,
)
from tests.factories import ImageFactory, LabelFactory


@pytest.fixture(autouse=True)
def ml_settings(settings, tmp_path):
    settings.ML_MODELS_DIR = tmp_path / "models"
    settings.ML_MIN_TRAIN_LABELS = 10
    settings.ML_HOLDOUT_FRACTION = 0.25


@pytest.fixture
def queued(monkeypatch):
    sent = []
    monkeypatch.setattr(jobs, "publish", lambda name, *args: sent.append((name, *args)))
    return sent


class CalibratedBackend(FakeBackend):
    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        bands = [{"low": 0.9, "high": 1.0, "claimed": 0.95, "measured": 0.93, "count": 20}]
        return result | {
            "arch": "small_cnn",
            "ece": 0.02,
            "reliability": bands,
            "calibration_method": "cross-validation (3 folds) and holdout",
            "calibration_size": 24,
            "unlabeled_size": len(kwargs.get("unlabeled_paths", ())),
        }


def test_training_learns_from_the_unlabeled_images_and_never_their_labels(project, labels, queued):
    project.semi_supervised = True
    project.save()
    images = verified_images(project, labels, 24)
    unlabeled = [cached_open_image(project, f"open-{i}") for i in range(3)]
    disputed = cached_open_image(project, "disputed")
    Image.objects.filter(pk=disputed.pk).update(state=Image.State.DISPUTED)
    ImageFactory(project=project, preprocessed="")  # not cached yet: waits for the next one
    backend = CalibratedBackend()
    version = execute(TrainingRun.objects.create(project=project, reason="requested"), backend)

    call = backend.trained[0]
    assert call["config"]["semi_supervised"] is True
    # Local copies (the worker's image cache) of exactly those images' CNN copies.
    names = [i.preprocessed.name for i in [*unlabeled, disputed]]
    assert set(call["unlabeled"]) == set(image_cache().get_many(names))
    assert all(Path(path).is_file() for path in call["unlabeled"])
    # A verified image is a labeled example, never also an unlabeled one.
    labeled = {path for path, _ in call["train"] + call["holdout"]}
    assert len(labeled) == len(images) and not labeled & set(call["unlabeled"])
    assert (version.arch, version.unlabeled_size) == ("small_cnn", 4)


def test_a_project_turns_semi_supervised_learning_off(project, labels, queued):
    verified_images(project, labels, 24)
    cached_open_image(project, "open")
    project.semi_supervised = False
    project.save()
    backend = CalibratedBackend()
    version = execute(TrainingRun.objects.create(project=project, reason="requested"), backend)
    assert backend.trained[0]["unlabeled"] == []
    assert backend.trained[0]["config"]["semi_supervised"] is False
    assert version.unlabeled_size == 0


def test_each_version_records_its_calibration(project, labels, queued):
    verified_images(project, labels, 24)
    version = execute(
        TrainingRun.objects.create(project=project, reason="requested"), CalibratedBackend()
    )
    version.refresh_from_db()
    assert version.ece == 0.02 and version.calibration_size == 24
    assert version.calibration_method.startswith("cross-validation")
    assert version.reliability == [
        {"low": 0.9, "high": 1.0, "claimed": 0.95, "measured": 0.93, "count": 20}
    ]


def test_warm_start_only_with_the_same_labels(project, labels, queued):
    active = promoted_version(project, labels)
    verified_images(project, labels, 6, start=100)
    same = FakeBackend()
    execute(TrainingRun.objects.create(project=project, reason="growth"), same)
    assert same.trained[0]["config"]["warm_start"] == str(ml.model_path(active.file))

    # A new label: the active model's output layer no longer fits, so a cold start.
    LabelFactory(project=project)
    changed = FakeBackend()
    execute(TrainingRun.objects.create(project=project, reason="growth"), changed)
    assert changed.trained[0]["config"]["warm_start"] == ""


def test_no_warm_start_for_the_first_model_or_a_missing_checkpoint(project, labels, queued):
    verified_images(project, labels, 24)
    first = FakeBackend()
    version = execute(TrainingRun.objects.create(project=project, reason="requested"), first)
    assert first.trained[0]["config"]["warm_start"] == ""
    ml.model_path(version.file).unlink()
    again = FakeBackend()
    execute(TrainingRun.objects.create(project=project, reason="growth"), again)
    assert again.trained[0]["config"]["warm_start"] == ""
