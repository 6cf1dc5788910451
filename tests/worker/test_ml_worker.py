"""The ML loop on a real Celery worker and Redis: train, promote, suggest, and survive a kill."""

import hashlib
import io
import random
import signal
from datetime import timedelta

import pytest
from celery import Celery, current_app
from django.conf import settings
from django.utils import timezone

from annotate.models import (
    ActiveModel,
    Image,
    Label,
    ModelVersion,
    Project,
    Suggestion,
    TrainingRun,
    User,
)
from annotate.services import ingest, ml, ml_runs
from tests.factories import ProjectFactory, UserFactory
from tests.ml_data import COLOURS, colour_image
from tests.processes import Process, wait_until, worker_env
from tests.worker.test_worker import database_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]

# A small, quick model: 32 px crops, a few epochs, one thread (the test machine is shared).
ML_ENV = {
    "ML_ARCH": "resnet18",
    "ML_IMAGE_SIZE": "32",
    "ML_EPOCHS": "4",
    "ML_BATCH_SIZE": "8",
    "ML_THREADS": "1",
    "ML_PRETRAINED": "false",
    "ML_MIN_TRAIN_LABELS": "10",
    "ML_MIN_STEPS": "0",
}


@pytest.fixture
def colour_project():
    """Three colour labels, 12 gold (verified) images of each and 2 open ones, all cached."""
    project = ProjectFactory(min_votes=1, max_votes=1)
    labels = {
        c: Label.objects.create(project=project, wnid=c, name=c, position=i)
        for i, c in enumerate(COLOURS)
    }
    rng = random.Random(5)
    open_images = {}
    for colour, label in labels.items():
        gold = [(f"{colour}-{i}.jpg", io.BytesIO(colour_image(colour, rng))) for i in range(12)]
        ingest.images_upload(project=project, files=gold, gold_label=label)
        fresh = [
            (f"{colour}-open-{i}.jpg", io.BytesIO(colour_image(colour, rng))) for i in range(2)
        ]
        for image_id in ingest.images_upload(project=project, files=fresh).created:
            open_images[image_id] = label.pk
    # Ingest wrote the CNN's copy of each image: the workers started later only read them.
    assert not Image.objects.filter(project=project, preprocessed="").exists()
    return project, labels, open_images


@pytest.fixture
def start_ml_worker(tmp_path):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "run with REDIS_URL (make test)"
    started = []

    def start(**overrides):
        worker = Process(
            ["bin/worker", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            worker_env(DATABASE_URL=database_url(), WORKER_CONCURRENCY="1", **ML_ENV, **overrides),
            tmp_path / f"ml-worker-{len(started)}.log",
        )
        started.append(worker)
        wait_until(lambda: "ready." in worker.log(), 60, "the worker to start", log=worker.log)
        return worker

    yield start
    for worker in started:
        if worker.group_alive():
            worker.stop()


def wait_for_run(run_id: int, worker, timeout: float = 180) -> TrainingRun:
    return wait_until(
        lambda: TrainingRun.objects.filter(pk=run_id, status__in=["succeeded", "failed"]).first(),
        timeout,
        f"training run {run_id} to finish",
        log=worker.log,
    )


def admin_client(client_for):
    return client_for(UserFactory(role=User.Role.ADMIN))


def test_a_model_trains_on_the_worker_suggests_labels_and_only_a_better_one_replaces_it(
    colour_project, start_ml_worker, client_for
):
    project, labels, open_images = colour_project
    worker = start_ml_worker()
    admin = admin_client(client_for)

    # An admin asks for a training; the worker trains on the ML queue.
    response = admin.post(f"/api/projects/{project.pk}/models/train/", {}, format="json")
    assert response.status_code == 202
    run = wait_for_run(response.json()["id"], worker)
    assert (run.status, run.promoted, run.error) == ("succeeded", True, "")
    version = ModelVersion.objects.get(training_run=run)
    assert ActiveModel.objects.get(project=project).version == version
    # Chance is 1/3: the colours are learnt.
    assert version.top1 >= 0.75 and version.holdout_size >= 3
    assert (version.train_size + version.holdout_size, version.weights_source, version.device) == (
        36,
        "scratch",
        "cpu",
    )
    assert ml.model_path(version.file).exists()
    assert "falling back" not in worker.log() and "pretrained weights not requested" in worker.log()

    # The promotion queued suggestions for the open images.
    suggestions = wait_until(
        lambda: (
            (
                found := list(
                    Suggestion.objects.filter(image_id__in=open_images, model_version=version)
                )
            )
            and len(found) == len(open_images)
            and found
        ),
        60,
        "suggestions for the open images",
        log=worker.log,
    )
    right = sum(s.label_id == open_images[s.image_id] for s in suggestions)
    assert right >= len(open_images) - 1
    assert all(0 < s.confidence <= 1 and len(s.top) == 3 for s in suggestions)

    # The volunteer's assignment carries the suggestion.
    lease = client_for(UserFactory()).post(f"/api/projects/{project.pk}/assignments/")
    assert lease.status_code == 201
    shown = next(s for s in suggestions if s.image_id == lease.json()["image"]["id"])
    assert lease.json()["suggestion"] == {
        "label": shown.label_id,
        "confidence": shown.confidence,
        "top": shown.top,
    }

    # The same task delivered again finds its run finished and does nothing.
    assert current_app.send_task("annotate.ml_train", args=[run.pk]).get(timeout=60) is None
    assert ModelVersion.objects.filter(project=project).count() == 1
    assert f"training run {run.pk} is claimed or finished already" in worker.log()

    # A model that learns nothing (learning rate 0) is recorded but stays inactive.
    response = admin.post(
        f"/api/projects/{project.pk}/models/train/",
        {"learning_rate": 0, "epochs": 1},
        format="json",
    )
    worse_run = wait_for_run(response.json()["id"], worker)
    worse = ModelVersion.objects.get(training_run=worse_run)
    assert (worse_run.status, worse_run.promoted) == ("succeeded", False)
    assert worse.baseline_top1 >= worse.top1 and worse.baseline_top1 >= 0.75
    assert ActiveModel.objects.get(project=project).version == version

    listed = admin.get(f"/api/projects/{project.pk}/models/").json()
    assert [(v["id"], v["is_active"]) for v in listed["versions"]] == [
        (worse.pk, False),
        (version.pk, True),
    ]


def test_a_training_killed_mid_way_leaves_the_active_model_and_its_file_intact(
    colour_project, start_ml_worker, client_for, settings
):
    project, labels, _ = colour_project
    # The active model, trained here in the test process with the real backend.
    settings.ML_TRAIN_CONFIG = settings.ML_TRAIN_CONFIG | {
        "image_size": 32,
        "epochs": 1,
        "min_steps": 0,
        "batch_size": 8,
        "num_threads": 1,
        "pretrained": False,
    }
    from worker.ml.backend import TorchBackend

    first_run = TrainingRun.objects.create(project=project, reason="requested")
    active = ml_runs.training_run_execute(run_id=first_run.pk, backend=TorchBackend())
    assert ActiveModel.objects.get(project=project).version == active
    active_file = ml.model_path(active.file)
    active_sha = hashlib.sha256(active_file.read_bytes()).hexdigest()

    worker = start_ml_worker()
    response = admin_client(client_for).post(
        f"/api/projects/{project.pk}/models/train/", {"epochs": 400}, format="json"
    )
    run_id = response.json()["id"]
    wait_until(
        lambda: "epoch 2/400" in worker.log(), 120, "the training to be under way", log=worker.log
    )
    worker.stop(signal.SIGKILL, group=True, timeout=5)

    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "running" and run.attempts == 1
    assert ActiveModel.objects.get(project=project).version == active
    assert hashlib.sha256(active_file.read_bytes()).hexdigest() == active_sha
    assert ModelVersion.objects.filter(project=project).count() == 1
    assert not ml.model_path(f"project-{project.pk}/run-{run_id}.pt").exists()

    # Beat's recovery queues the run again once its heartbeat is stale (attempts are left).
    later = timezone.now() + timedelta(seconds=settings.ML_RUN_STALE_SECONDS + 1)
    assert ml_runs.training_runs_recover(now=later).requeued == 1
    run.refresh_from_db()
    assert run.status == "pending" and "lost its worker" in run.error
    assert Project.objects.get(pk=project.pk).active_model.version == active


def test_training_and_inference_are_routed_to_the_ml_queue():
    route = current_app.amqp.router.route
    for name in ("annotate.ml_train", "annotate.ml_suggest", "annotate.ml_suggest_missing"):
        assert route({}, name)["queue"].name == settings.CELERY_ML_QUEUE
    assert settings.CELERY_ML_QUEUE != settings.CELERY_TASK_DEFAULT_QUEUE
    assert (
        route({}, "annotate.assignments_expire")["queue"].name == settings.CELERY_TASK_DEFAULT_QUEUE
    )


def test_the_embedded_worker_of_make_run_takes_the_ml_queue_too(tmp_path):
    """No Redis (the `make run` default): one plain bin/worker consumes both queues."""
    data_dir = tmp_path / "embedded"
    broker = data_dir / "broker"
    # Not the current app: the project's app must keep sending the later tests' tasks to Redis.
    app = Celery("embedded-ml", set_as_current=False)
    app.conf.update(
        broker_url="atomicfs://localhost/",
        broker_transport_options={
            "data_folder_in": str(broker / "queue"),
            "data_folder_out": str(broker / "queue"),
            "staging_folder": str(broker / "staging"),
            "claimed_folder": str(broker / "claimed"),
            "control_folder": str(broker / "control"),
        },
        result_backend=f"file://{data_dir / 'results'}",
    )
    (data_dir / "results").mkdir(parents=True)
    worker = Process(
        ["bin/worker"],
        worker_env(
            DATABASE_URL=database_url(),
            REDIS_URL=None,
            CELERY_QUEUE=None,
            CELERY_ML_QUEUE=None,
            WORKER_QUEUES=None,
            DATA_DIR=str(data_dir),
        ),
        tmp_path / "embedded-ml-worker.log",
    )
    try:
        wait_until(lambda: "ready." in worker.log(), 60, "the embedded worker", log=worker.log)
        # Project 0 has no active model: the task answers 0 suggestions written.
        result = app.send_task("annotate.ml_suggest", args=[0], queue="ml", routing_key="ml")
        assert result.get(timeout=60, interval=0.05) == 0
    finally:
        worker.stop()
    assert "annotate.ml_suggest[" in worker.log()


def test_beat_starts_a_training_by_itself_once_enough_labels_are_verified(
    colour_project, start_ml_worker, tmp_path
):
    project, _, open_images = colour_project
    worker = start_ml_worker()
    beat_dir = tmp_path / "beat"
    beat_dir.mkdir()
    beat = Process(
        ["bin/beat"],
        worker_env(
            DATABASE_URL=database_url(), DATA_DIR=str(beat_dir), ML_RETRAIN_CHECK_SECONDS="1"
        ),
        tmp_path / "beat.log",
    )
    try:
        run = wait_until(
            lambda: TrainingRun.objects.filter(project=project, status="succeeded").first(),
            120,
            "beat's check to start a training and the worker to finish it",
            log=lambda: beat.log() + worker.log(),
        )
        wait_until(
            lambda: Suggestion.objects.filter(image_id__in=open_images).count() == len(open_images),
            60,
            "suggestions after the promotion",
            log=worker.log,
        )
    finally:
        beat.stop()
    assert (run.reason, run.verified_count, run.promoted) == ("growth", 36, True)
    assert "annotate.ml_retrain_check" in beat.log()
    # Nothing grew since: later checks start no second training.
    assert TrainingRun.objects.filter(project=project).count() == 1
