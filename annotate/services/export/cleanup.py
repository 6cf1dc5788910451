"""An export's clean-up (beat, every EXPORT_CLEANUP_SECONDS): old files expire, jobs whose
message or worker was lost are sent again, leftovers of killed attempts are removed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from annotate.converters import parse_id
from annotate.models import Export
from annotate.services import jobs
from annotate.services.export.lifecycle import (
    EXPORT_TASK,
    TMP_FOLDER,
    _inside_export_dir,
    _remove,
    export_dir,
)
from annotate.services.export.stored import stored_key, stored_leftovers, stored_remove
from annotate.services.storage_kind import storage_is_local


@dataclass
class CleanupResult:
    expired: int = 0
    failed_stale: int = 0
    requeued: int = 0
    removed_temporary: int = 0


def exports_cleanup() -> CleanupResult:
    """Periodic: remove the files of exports older than EXPORT_TTL_HOURS, start again pending
    exports whose job never came and running ones whose worker was lost (failing them after
    EXPORT_MAX_ATTEMPTS attempts), and remove
    temporary folders no live export owns. Never touches files outside EXPORT_DIR."""
    result = CleanupResult()
    now = timezone.now()
    ttl = timedelta(hours=settings.EXPORT_TTL_HOURS)
    stale = now - timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    for export in Export.objects.filter(
        state=Export.State.DONE, finished_at__lt=now - ttl
    ).iterator():
        if stored_key(export.location) is not None:
            stored_remove(export.location)
        elif not _inside_export_dir(export.location):
            continue  # written by the command to a path of its own: not ours to remove
        else:
            _remove(export_dir() / str(export.pk))
        Export.objects.filter(pk=export.pk, state=Export.State.DONE).update(
            state=Export.State.EXPIRED, updated_at=now
        )
        result.expired += 1
    for export_id in Export.objects.filter(
        state=Export.State.PENDING, created_at__lt=stale
    ).values_list("pk", flat=True):
        # Its job was never queued (broker down) or lost: send it again; a duplicate finds
        # the export claimed and returns.
        result.requeued += jobs.enqueue(EXPORT_TASK, export_id)
    # A running export whose heartbeat stopped lost its worker: another worker takes it over
    # (from the start) until EXPORT_MAX_ATTEMPTS attempts were made; then it fails with why.
    # The lost worker, were it only stalled, stops at its next heartbeat: the export is no
    # longer claimed by its run.
    lost_worker = Q(state=Export.State.RUNNING, heartbeat_at__lt=stale)
    limit = settings.EXPORT_MAX_ATTEMPTS
    result.failed_stale = Export.objects.filter(lost_worker, attempts__gte=limit).update(
        state=Export.State.FAILED,
        finished_at=now,
        updated_at=now,
        error=f"The export job stopped (worker lost) on each of its {limit} attempts; "
        "start a new export.",
    )
    for export_id, attempts in Export.objects.filter(lost_worker, attempts__lt=limit).values_list(
        "pk", "attempts"
    ):
        if Export.objects.filter(lost_worker, pk=export_id, attempts=attempts).update(
            state=Export.State.PENDING,
            run_token="",
            heartbeat_at=None,
            progress_done=0,
            updated_at=now,
            error=f"Attempt {attempts} lost its worker; queued again.",
        ):
            result.requeued += jobs.enqueue(EXPORT_TASK, export_id)
    running = {
        str(pk)
        for pk in Export.objects.filter(state=Export.State.RUNNING).values_list("pk", flat=True)
    }
    if not storage_is_local():
        result.removed_temporary += _stored_leftovers_remove(running)
    temporary = export_dir() / TMP_FOLDER
    if temporary.is_dir():
        for entry in temporary.iterdir():
            if entry.name.split("-", 1)[0] not in running:
                _remove(entry)
                result.removed_temporary += 1
    for entry in export_dir().iterdir():
        # Folders of exports that are gone or never finished (killed after the rename).
        folder_id = parse_id(entry.name)
        if (
            folder_id is not None
            and not Export.objects.filter(
                pk=folder_id, state__in=[Export.State.DONE, Export.State.RUNNING]
            ).exists()
        ):
            _remove(entry)
            result.removed_temporary += 1
    return result


def _stored_leftovers_remove(running: set[str]) -> int:
    """Attempt folders in the storage that no running or done export owns (an attempt killed
    mid-upload, an export failed or expired)."""
    done = {
        str(pk): location
        for pk, location in Export.objects.filter(
            state=Export.State.DONE, location__startswith="storage:"
        ).values_list("pk", "location")
    }

    def keep(export_id: int, attempt: str) -> bool:
        key = str(export_id)
        return key in running or f"/{key}/{attempt}/" in done.get(key, "")

    return stored_leftovers(keep)
