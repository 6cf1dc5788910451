"""Starting background work by task name, after the surrounding transaction commits.

Services never import the worker package: the Celery app (worker.celery, loaded by the
`worker` Django app) is the current app, and tasks are sent by name.

Every job goes through an outbox row written in the caller's transaction: it is sent right
after the commit and its row deleted; if the broker is down, the row stays and
`jobs_flush` (Celery beat) sends it once the broker is back. So a
Redis outage delays work but loses none, and never fails the request that asked for it.
"""

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from annotate.models import QueuedJob

logger = logging.getLogger(__name__)


def publish(task_name: str, *args: Any) -> None:
    """Hand one task to the broker; raises when the broker can't be reached."""
    # No publish retries: a down broker must not hold a web request; the flush retries.
    # ignore_result: nothing reads a task's result (its effects are rows), and asking the
    # result backend to expect one made Celery reconnect to a down Redis inside the request,
    # for about 19 s (issue 19).
    # A connection of its own that tries once: the pooled one retries after a 2 s pause.
    # Jobs are few (exports, trainings), so a connection each costs nothing that matters.
    options = {**current_app.conf.broker_transport_options, "max_retries": 0}
    with current_app.connection_for_write(transport_options=options) as connection:
        current_app.send_task(
            task_name, args=args, retry=False, ignore_result=True, connection=connection
        )


def _send(job: QueuedJob) -> bool:
    try:
        publish(job.task_name, *job.args)
    except Exception as error:  # the broker's clients raise many kinds of connection errors
        QueuedJob.objects.filter(pk=job.pk).update(
            attempts=job.attempts + 1, last_error=str(error)[:500]
        )
        logger.warning("could not queue %s; it stays in the outbox: %s", job, error)
        return False
    QueuedJob.objects.filter(pk=job.pk).delete()
    return True


def enqueue(task_name: str, *args: Any) -> bool:
    """Queue `task_name(*args)` now (outside a transaction); False if it waits in the outbox."""
    return _send(QueuedJob.objects.create(task_name=task_name, args=list(args)))


def enqueue_on_commit(task_name: str, *args: Any) -> QueuedJob:
    """Queue `task_name(*args)` to run once the current transaction commits (now, outside one)."""
    job = QueuedJob.objects.create(task_name=task_name, args=list(args))
    transaction.on_commit(lambda: _send(job))
    return job


def jobs_flush(*, older_than: timedelta = timedelta(seconds=5), limit: int = 1000) -> int:
    """Send outbox jobs that did not go out after their commit. Returns how many were sent.

    Jobs younger than `older_than` are left to their own on-commit send. A job could go out
    twice if a send succeeds and its row's delete does not; tasks are idempotent for that.
    """
    cutoff = timezone.now() - older_than
    sent = 0
    for job in QueuedJob.objects.filter(created_at__lt=cutoff).order_by("id")[:limit]:
        if not _send(job):
            break  # the broker is still down
        sent += 1
    return sent
