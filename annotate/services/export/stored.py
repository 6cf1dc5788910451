"""Finished exports in the object store, for web and worker hosts that share no disk.

With S3 storage (annotate.services.storage_kind) the job builds the tar on its worker as
before, then uploads the manifest and the tar under a key of this attempt alone,
`exports/<id>/<attempt>/`, and only then marks the export done with that key as its location
(`storage:<key>`): a half-uploaded or abandoned attempt is never named by a done export, and
S3 shows a multipart upload only once it is complete. Large files go up in parts
(django-storages hands the file to boto3's upload_fileobj, multipart past its threshold).
Downloads are a short-lived signed URL when the storage can sign one, else a stream from the
storage through the web server. With the local file storage nothing here is used: exports stay
in EXPORT_DIR.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)

SCHEME = "storage:"
FOLDER = "exports"
MANIFEST = "manifest.json"


def stored_key(location: str) -> str | None:
    """The tar's name in the storage, for a location that is one."""
    return location[len(SCHEME) :] if location.startswith(SCHEME) else None


def _save(name: str, path: Path) -> None:
    with open(path, "rb") as f:
        saved = default_storage.save(name, File(f, name=path.name))
    if saved != name:  # the attempt's key is new: another name means something else wrote it
        default_storage.delete(saved)
        raise FileExistsError(f"{name} exists already in the storage")


def export_upload(
    *, export_id: int, tar_path: Path, manifest_path: Path, keep_alive: Callable[[], None]
) -> str:
    """Upload an attempt's manifest then its tar; return the location to record. The upload
    runs in a thread while this one calls `keep_alive` (the export's heartbeat, which raises
    when the export is no longer ours) before it and every EXPORT_PROGRESS_SECONDS."""
    folder = f"{FOLDER}/{export_id}/{uuid.uuid4().hex[:16]}"
    tar_key = f"{folder}/{tar_path.name}"

    def upload() -> None:
        _save(f"{folder}/{MANIFEST}", manifest_path)
        _save(tar_key, tar_path)

    keep_alive()  # still ours: else nothing is uploaded at all
    logger.info("export %s: uploading %s to the storage", export_id, tar_key)
    with ThreadPoolExecutor(1, thread_name_prefix="export-upload") as pool:
        pending = pool.submit(upload)
        try:
            while True:
                try:
                    pending.result(timeout=settings.EXPORT_PROGRESS_SECONDS)
                    break
                except FutureTimeout:
                    keep_alive()
        except BaseException:
            # Abandoned (the claim was lost, or the job is stopping): once the upload under
            # way has stopped, nothing of this attempt stays.
            if not pending.cancel():
                wait([pending])
            _delete_tree(folder)
            raise
    return SCHEME + tar_key


def _delete_tree(folder: str) -> int:
    """Delete every object under `folder`; returns how many."""
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in files:
        default_storage.delete(f"{folder}/{name}")
        removed += 1
    for sub in folders:
        removed += _delete_tree(f"{folder}/{sub}")
    return removed


def stored_remove(location: str) -> None:
    """Remove a stored export's objects (its attempt's folder)."""
    key = stored_key(location)
    if key is not None:
        _delete_tree(key.rpartition("/")[0])


def stored_chunks(key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    with default_storage.open(key, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


def stored_manifest(location: str) -> IO[bytes]:
    key = stored_key(location)
    assert key is not None
    opened: IO[bytes] = default_storage.open(f"{key.rpartition('/')[0]}/{MANIFEST}", "rb")
    return opened


def stored_leftovers(keep: Callable[[int, str], bool]) -> int:
    """Remove the folders under exports/ that no live export owns: `keep(export_id, attempt)`
    says which attempt folders to keep. Returns how many objects were removed."""
    try:
        export_folders, _ = default_storage.listdir(FOLDER)
    except FileNotFoundError:
        return 0
    removed = 0
    for export_folder in export_folders:
        if not export_folder.isdigit():
            continue
        attempts, _ = default_storage.listdir(f"{FOLDER}/{export_folder}")
        for attempt in attempts:
            if not keep(int(export_folder), attempt):
                removed += _delete_tree(f"{FOLDER}/{export_folder}/{attempt}")
    return removed
