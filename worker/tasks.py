"""Thin tasks: take ids, call one service. Safe to run twice (acks_late redelivers)."""

from celery import shared_task
from django.conf import settings

from annotate.models import Project
from annotate.services import aggregation, jobs, ml_runs, ml_suggestions, serving, verification
from annotate.services import export as export_service
from annotate.services.image_cache import image_cache


@shared_task(name="annotate.assignments_expire")
def assignments_expire() -> int:
    return serving.assignments_expire()


@shared_task(name="annotate.grids_expire")
def grids_expire() -> int:
    return verification.grids_expire()


@shared_task(name="annotate.ping")
def ping(value: str) -> str:
    """Round-trip check for deployments and the smoke test."""
    return value


@shared_task(name="annotate.project_reaggregate")
def project_reaggregate(project_id: int) -> dict:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {}
    report = dict(vars(aggregation.project_reaggregate(project=project)))
    report.pop("disagreements", None)  # the bench's, not worth a result's space
    return report


@shared_task(name="annotate.projects_reaggregate")
def projects_reaggregate() -> int:
    """Beat: queue a re-aggregation per project (each its own task, so one slow project
    does not hold the others)."""
    ids = list(Project.objects.values_list("id", flat=True))
    for project_id in ids:
        project_reaggregate.delay(project_id)
    return len(ids)


@shared_task(name="annotate.young_projects_reaggregate")
def young_projects_reaggregate() -> int:
    """Beat, every minute: queue a re-aggregation for each dynamic-rule project whose decided
    images have doubled since its last one (aggregation.reaggregation_due): a young project's
    estimates are worth measuring long before the hourly run."""
    due = [
        project.pk
        for project in Project.objects.filter(mode=Project.Mode.DYNAMIC).only("id", "answer_counts")
        if aggregation.reaggregation_due(project=project)
    ]
    for project_id in due:
        project_reaggregate.delay(project_id)
    return len(due)


@shared_task(name="annotate.jobs_flush")
def jobs_flush() -> int:
    """Beat: send jobs queued while the broker was down."""
    return jobs.jobs_flush()


# --- exports ----------------------------------------------------------------------------------


# Exports: the row exists before the job; a redelivered job (its worker died) carries the same
# id and takes the export over, any other copy returns at once. Not retried on errors: a
# failed export records why, and the admin starts a new one.
@shared_task(
    name="annotate.export_run",
    bind=True,
    acks_late=True,
    soft_time_limit=settings.EXPORT_TIME_LIMIT,
    time_limit=settings.EXPORT_TIME_LIMIT + 300,
)
def export_run(self, export_id: int) -> str:
    return export_service.export_run(export_id=export_id, run_token=self.request.id or "eager")


@shared_task(name="annotate.exports_cleanup")
def exports_cleanup() -> dict:
    return vars(export_service.exports_cleanup())


# --- the ML loop: on the ML queue (settings.CELERY_TASK_ROUTES), so a GPU worker can take only
# these. PyTorch is imported inside the tasks: the web processes, which load this module to
# send tasks, never pay for it.


def _ml_backend():
    from worker.ml.backend import TorchBackend

    return TorchBackend()


@shared_task(
    name="annotate.ml_train",
    acks_late=True,
    soft_time_limit=settings.ML_TRAIN_SOFT_TIME_LIMIT,
    time_limit=settings.ML_TRAIN_SOFT_TIME_LIMIT + 300,
)
def ml_train(run_id: int) -> int | None:
    """Returns the new version's id (None: nothing to do, or the data could not support it)."""
    with image_cache().run(f"training run {run_id}"):
        version = ml_runs.training_run_execute(run_id=run_id, backend=_ml_backend())
    return version.pk if version else None


@shared_task(
    name="annotate.ml_suggest",
    soft_time_limit=settings.ML_SUGGEST_SOFT_TIME_LIMIT,
    time_limit=settings.ML_SUGGEST_SOFT_TIME_LIMIT + 120,
)
def ml_suggest(project_id: int) -> int:
    with image_cache().run(f"suggestions of project {project_id}"):
        return ml_suggestions.suggestions_compute(project_id=project_id, backend=_ml_backend())


@shared_task(
    name="annotate.ml_suggest_missing",
    soft_time_limit=settings.ML_SUGGEST_SOFT_TIME_LIMIT,
    time_limit=settings.ML_SUGGEST_SOFT_TIME_LIMIT + 120,
)
def ml_suggest_missing() -> int:
    with image_cache().run("suggestions sweep"):
        return ml_suggestions.suggestions_missing_sweep(backend=_ml_backend())


@shared_task(name="annotate.ml_retrain_check")
def ml_retrain_check() -> list[int]:
    return ml_runs.projects_retrain_check()


@shared_task(name="annotate.ml_recover_runs")
def ml_recover_runs() -> dict:
    return vars(ml_runs.training_runs_recover())
