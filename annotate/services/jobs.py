"""Starting background work by task name, after the surrounding transaction commits.

Services never import the worker package: the Celery app (worker.celery, loaded by the
`worker` Django app) is the current app, and tasks are sent by name.
"""

import logging

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(task_name: str, *args) -> bool:
    """Send a task now. A broker that is down must not fail the request that asked: the work
    is logged as not queued and periodic catch-up tasks pick it up later."""
    try:
        current_app.send_task(task_name, args=args)
    except Exception:  # the broker's client raises many kinds of connection errors
        logger.exception("could not queue %s%r; it will be picked up later", task_name, args)
        return False
    return True


def enqueue_on_commit(task_name: str, *args) -> None:
    transaction.on_commit(lambda: enqueue(task_name, *args))
