"""The ML loop's rules, with a stand-in for the PyTorch backend (tests/worker covers the real
one)."""

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from annotate.models import (
    ActiveModel,
    Decision,
    Image,
    ModelVersion,
    Project,
    Suggestion,
    TrainingRun,
)
from annotate.services import jobs, ml, ml_runs, ml_suggestions, serving
from annotate.services.errors import Conflict, InvalidInput
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory


class FakeBackend:
    """Answers with chosen figures and records what it was asked."""

    def __init__(self, top1=0.9, nll=0.3, baseline_top1=0.5, baseline_nll=0.8, fail=None):
        self.top1, self.nll = top1, nll
        self.baseline_top1, self.baseline_nll = baseline_top1, baseline_nll
        self.fail = fail
        self.trained, self.evaluated, self.predicted = [], [], []

    def train(
        self,
        train_samples,
        holdout_samples,
        *,
        num_classes,
        config,
        checkpoint_path,
        on_progress=None,
        unlabeled_paths=(),
    ):
        self.trained.append(
            {
                "train": list(train_samples),
                "holdout": list(holdout_samples),
                "num_classes": num_classes,
                "config": config,
                "path": checkpoint_path,
                "unlabeled": list(unlabeled_paths),
            }
        )
        if on_progress:
            on_progress(0, 1, 1)
        if self.fail:
            raise self.fail
        Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
        Path(checkpoint_path).write_bytes(b"checkpoint")
        per_class = {i: {"support": 1, "precision": 1.0, "recall": 1.0} for i in range(num_classes)}
        return {
            "checkpoint_path": checkpoint_path,
            "weights_source": "scratch",
            "device": "cpu",
            "seconds": 0.5,
            "train_size": len(train_samples),
            "holdout_size": len(holdout_samples),
            "epochs": 1,
            "temperature": 1.5,
            "holdout": {
                "count": len(holdout_samples),
                "top1": self.top1,
                "top5": None,
                "nll": self.nll,
                "per_class": per_class,
            },
        }

    def evaluate(self, checkpoint_path, samples, *, config):
        self.evaluated.append(list(samples))
        return {
            "count": len(samples),
            "top1": self.baseline_top1,
            "top5": None,
            "nll": self.baseline_nll,
            "per_class": {},
        }

    def predict(self, checkpoint_path, paths, *, config):
        self.predicted.append(list(paths))
        # The first image is torn between two labels; the others are clear cases.
        return [[0.45, 0.4, 0.15] if i == 0 else [0.1, 0.85, 0.05] for i in range(len(paths))]


@pytest.fixture(autouse=True)
def ml_settings(settings, tmp_path):
    settings.ML_MODELS_DIR = tmp_path / "models"
    settings.ML_MIN_TRAIN_LABELS = 10
    settings.ML_RETRAIN_NEW_LABELS = 100
    settings.ML_RETRAIN_GROWTH = 0.5
    settings.ML_HOLDOUT_FRACTION = 0.25


@pytest.fixture
def queued(monkeypatch):
    """Tasks sent (by name) after commit, instead of reaching a broker."""
    sent = []
    monkeypatch.setattr(jobs, "publish", lambda name, *args: sent.append((name, *args)))
    return sent


def verified_images(project, labels, count, start=0):
    images = []
    for i in range(start, start + count):
        image = ImageFactory(
            project=project,
            state=Image.State.CONSENSUS,
            sha256=hashlib.sha256(f"ml-test-{i}".encode()).hexdigest(),
            preprocessed=default_storage.save(
                f"preprocessed/{project.pk}/{i}.jpg", ContentFile(b"jpeg")
            ),
        )
        Decision.objects.create(
            image=image, label=labels[i % len(labels)], rule=Decision.Rule.MAJORITY
        )
        images.append(image)
    return images


def cached_open_image(project, name):
    stored = default_storage.save(f"preprocessed/{project.pk}/{name}.jpg", ContentFile(b"jpeg"))
    return ImageFactory(project=project, preprocessed=stored)


def execute(run, backend):
    return ml_runs.training_run_execute(run_id=run.pk, backend=backend)


# --- when to train ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "verified, last, due",
    [
        (9, None, False),
        (10, None, True),
        (10, 10, False),
        (14, 10, False),
        (15, 10, True),
        (140, 100, False),
        (150, 100, True),
        (1090, 1000, False),
        (1100, 1000, True),
        (80, 100, False),
    ],
)
def test_retrain_is_due_on_enough_labels_then_on_growth(verified, last, due):
    # settings: at least 10 labels; growth by 100 labels or by half.
    assert ml_runs.retrain_due(verified=verified, last_verified=last) is due


def test_a_training_request_queues_one_run_after_commit(
    project, labels, admin_user, queued, django_capture_on_commit_callbacks
):
    verified_images(project, labels, 12)
    with django_capture_on_commit_callbacks(execute=True):
        run = ml_runs.training_request(
            project=project, requested_by=admin_user, overrides={"epochs": 3}
        )
    assert (run.status, run.reason, run.config, run.verified_count) == (
        "pending",
        "requested",
        {"epochs": 3},
        12,
    )
    assert queued == [("annotate.ml_train", run.pk)]

    with pytest.raises(Conflict, match=f"already pending \\(run {run.pk}\\)"):
        ml_runs.training_request(project=project)
    assert TrainingRun.objects.count() == 1


def test_a_training_request_needs_enough_verified_labels(project, labels, queued):
    verified_images(project, labels, 9)
    excluded = ImageFactory(project=project, state=Image.State.EXCLUDED)
    Decision.objects.create(image=excluded, label=None, excluded=True, rule=Decision.Rule.MAJORITY)
    with pytest.raises(InvalidInput, match="9 verified labels; training needs at least 10"):
        ml_runs.training_request(project=project)
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    "overrides", [{"arch": "vgg11"}, {"epochs": 0}, {"epochs": "5"}, {"batch_size": 4}]
)
def test_a_training_request_refuses_bad_settings(project, labels, overrides):
    verified_images(project, labels, 12)
    with pytest.raises(InvalidInput):
        ml_runs.training_request(project=project, overrides=overrides)
    assert not TrainingRun.objects.exists()


def test_beat_check_starts_trainings_where_labels_grew(labels, queued):
    grown = labels[0].project
    verified_images(grown, labels, 12)
    small = ProjectFactory()
    small_labels = [LabelFactory(project=small) for _ in range(2)]
    verified_images(small, small_labels, 5, start=100)
    started = ml_runs.projects_retrain_check()
    assert [TrainingRun.objects.get(pk=pk).project for pk in started] == [grown]
    # Nothing new: no second run, whatever the first one's outcome.
    TrainingRun.objects.update(status=TrainingRun.Status.FAILED)
    assert ml_runs.projects_retrain_check() == []
    verified_images(grown, labels, 6, start=200)  # 12 -> 18: grew by half
    assert len(ml_runs.projects_retrain_check()) == 1


# --- training and promotion -------------------------------------------------------------------


def test_the_first_model_is_promoted_and_suggestions_follow(
    project, labels, queued, django_capture_on_commit_callbacks, storage
):
    images = verified_images(project, labels, 24)
    run = TrainingRun.objects.create(project=project, reason="requested", config={"epochs": 2})
    backend = FakeBackend(top1=0.8)
    with django_capture_on_commit_callbacks(execute=True):
        version = execute(run, backend)

    call = backend.trained[0]
    held_out = {img.pk for img in images if ml.is_holdout(img.sha256)}
    assert 0 < len(held_out) < len(images)
    assert len(call["holdout"]) == len(held_out) and len(call["train"]) == len(images) - len(
        held_out
    )
    assert call["num_classes"] == 3 and call["config"]["epochs"] == 2
    assert call["path"].endswith(f"project-{project.pk}/run-{run.pk}.pt")
    assert backend.evaluated == []  # nothing active to compare with

    run.refresh_from_db()
    assert (run.status, run.promoted, run.attempts) == ("succeeded", True, 1)
    assert ActiveModel.objects.get(project=project).version == version
    assert version.classes == [label.pk for label in labels]
    assert (version.top1, version.baseline_top1, version.train_size) == (
        0.8,
        None,
        len(call["train"]),
    )
    assert set(version.per_class) == {str(label.pk) for label in labels}
    assert queued == [("annotate.ml_suggest", project.pk)]
    # The images were read through the storage API into the worker's cache; with S3 the
    # checkpoint went to the bucket too, for ML workers on other hosts.
    cache = Path(django_settings.IMAGE_CACHE_DIR)
    assert all(Path(path).is_relative_to(cache) for path, _ in call["train"] + call["holdout"])
    published = default_storage.exists(f"models/{version.file}")
    assert published == (storage == "s3")


def promoted_version(project, labels, top1=0.8):
    if not Image.objects.filter(project=project).exists():
        verified_images(project, labels, 24)
    run = TrainingRun.objects.create(project=project, reason="requested")
    version = execute(run, FakeBackend(top1=top1))
    assert ActiveModel.objects.get(project=project).version == version
    return version


def test_a_worse_model_stays_inactive(project, labels, queued):
    active = promoted_version(project, labels)
    run = TrainingRun.objects.create(project=project, reason="growth")
    backend = FakeBackend(top1=0.6, baseline_top1=0.75)
    version = execute(run, backend)

    # Compared on the same held-out images, in the active model's class order.
    assert backend.evaluated == [backend.trained[0]["holdout"]]
    run.refresh_from_db()
    assert (run.status, run.promoted) == ("succeeded", False)
    assert (version.top1, version.baseline_top1) == (0.6, 0.75)
    assert ActiveModel.objects.get(project=project).version == active
    assert ModelVersion.objects.filter(project=project).count() == 2


@pytest.mark.parametrize("nll, promoted", [(0.2, True), (0.4, False)])
def test_a_tie_in_accuracy_goes_to_the_lower_log_loss(project, labels, nll, promoted, queued):
    active = promoted_version(project, labels)
    version = execute(
        TrainingRun.objects.create(project=project, reason="growth"),
        FakeBackend(top1=0.75, nll=nll, baseline_top1=0.75, baseline_nll=0.3),
    )
    assert (ActiveModel.objects.get(project=project).version == version) is promoted
    assert (ActiveModel.objects.get(project=project).version == active) is not promoted


def test_a_label_the_active_model_lacks_counts_against_it(project, labels, queued):
    promoted_version(project, labels)
    new_label = LabelFactory(project=project)
    verified_images(project, labels + [new_label], 8, start=300)
    backend = FakeBackend()
    execute(TrainingRun.objects.create(project=project, reason="growth"), backend)
    new_class = backend.trained[0]["num_classes"] - 1
    old_targets = [target for _, target in backend.evaluated[0]]
    new_targets = [target for _, target in backend.trained[0]["holdout"]]
    assert new_class == 3 and all(
        o == -1 for o, n in zip(old_targets, new_targets, strict=False) if n == new_class
    )


def test_a_second_delivery_of_the_same_run_does_nothing(project, labels, queued):
    verified_images(project, labels, 24)
    run = TrainingRun.objects.create(project=project, reason="requested")
    backend = FakeBackend()
    assert execute(run, backend) is not None
    assert execute(run, backend) is None
    assert len(backend.trained) == 1 and ModelVersion.objects.count() == 1


def test_a_redelivered_task_takes_over_a_stale_run_unless_out_of_attempts(
    project, labels, settings, queued
):
    verified_images(project, labels, 24)
    long_ago = timezone.now() - timedelta(seconds=settings.ML_RUN_STALE_SECONDS + 1)
    run = TrainingRun.objects.create(
        project=project, reason="requested", status="running", attempts=1, heartbeat_at=long_ago
    )
    fresh = TrainingRun.objects.filter(pk=run.pk)
    assert execute(run, FakeBackend()) is not None
    assert fresh.get().attempts == 2 and fresh.get().status == "succeeded"
    lost = TrainingRun.objects.create(
        project=ProjectFactory(),
        reason="requested",
        status="running",
        attempts=settings.ML_RUN_MAX_ATTEMPTS,
        heartbeat_at=long_ago,
    )
    assert execute(lost, FakeBackend()) is None


def test_the_stale_bound_and_attempt_limit_default_to_two_minutes_and_three():
    assert django_settings.ML_RUN_STALE_SECONDS == 120
    assert django_settings.ML_RUN_MAX_ATTEMPTS == 3


def lost_worker_run(project, when, attempts=1):
    """A run a worker claimed at `when` and that has not beaten since."""
    return TrainingRun.objects.create(
        project=project,
        reason="requested",
        status="running",
        attempts=attempts,
        started_at=when,
        heartbeat_at=when,
    )


def test_a_run_whose_worker_was_lost_is_queued_again_up_to_the_limit_then_failed(
    project, labels, settings, queued
):
    settings.ML_RUN_STALE_SECONDS = 120
    settings.ML_RUN_MAX_ATTEMPTS = 3
    verified_images(project, labels, 24)
    start = timezone.now()
    run = lost_worker_run(project, start)
    alive = lost_worker_run(ProjectFactory(), start)
    fresh = TrainingRun.objects.filter(pk=run.pk)

    # Not yet stale: nothing happens.
    assert (
        ml_runs.training_runs_recover(now=start + timedelta(seconds=119)) == ml_runs.RunsRecovered()
    )
    assert queued == []

    clock = start
    for attempt in (1, 2):
        clock += timedelta(seconds=121)
        # The other run's worker is alive: it beats.
        TrainingRun.objects.filter(pk=alive.pk).update(heartbeat_at=clock)
        result = ml_runs.training_runs_recover(now=clock)
        assert result == ml_runs.RunsRecovered(requeued=1)
        assert queued[-1] == ("annotate.ml_train", run.pk)
        assert (fresh.get().status, fresh.get().attempts) == ("pending", attempt)
        assert f"attempt {attempt} lost its worker" in fresh.get().error
        # A worker takes it again, and is lost again.
        TrainingRun.objects.filter(pk=run.pk).update(
            status="running", attempts=attempt + 1, heartbeat_at=clock
        )

    clock += timedelta(seconds=121)
    TrainingRun.objects.filter(pk=alive.pk).update(heartbeat_at=clock)
    sent = len(queued)
    assert ml_runs.training_runs_recover(now=clock) == ml_runs.RunsRecovered(failed=1)
    assert len(queued) == sent
    lost = fresh.get()
    assert lost.status == "failed" and "worker lost" in lost.error and "3 attempts" in lost.error
    assert lost.finished_at == clock
    assert TrainingRun.objects.get(pk=alive.pk).status == "running"
    # The project can train again.
    assert ml_runs.training_request(project=project).status == "pending"


def test_a_requeued_run_is_trained_by_the_next_delivery(project, labels, settings, queued):
    verified_images(project, labels, 24)
    now = timezone.now()
    run = lost_worker_run(project, now - timedelta(seconds=settings.ML_RUN_STALE_SECONDS + 1))
    assert ml_runs.training_runs_recover(now=now).requeued == 1
    assert execute(run, FakeBackend()) is not None
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 2)


def test_a_pending_run_whose_message_was_lost_is_sent_again(
    project, labels, settings, queued, django_capture_on_commit_callbacks
):
    settings.ML_RUN_STALE_SECONDS = 120
    verified_images(project, labels, 24)
    monkey_sent = queued
    with django_capture_on_commit_callbacks(execute=True):
        run = ml_runs.training_request(project=project)
    monkey_sent.clear()  # the message is lost on its way
    sent_at = TrainingRun.objects.get(pk=run.pk).updated_at

    assert (
        ml_runs.training_runs_recover(now=sent_at + timedelta(seconds=100))
        == ml_runs.RunsRecovered()
    )
    assert ml_runs.training_runs_recover(
        now=sent_at + timedelta(seconds=121)
    ) == ml_runs.RunsRecovered(resent=1)
    assert monkey_sent == [("annotate.ml_train", run.pk)]
    # Sent once per stale period, not on every beat.
    assert ml_runs.training_runs_recover(now=sent_at + timedelta(seconds=130)).resent == 0
    assert ml_runs.training_runs_recover(now=sent_at + timedelta(seconds=250)).resent == 1

    assert execute(run, FakeBackend()) is not None
    assert TrainingRun.objects.get(pk=run.pk).status == "succeeded"
    assert (
        ml_runs.training_runs_recover(now=sent_at + timedelta(seconds=999))
        == ml_runs.RunsRecovered()
    )


def test_a_lost_pending_run_does_not_block_a_later_training(
    project, labels, settings, queued, django_capture_on_commit_callbacks
):
    settings.ML_RUN_STALE_SECONDS = 120
    verified_images(project, labels, 24)
    lost = TrainingRun.objects.create(project=project, reason="growth")
    # Fresh: it may still be on its way, so a request waits its turn.
    with pytest.raises(Conflict, match="already pending"):
        ml_runs.training_request(project=project)

    TrainingRun.objects.filter(pk=lost.pk).update(
        updated_at=timezone.now() - timedelta(seconds=121)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = ml_runs.training_request(project=project)

    assert run.pk != lost.pk and run.status == "pending"
    lost.refresh_from_db()
    assert lost.status == "failed" and "queue message was lost" in lost.error
    assert queued == [("annotate.ml_train", run.pk)]
    # A late copy of the lost run's message does nothing.
    assert execute(lost, FakeBackend()) is None
    assert execute(run, FakeBackend()) is not None


def test_a_crashed_training_fails_the_run_and_keeps_the_active_model(project, labels, queued):
    active = promoted_version(project, labels)
    run = TrainingRun.objects.create(project=project, reason="growth")
    with pytest.raises(RuntimeError):
        execute(run, FakeBackend(fail=RuntimeError("CUDA out of memory")))
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "RuntimeError: CUDA out of memory")
    assert ActiveModel.objects.get(project=project).version == active
    assert ModelVersion.objects.count() == 1


def test_one_labelled_class_is_not_enough_to_train(project, labels, queued):
    verified_images(project, labels[:1], 20)
    run = TrainingRun.objects.create(project=project, reason="requested")
    backend = FakeBackend()
    assert execute(run, backend) is None
    run.refresh_from_db()
    assert run.status == "failed" and "at least two labels" in run.error
    assert backend.trained == []


# --- suggestions and active learning ----------------------------------------------------------


def test_suggestions_are_computed_once_per_image_and_version(
    project, labels, queued, storage, settings, tmp_path
):
    version = promoted_version(project, labels)
    if storage == "s3":
        # Suggestions on another ML host: it has no checkpoint and fetches it from the bucket.
        settings.ML_MODELS_DIR = tmp_path / "other-ml-host"
    torn, clear = cached_open_image(project, "torn"), cached_open_image(project, "clear")
    not_cached = ImageFactory(project=project)
    backend = FakeBackend()

    assert ml_suggestions.suggestions_compute(project_id=project.pk, backend=backend) == 2
    assert ml_suggestions.suggestions_compute(project_id=project.pk, backend=backend) == 0
    assert len(backend.predicted) == 1
    assert (Path(settings.ML_MODELS_DIR) / version.file).read_bytes() == b"checkpoint"

    suggestion = Suggestion.objects.get(image=clear, model_version=version)
    assert (suggestion.label_id, suggestion.confidence) == (labels[1].pk, 0.85)
    assert [t["label"] for t in suggestion.top] == [labels[1].pk, labels[0].pk, labels[2].pk]
    assert suggestion.probabilities == {
        str(labels[0].pk): 0.1,
        str(labels[1].pk): 0.85,
        str(labels[2].pk): 0.05,
    }
    torn.refresh_from_db(), clear.refresh_from_db(), not_cached.refresh_from_db()
    assert (torn.uncertainty, clear.uncertainty, not_cached.uncertainty) == pytest.approx(
        (0.95, 0.25, 1.0)
    )
    assert ml_suggestions.image_model_prior(image_id=clear.pk) == {
        labels[0].pk: 0.1,
        labels[1].pk: 0.85,
        labels[2].pk: 0.05,
    }
    # The same statement brings the model's held-out top-1, its vote's prior worth.
    assert ml_suggestions.image_model_vote(image_id=clear.pk) == (
        ml_suggestions.image_model_prior(image_id=clear.pk),
        version.top1,
    )


def test_uncertain_order_serves_the_least_certain_image_first(project, labels, queued):
    promoted_version(project, labels)
    torn, clear = cached_open_image(project, "torn"), cached_open_image(project, "clear")
    ml_suggestions.suggestions_compute(project_id=project.pk, backend=FakeBackend())
    Image.objects.filter(pk=torn.pk).update(uncertainty=0.3)  # clear: 0.25; torn just above
    project.serving_order = Project.ServingOrder.UNCERTAIN
    project.save()
    first = serving.assignment_lease(project=project, user=UserFactory())
    assert first.image_id == torn.pk
    project.serving_order = Project.ServingOrder.CLOSEST
    Image.objects.filter(pk=clear.pk).update(votes_count=1)
    project.save()
    assert serving.assignment_lease(project=project, user=UserFactory()).image_id == clear.pk
