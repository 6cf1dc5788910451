"""An export's life: created, claimed, run (with heartbeats), recovered, cleaned up (its
download: the `download` module)."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from annotate.models import Export, Project, User
from annotate.services import jobs
from annotate.services.errors import InvalidInput
from annotate.services.export.layout import ExportEmpty, export_build
from annotate.services.export.sinks import DirectorySink, TarSink
from annotate.services.export.split import _eligible
from annotate.services.export.stored import (
    export_upload,
    stored_remove,
)
from annotate.services.projects import validation_message
from annotate.services.storage_kind import storage_is_local

logger = logging.getLogger(__name__)

EXPORT_TASK = "annotate.export_run"
TMP_FOLDER = ".tmp"

ProgressCallback = Callable[[int, int], None]


class ExportAborted(Exception):
    """The export lost its claim (another run took it over, or clean-up failed it)."""


# --- creating -------------------------------------------------------------------------------


def export_create(
    *,
    project: Project,
    user: User | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    val_layout: str = Export.ValLayout.FOLDERS,
    resize: int | None = None,
    include_gold: bool = False,
    min_per_class: int = 2,
    blur_faces: bool = False,
    enqueue: bool = True,
) -> Export:
    """Record an export of `project` and (with `enqueue`) start its job once committed."""
    if not isinstance(val_fraction, (int, float)) or not (0 < val_fraction < 1):
        raise InvalidInput(
            "val_fraction must be a number between 0 and 1 (exclusive).", field="val_fraction"
        )
    export = Export(
        project=project,
        created_by=user,
        name="export",
        val_fraction=float(val_fraction),
        seed=seed,
        val_layout=val_layout,
        resize=resize,
        include_gold=include_gold,
        min_per_class=min_per_class,
        blur_faces=blur_faces,
    )
    try:
        export.full_clean(exclude=["project", "created_by"])
    except ValidationError as error:
        field_name = next(iter(getattr(error, "message_dict", {}) or {}), None)
        raise InvalidInput(validation_message(error), field=field_name) from None
    if not _eligible(project=project, include_gold=include_gold).exists():
        raise InvalidInput("This project has no decided images to export yet.")
    with transaction.atomic():
        export.save()
        export.name = f"{slugify(project.name)[:48] or 'project'}-export-{export.pk}"
        export.save(update_fields=["name", "updated_at"])
        if enqueue:
            jobs.enqueue_on_commit(EXPORT_TASK, export.pk)
    return export


# --- running --------------------------------------------------------------------------------


def export_dir() -> Path:
    path = Path(settings.EXPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim(*, export_id: int, run_token: str) -> Export | None:
    """Take the export for this run: a pending one, or a running one whose claim is ours
    (the same job delivered again after its worker died). Returns None when it is not ours
    to run: done, failed, or running under another job."""
    now = timezone.now()
    base = Export.objects.filter(pk=export_id)
    claimed = base.filter(
        Q(state=Export.State.PENDING) | Q(state=Export.State.RUNNING, run_token=run_token),
        attempts__lt=settings.EXPORT_MAX_ATTEMPTS,
    ).update(
        state=Export.State.RUNNING,
        run_token=run_token,
        heartbeat_at=now,
        updated_at=now,
        progress_done=0,
        error="",
        attempts=F("attempts") + 1,
    )
    if not claimed:
        gave_up = base.filter(
            Q(state=Export.State.PENDING) | Q(state=Export.State.RUNNING, run_token=run_token),
        ).update(
            state=Export.State.FAILED,
            finished_at=now,
            updated_at=now,
            error=f"Gave up after {settings.EXPORT_MAX_ATTEMPTS} attempts.",
        )
        if gave_up:
            logger.warning("export %s failed: too many attempts", export_id)
        return None
    return Export.objects.select_related("project").get(pk=export_id)


def _heartbeat(
    export_id: int, run_token: str, progress: ProgressCallback | None
) -> ProgressCallback:
    def beat(done: int, total: int) -> None:
        now = timezone.now()
        alive = Export.objects.filter(
            pk=export_id, state=Export.State.RUNNING, run_token=run_token
        ).update(progress_done=done, progress_total=total, heartbeat_at=now, updated_at=now)
        if not alive:
            raise ExportAborted(f"export {export_id} is no longer claimed by this run")
        if progress is not None:
            progress(done, total)

    return beat


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def export_run(
    *,
    export_id: int,
    run_token: str,
    destination: Path | None = None,
    tar: bool = False,
    progress: ProgressCallback | None = None,
) -> str:
    """Build the export `export_id` and mark it done, or failed with a reason.

    Without `destination` (the job) it becomes EXPORT_DIR/<id>/<name>.tar beside a copy of its
    manifest.json, ready to download. With one (the command) the dataset folder, or with
    `tar` a tar file, is written at that path. Either way everything is written under a
    temporary name and renamed into place when complete. Safe to run twice: a second copy of
    the job finds the export claimed by another and returns."""
    export = _claim(export_id=export_id, run_token=run_token)
    if export is None:
        return "not claimed"
    beat = _heartbeat(export.pk, run_token, progress)
    if destination is None:
        temporary = export_dir() / TMP_FOLDER
        # Folders of earlier attempts of this export, killed mid-way: the claim is ours now.
        for leftover in temporary.glob(f"{export.pk}-*"):
            _remove(leftover)
        work = temporary / f"{export.pk}-{uuid.uuid4().hex[:12]}"
        final = export_dir() / str(export.pk)
        tar = True
    else:
        destination = Path(destination).absolute()
        work = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:12]}"
        final = destination
    prefix = _tar_prefix(destination, export)
    scratch = work / "scratch"
    # Web and worker hosts that share only the storage: the job's files go there (stored.py).
    to_storage = destination is None and not storage_is_local()
    location: Path | str  # a local path, or stored.SCHEME and a key in the storage
    try:
        work.mkdir(parents=True)
        if tar:
            out = work / "out"
            out.mkdir()
            tar_path = out / f"{prefix}.tar"
            with open(tar_path, "wb", buffering=0) as tar_file:
                tar_sink = TarSink(tar_file.fileno(), prefix, tar_path)
                try:
                    result = export_build(
                        export=export, sink=tar_sink, scratch=scratch, heartbeat=beat
                    )
                    tar_sink.close()
                except BaseException:
                    tar_sink.abandon()
                    raise
                os.fsync(tar_file.fileno())
            size = tar_path.stat().st_size
            if destination is None:
                os.replace(scratch / "manifest.json", out / "manifest.json")
                built, location = out, final / tar_path.name
            else:
                built, location = tar_path, final
        else:
            sink = DirectorySink(work / "dataset")
            result = export_build(export=export, sink=sink, scratch=scratch, heartbeat=beat)
            built, location, size = work / "dataset", final, result.bytes
        if to_storage:
            done = result.summary["counts"]["train"] + result.summary["counts"]["val"]
            location = export_upload(
                export_id=export.pk,
                tar_path=tar_path,
                manifest_path=out / "manifest.json",
                keep_alive=lambda: beat(done, done),
            )
        elif destination is None:
            # Left by an earlier attempt killed between its rename and its state update.
            _remove(final)
        elif final.exists() and not (final.is_dir() and not any(final.iterdir())):
            raise FileExistsError(f"{final} appeared while exporting")
        if not to_storage:
            os.replace(built, final)
    except ExportAborted:
        _remove(work)
        logger.warning("export %s stopped: its claim was taken", export.pk)
        return "aborted"
    except ExportEmpty as error:
        _remove(work)
        _fail(export.pk, run_token, str(error))
        return "failed"
    except BaseException as error:
        _remove(work)
        _fail(export.pk, run_token, f"{type(error).__name__}: {error}"[:2000])
        raise
    now = timezone.now()
    finished = Export.objects.filter(
        pk=export.pk, state=Export.State.RUNNING, run_token=run_token
    ).update(
        state=Export.State.DONE,
        location=str(location),
        counts=result.summary,
        size_bytes=size,
        progress_done=result.summary["counts"]["train"] + result.summary["counts"]["val"],
        heartbeat_at=now,
        finished_at=now,
        updated_at=now,
    )
    _remove(work)
    if not finished:
        if to_storage:
            stored_remove(str(location))
        elif destination is None:
            _remove(final)
        return "aborted"
    return "done"


def _tar_prefix(destination: Path | None, export: Export) -> str:
    """The top folder inside a tar: the export's name, or the name of the command's path."""
    if destination is None:
        return export.name
    name = destination.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or export.name
    return name


def _fail(export_id: int, run_token: str, message: str) -> None:
    now = timezone.now()
    Export.objects.filter(pk=export_id, state=Export.State.RUNNING, run_token=run_token).update(
        state=Export.State.FAILED, error=message, finished_at=now, updated_at=now
    )


def _inside_export_dir(path: str) -> bool:
    try:
        return Path(path).resolve().is_relative_to(export_dir().resolve())
    except (OSError, ValueError):
        return False
