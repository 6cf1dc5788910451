"""Publishing never holds a request (issue 19: with Redis down, a request that queued a job hung
about 19 s while Celery's result backend reconnected inside it). The job waits in the outbox and
the request answers at once."""

import random
import time

import pytest
from celery import Celery
from django.urls import reverse

from annotate.models import QueuedJob
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory
from tests.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(monkeypatch) -> Celery:
    """The project's Celery configuration with broker and result backend on a port where
    nothing listens, made the app that annotate.services.jobs publishes through."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    # Not set as current: later tests (and their workers) publish through the real app.
    app = Celery("outage-test", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url=dead, result_backend=dead)
    monkeypatch.setattr("annotate.services.jobs.current_app", app)
    return app


def test_a_request_that_queues_a_job_answers_fast_with_redis_down(
    redis_down, client_for, admin_user, settings, tmp_path, django_capture_on_commit_callbacks
) -> None:
    settings.EXPORT_DIR = tmp_path / "exports"
    project = ProjectFactory()
    decided_images(project, LabelFactory(project=project), 2, random.Random(1))
    client = client_for(admin_user)
    started = time.perf_counter()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(reverse("api:exports", args=[project.pk]), {}, format="json")
    took = time.perf_counter() - started
    assert answer.status_code == 202, answer.content
    assert took < 1.0, f"the request took {took:.2f} s"
    job = QueuedJob.objects.get()  # kept for jobs_flush once the broker is back
    assert job.task_name == "annotate.export_run" and job.attempts == 1
