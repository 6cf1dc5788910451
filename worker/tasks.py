"""Thin tasks: take ids, call one service. Safe to run twice (acks_late redelivers)."""

from celery import shared_task

from annotate.services import ingest, serving


@shared_task(name="annotate.image_preprocess", max_retries=3, autoretry_for=(OSError,),
             retry_backoff=True, retry_jitter=True)
def image_preprocess(image_id: int) -> bool:
    return ingest.image_preprocess(image_id=image_id)


@shared_task(name="annotate.assignments_expire")
def assignments_expire() -> int:
    return serving.assignments_expire()


@shared_task(name="annotate.ping")
def ping(value: str) -> str:
    """Round-trip check for deployments and the smoke test."""
    return value


# --- exports (imports kept here so this block merges on its own) ----------------------------

from django.conf import settings  # noqa: E402

from annotate.services import export as export_service  # noqa: E402


# Exports: the row exists before the job; a redelivered job (its worker died) carries the same
# id and takes the export over, any other copy returns at once. Not retried on errors: a
# failed export records why, and the admin starts a new one.
@shared_task(name="annotate.export_run", bind=True, acks_late=True,
             soft_time_limit=settings.EXPORT_TIME_LIMIT, time_limit=settings.EXPORT_TIME_LIMIT + 300)
def export_run(self, export_id: int) -> str:
    return export_service.export_run(export_id=export_id, run_token=self.request.id or "eager")


@shared_task(name="annotate.exports_cleanup")
def exports_cleanup() -> dict:
    return vars(export_service.exports_cleanup())
