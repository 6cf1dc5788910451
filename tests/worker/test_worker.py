"""Real Celery processes: a worker on Redis, beat, and the embedded file-system broker."""

import threading
import time
from datetime import timedelta

import pytest
from celery import Celery, current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from annotate.models import Assignment
from annotate.services import jobs, serving
from tests.factories import ImageFactory, ProjectFactory, UserFactory
from tests.processes import Process, wait_until, worker_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def redis_worker(tmp_path):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "run with REDIS_URL (make test)"
    worker = Process(
        ["bin/worker", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        worker_env(DATABASE_URL=database_url(), WORKER_CONCURRENCY="1"),
        tmp_path / "worker.log",
    )
    wait_until(lambda: "ready." in worker.log(), 60, "the worker to start", log=worker.log)
    yield worker
    worker.stop()


def test_worker_on_redis_runs_a_queued_job(redis_worker):
    """A job queued through the outbox (annotate.services.jobs) runs on the worker."""
    project = ProjectFactory(min_votes=1, max_votes=1)
    image = ImageFactory(project=project)
    assignment = serving.assignment_lease(project=project, user=UserFactory())
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert jobs.enqueue("annotate.assignments_expire")

    wait_until(
        lambda: Assignment.objects.get(pk=assignment.pk).state == Assignment.State.EXPIRED,
        60,
        "the worker to sweep the expired lease",
        log=redis_worker.log,
    )
    image.refresh_from_db()
    assert (image.leases_count, image.free_slots) == (0, 1)
    assert "Task annotate.assignments_expire[" in redis_worker.log()
    # A round trip through the result backend too.
    assert current_app.send_task("annotate.ping", args=["pong"]).get(timeout=30) == "pong"


def test_beat_schedules_the_lease_sweep_on_the_worker(redis_worker, tmp_path):
    project = ProjectFactory(min_votes=1, max_votes=1)
    image = ImageFactory(project=project)
    assignment = serving.assignment_lease(project=project, user=UserFactory())
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    beat_dir = tmp_path / "beat"
    beat_dir.mkdir()
    beat = Process(
        ["bin/beat"],
        worker_env(DATABASE_URL=database_url(), LEASE_SWEEP_SECONDS="0.5", DATA_DIR=str(beat_dir)),
        tmp_path / "beat.log",
    )
    try:
        wait_until(
            lambda: Assignment.objects.get(pk=assignment.pk).state == Assignment.State.EXPIRED,
            60,
            "beat and the worker to sweep the expired lease",
            log=lambda: beat.log() + redis_worker.log(),
        )
    finally:
        beat.stop()
    image.refresh_from_db()
    assert (image.leases_count, image.free_slots) == (0, 1)
    assert "annotate.assignments_expire" in beat.log()


def test_embedded_file_system_broker_survives_a_burst(tmp_path):
    """The no-server default: 400 tasks sent at once from 4 threads all run exactly once."""
    data_dir = tmp_path / "embedded"
    data_dir.mkdir()
    broker = data_dir / "broker"
    app = Celery("burst")
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
        task_default_queue="celery",
    )
    (data_dir / "results").mkdir()
    worker = Process(
        ["bin/worker"],
        worker_env(
            DATABASE_URL=None,
            REDIS_URL=None,
            CELERY_QUEUE="celery",
            DATA_DIR=str(data_dir),
            WORKER_CONCURRENCY="2",
        ),
        tmp_path / "embedded-worker.log",
    )
    try:
        wait_until(lambda: "ready." in worker.log(), 60, "the embedded worker", log=worker.log)
        results = {}

        def send(offset):
            for i in range(offset, offset + 100):
                results[i] = app.send_task("annotate.ping", args=[f"m{i}"])

        started = time.monotonic()
        senders = [threading.Thread(target=send, args=(k * 100,)) for k in range(4)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        values = {i: r.get(timeout=120, interval=0.02) for i, r in results.items()}
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    assert values == {i: f"m{i}" for i in range(400)}
    log = worker.log()
    assert log.count("Task annotate.ping[") == 2 * 400  # each received once and succeeded once
    assert log.count("succeeded in") == 400
    print(f"embedded broker: 400 tasks in {elapsed:.1f}s ({400 / elapsed:.0f} tasks/s)")
