"""A training run's lifecycle (PRODUCT.md section 5): when to train, requesting a training,
a worker claiming and running it with a heartbeat, finishing it (promoting its model when it
beats the active one), and recovering runs whose queue message or worker was lost.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate.models import ActiveModel, ModelVersion, Project, TrainingRun, User
from annotate.selectors.ml import project_verified_count
from annotate.services import jobs
from annotate.services.errors import Conflict, InvalidInput
from annotate.services.ml import (
    ARCHITECTURES,
    MLBackend,
    TrainingImpossible,
    baseline_figures,
    beats,
    model_path,
    model_promote,
    training_data,
    unlabeled_paths,
    warm_start_checkpoint,
)
from annotate.services.model_store import checkpoint_publish

logger = logging.getLogger(__name__)

TRAIN_TASK = "annotate.ml_train"
# How often a training writes its heartbeat at most (each write is a database round trip).
HEARTBEAT_SECONDS = 10.0


# --- starting trainings -----------------------------------------------------------------------


def _clean_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "arch":
            if value not in ARCHITECTURES:
                raise InvalidInput(f"arch must be one of {', '.join(ARCHITECTURES)}.", field="arch")
        elif key == "epochs":
            if not isinstance(value, int) or not 1 <= value <= 500:
                raise InvalidInput("epochs must be a whole number from 1 to 500.", field="epochs")
        elif key == "learning_rate":
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InvalidInput("learning_rate must be from 0 to 1.", field="learning_rate")
        else:
            raise InvalidInput(f"Unknown training setting {key!r}.", field=key)
        clean[key] = value
    return clean


def training_request(
    *,
    project: Project,
    reason: str = TrainingRun.Reason.REQUESTED,
    requested_by: User | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainingRun:
    """Create a PENDING run and queue its training once the transaction commits.

    Refuses (409) while another training of the project is pending or running, and (400)
    while the project has fewer verified labels than ML_MIN_TRAIN_LABELS.
    """
    config = _clean_overrides(overrides or {})
    verified = project_verified_count(project=project)
    if verified < settings.ML_MIN_TRAIN_LABELS:
        raise InvalidInput(
            f"The project has {verified} verified labels; training needs at least "
            f"{settings.ML_MIN_TRAIN_LABELS}."
        )
    for _ in range(2):
        try:
            with transaction.atomic():
                run = TrainingRun.objects.create(
                    project=project,
                    reason=reason,
                    requested_by=requested_by,
                    config=config,
                    verified_count=verified,
                )
                jobs.enqueue_on_commit(TRAIN_TASK, run.pk)
            return run
        except IntegrityError:
            open_run = TrainingRun.objects.filter(
                project=project,
                status__in=[TrainingRun.Status.PENDING, TrainingRun.Status.RUNNING],
            ).first()
            if open_run is not None and _supersede_lost(open_run, timezone.now()):
                continue  # the open run was lost in the queue: this request takes its place
            raise Conflict(
                f"A training of this project is already {open_run.status if open_run else 'open'}"
                + (f" (run {open_run.pk})." if open_run else ".")
            ) from None
    raise Conflict("A training of this project was requested at the same time; try again.")


def _supersede_lost(run: TrainingRun, now: datetime) -> bool:
    """Fail `run` if it is PENDING and no worker took it within ML_RUN_STALE_SECONDS of its
    last (re)send (its queue message was lost), so that a new request is not blocked by it.
    One conditional UPDATE: a worker claiming it at the same moment wins or loses as a whole,
    and a late copy of its message then finds it failed and does nothing."""
    stale = now - timedelta(seconds=settings.ML_RUN_STALE_SECONDS)
    return bool(
        TrainingRun.objects.filter(
            pk=run.pk, status=TrainingRun.Status.PENDING, updated_at__lt=stale
        ).update(
            status=TrainingRun.Status.FAILED,
            finished_at=now,
            updated_at=now,
            error="No worker took this training (its queue message was lost); a new request "
            "replaced it.",
        )
    )


def retrain_due(*, verified: int, last_verified: int | None) -> bool:
    """The first training once there are enough verified labels; then again when they grew by
    ML_RETRAIN_NEW_LABELS, or by the share ML_RETRAIN_GROWTH, since the last training."""
    if verified < settings.ML_MIN_TRAIN_LABELS:
        return False
    if last_verified is None:
        return True
    growth = verified - last_verified
    if growth <= 0:
        return False
    return bool(
        growth >= settings.ML_RETRAIN_NEW_LABELS
        or growth >= settings.ML_RETRAIN_GROWTH * last_verified
    )


def projects_retrain_check() -> list[int]:
    """Beat's check: start a training in each project whose verified labels grew enough.

    The baseline is the last run of any outcome, so a training that failed on its data is not
    retried every minute, only once the data grew again. Returns the new runs' ids.
    """
    started = []
    for project in Project.objects.order_by("id"):
        last = (
            TrainingRun.objects.filter(project=project)
            .order_by("-id")
            .values_list("verified_count", flat=True)
            .first()
        )
        verified = project_verified_count(project=project)
        if not retrain_due(verified=verified, last_verified=last):
            continue
        try:
            run = training_request(project=project, reason=TrainingRun.Reason.GROWTH)
        except (Conflict, InvalidInput):
            continue  # one is running already, or labels went away since the count
        started.append(run.pk)
        logger.info(
            "project %s: %d verified labels (last training: %s); training run %d queued",
            project.pk,
            verified,
            last,
            run.pk,
        )
    return started


def _claim(run_id: int, now: datetime) -> int | None:
    """Take the run for this worker: PENDING, or RUNNING with a stale heartbeat (its worker
    was lost and the broker redelivered the task). Returns the attempt number, or None when
    another worker has it or it is finished."""
    stale = now - timedelta(seconds=settings.ML_RUN_STALE_SECONDS)
    claimable = Q(status=TrainingRun.Status.PENDING) | Q(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale
    )
    claimed = TrainingRun.objects.filter(
        claimable, pk=run_id, attempts__lt=settings.ML_RUN_MAX_ATTEMPTS
    ).update(
        status=TrainingRun.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        error="",
        updated_at=now,
    )
    if not claimed:
        return None
    return TrainingRun.objects.values_list("attempts", flat=True).get(pk=run_id)


def _heartbeat(run_id: int, attempt: int) -> Callable[[int, int, int], None]:
    last = time.monotonic()

    def beat(epoch: int, step: int, steps: int) -> None:
        nonlocal last
        if time.monotonic() - last < HEARTBEAT_SECONDS:
            return
        last = time.monotonic()
        TrainingRun.objects.filter(
            pk=run_id, status=TrainingRun.Status.RUNNING, attempts=attempt
        ).update(heartbeat_at=timezone.now())

    return beat


def training_run_execute(*, run_id: int, backend: MLBackend) -> ModelVersion | None:
    """Claim the run, train, record a ModelVersion and promote it if it beats the active model.

    Safe to deliver twice: a run already claimed or finished is left alone (returns None).
    The active model changes only by one compare-and-set UPDATE after the new checkpoint file
    is complete, so a training that crashes or is killed leaves it as it was.
    """
    attempt = _claim(run_id, timezone.now())
    if attempt is None:
        logger.info("training run %s is claimed or finished already; nothing to do", run_id)
        return None
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    try:
        return _train_and_promote(run, attempt, backend)
    except TrainingImpossible as error:
        _finish(run, attempt, status=TrainingRun.Status.FAILED, error=str(error))
        logger.warning("training run %s failed: %s", run.pk, error)
        return None
    except BaseException as error:
        # Also time limits and worker shutdown; the error is recorded, then Celery sees it.
        _finish(
            run, attempt, status=TrainingRun.Status.FAILED, error=f"{type(error).__name__}: {error}"
        )
        raise


def _finish(run: TrainingRun, attempt: int, **fields: Any) -> int:
    now = timezone.now()
    return TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.RUNNING, attempts=attempt
    ).update(finished_at=now, updated_at=now, **fields)


def _train_and_promote(run: TrainingRun, attempt: int, backend: MLBackend) -> ModelVersion | None:
    project = run.project
    classes, train, holdout = training_data(project)
    class_index = {label_id: index for index, label_id in enumerate(classes)}
    config = settings.ML_TRAIN_CONFIG | {"semi_supervised": project.semi_supervised} | run.config
    active = ActiveModel.objects.filter(project=project).select_related("version").first()
    config["warm_start"] = warm_start_checkpoint(active.version if active else None, classes)
    unlabeled = (
        unlabeled_paths(project, int(config.get("max_unlabeled", 20000)))
        if config["semi_supervised"]
        else []
    )
    relative = f"project-{project.pk}/run-{run.pk}.pt"
    result = backend.train(
        [(e.path, class_index[e.label_id]) for e in train],
        [(e.path, class_index[e.label_id]) for e in holdout],
        num_classes=len(classes),
        config=config,
        checkpoint_path=str(model_path(relative)),
        on_progress=_heartbeat(run.pk, attempt),
        unlabeled_paths=unlabeled,
    )
    checkpoint_publish(relative)  # for ML workers on other hosts (annotate.services.model_store)
    figures = result["holdout"]
    # The active model's evaluation reports no progress: beat once before it, so that it has
    # a whole ML_RUN_STALE_SECONDS before recovery takes the run for lost.
    TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.RUNNING, attempts=attempt
    ).update(heartbeat_at=timezone.now())
    baseline = baseline_figures(active.version, holdout, config, backend) if active else None
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project,
            training_run=run,
            arch=result.get("arch") or config["arch"],
            config=config,
            classes=classes,
            file=relative,
            weights_source=result["weights_source"],
            device=result["device"],
            train_size=result["train_size"],
            holdout_size=result["holdout_size"],
            training_seconds=result["seconds"],
            temperature=result["temperature"],
            top1=figures["top1"],
            top5=figures["top5"],
            nll=figures["nll"] if figures["nll"] != float("inf") else None,
            per_class={
                str(classes[int(index)]): value for index, value in figures["per_class"].items()
            },
            baseline_top1=baseline["top1"] if baseline else None,
            ece=result.get("ece"),
            reliability=result.get("reliability", []),
            calibration_method=result.get("calibration_method", ""),
            calibration_size=result.get("calibration_size", 0),
            unlabeled_size=result.get("unlabeled_size", 0),
        )
        promoted = beats(figures, baseline) and model_promote(
            project=project, version=version, expected=active.version_id if active else None
        )
        if not _finish(run, attempt, status=TrainingRun.Status.SUCCEEDED, promoted=promoted):
            # Our claim was lost (recorded as failed while we trained): keep nothing.
            transaction.set_rollback(True)
            return None
        if promoted:
            jobs.enqueue_on_commit("annotate.ml_suggest", project.pk)
    logger.info(
        "training run %s: version %s, held-out top-1 %.3f against %s: %s",
        run.pk,
        version.pk,
        figures["top1"],
        baseline["top1"] if baseline else "no active model",
        "promoted" if promoted else "kept inactive",
    )
    return version


@dataclass
class RunsRecovered:
    resent: int = 0  # PENDING runs no worker took: their message was lost, sent again
    requeued: int = 0  # RUNNING runs whose worker was lost: back to PENDING and sent again
    failed: int = 0  # RUNNING runs whose worker was lost on their last allowed attempt


def training_runs_recover(*, now: datetime | None = None) -> RunsRecovered:
    """Periodic (beat): heal trainings whose message or worker was lost, as exports_cleanup
    does for exports.

    - A PENDING run that no worker took within ML_RUN_STALE_SECONDS of its last send is sent
      again (a duplicate finds it claimed and does nothing).
    - A RUNNING run whose heartbeat has not moved for ML_RUN_STALE_SECONDS lost its worker: it
      goes back to PENDING and is sent again, up to ML_RUN_MAX_ATTEMPTS attempts in all; then it
      is marked failed with the reason. The lost worker, were it only stalled, can no longer
      record anything: its updates are conditional on its attempt number.
    The active model was never touched by a lost run (it changes only on success).
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.ML_RUN_STALE_SECONDS)
    limit = settings.ML_RUN_MAX_ATTEMPTS
    result = RunsRecovered()
    lost_worker = Q(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale)
    result.failed = TrainingRun.objects.filter(lost_worker, attempts__gte=limit).update(
        status=TrainingRun.Status.FAILED,
        finished_at=now,
        updated_at=now,
        error=f"worker lost: no progress for longer than ML_RUN_STALE_SECONDS "
        f"({settings.ML_RUN_STALE_SECONDS} s) on each of its {limit} attempts; request a new "
        "training",
    )
    for run_id, attempts in TrainingRun.objects.filter(lost_worker, attempts__lt=limit).values_list(
        "pk", "attempts"
    ):
        taken_back = TrainingRun.objects.filter(lost_worker, pk=run_id, attempts=attempts).update(
            status=TrainingRun.Status.PENDING,
            heartbeat_at=None,
            updated_at=now,
            error=f"attempt {attempts} lost its worker (no progress for longer than "
            f"ML_RUN_STALE_SECONDS); queued again",
        )
        if taken_back:
            jobs.enqueue(TRAIN_TASK, run_id)
            result.requeued += 1
    for run_id in TrainingRun.objects.filter(
        status=TrainingRun.Status.PENDING, updated_at__lt=stale
    ).values_list("pk", flat=True):
        # Marked as sent now, so that it is sent again only after another stale period.
        if TrainingRun.objects.filter(
            pk=run_id, status=TrainingRun.Status.PENDING, updated_at__lt=stale
        ).update(updated_at=now):
            jobs.enqueue(TRAIN_TASK, run_id)
            result.resent += 1
    if result.resent or result.requeued or result.failed:
        logger.warning("training runs recovered: %s", result)
    return result
