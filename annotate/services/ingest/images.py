"""Bringing images into a project: one pipeline for the API, the import_images command and
the benchmark.

  expand     uploads, folders and zip archives into candidates (archives; zip rules there);
  inspect    each candidate: byte cap, identify, pixel cap, full decode, SHA-256, perceptual
             hash, the CNN's copy (inspection; in worker processes for bulk imports);
  store      each accepted file all or nothing: original and CNN copy written first, then
             the rows (one transaction per batch); any failure deletes the files of every
             image whose rows did not commit (store).
"""

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from annotate.models import Image, Label, Project
from annotate.services import imaging
from annotate.services.errors import InvalidInput, ServiceError
from annotate.services.imaging import Inspected
from annotate.services.ingest.archives import (
    archive_candidates,
    folder_candidates,
    upload_candidates,
)
from annotate.services.ingest.candidates import (
    Candidate,
    GoldRule,
    Progress,
    UploadResult,
    gold_check,
)
from annotate.services.ingest.files import files_delete, worker_files
from annotate.services.ingest.inspection import inspections
from annotate.services.ingest.store import STORE_BATCH, store_batch

KNOWN_SHA256_MAX = 250_000  # hashes of a project's images handed to the inspection


class UploadTooLarge(ServiceError):
    status = 413


def upload_size_check(*, content_length: int | None) -> None:
    """Refuse a request body over UPLOAD_MAX_REQUEST_BYTES before anything of it is read."""
    if content_length is not None and content_length > settings.UPLOAD_MAX_REQUEST_BYTES:
        raise UploadTooLarge(
            f"The upload is {content_length} bytes; one request may carry at most "
            f"{settings.UPLOAD_MAX_REQUEST_BYTES} bytes. Send the files in several requests."
        )


def _ingest(
    *,
    project: Project,
    candidates: Iterable[Candidate],
    workers: int = 1,
    progress: Progress | None = None,
    skip_known: bool = False,
) -> UploadResult:
    result = UploadResult()
    batch: list[tuple[Candidate, Inspected]] = []
    pending = 0
    known: frozenset[str] = frozenset()
    if skip_known:
        # Bulk imports skip decoding what the project holds already, so a re-run is quick.
        # Up to this many hashes are cheap to hand to each worker; past it, a re-run decodes
        # again, and the database still finds every duplicate.
        shas = Image.objects.filter(project=project).values_list("sha256", flat=True)
        first = list(shas[: KNOWN_SHA256_MAX + 1])
        known = frozenset(first) if len(first) <= KNOWN_SHA256_MAX else frozenset()
    inspected = inspections(candidates, workers=workers, known=known, project_id=project.pk)
    try:
        for candidate, outcome in inspected:
            pending += 1
            if isinstance(outcome, str):
                result.rejected.append({"name": candidate.name, "reason": outcome})
            elif isinstance(outcome, imaging.Known):
                result.duplicates += 1
            else:
                batch.append((candidate, outcome))
            if len(batch) >= STORE_BATCH:
                stored, batch = batch, []
                store_batch(project=project, batch=stored, result=result)
                if progress is not None:
                    progress(pending)
                pending = 0
        if batch:
            stored, batch = batch, []
            store_batch(project=project, batch=stored, result=result)
    except BaseException:
        # Interrupted between inspecting and storing: what workers wrote for it goes too.
        files_delete(worker_files(outcome for _, outcome in batch))
        raise
    finally:
        inspected.close()  # stops the workers, deleting what they wrote for unstored files
    if progress is not None and pending:
        progress(pending)
    return result


def images_upload(
    *,
    project: Project,
    files: Iterable[tuple[str, BinaryIO]],
    gold_label: Label | None = None,
    gold_from_folders: bool = False,
) -> UploadResult:
    """Ingest uploaded files (images and zip archives), each file on its own: one bad file
    is one `rejected` entry; exact duplicates are counted, not stored."""
    gold_check(project, gold_label, gold_from_folders)
    gold = GoldRule(project=project, gold_label=gold_label, from_folders=gold_from_folders)
    return _ingest(project=project, candidates=upload_candidates(files, gold))


def images_import(
    *,
    project: Project,
    path: Path,
    gold_label: Label | None = None,
    gold_from_folders: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> UploadResult:
    """Ingest a folder (recursively; zip files in it are expanded) or one zip archive.

    Re-running the same import adds nothing: every file is then an exact duplicate.
    `progress(n)` is called as files finish; with `workers` > 1 the decoding runs in that
    many processes.
    """
    gold_check(project, gold_label, gold_from_folders)
    if workers < 1:
        raise InvalidInput("workers must be at least 1.", field="workers")
    gold = GoldRule(project=project, gold_label=gold_label, from_folders=gold_from_folders)
    if path.is_dir():
        candidates = folder_candidates(path, gold)
    elif path.is_file():
        candidates = archive_candidates(name=path.name, archive=str(path), gold=gold)
    else:
        raise InvalidInput(f"{path} is neither a folder nor a zip archive.", field="path")
    try:
        return _ingest(
            project=project,
            candidates=candidates,
            workers=workers,
            progress=progress,
            skip_known=True,
        )
    finally:
        imaging.archives_close()
