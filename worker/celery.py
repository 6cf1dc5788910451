"""The Celery app: reads the CELERY_* Django settings and finds worker.tasks."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

# The embedded broker (no server): kombu's file-system transport with atomic writes.
TRANSPORT_ALIASES.setdefault("atomicfs", "worker.broker:Transport")

app = Celery("annotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["worker"])
