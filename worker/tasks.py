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
