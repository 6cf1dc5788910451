"""Checkpoints beside the images when those are in an object store: a training writes its
checkpoint to ML_MODELS_DIR on its worker and, with S3 storage, uploads it to
`models/<file>` in the storage; a worker that needs a checkpoint it does not have (another ML
host) fetches it from there. With the local file storage everything is on one host and the
folder is enough, as before.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from annotate.services.storage_kind import storage_is_local

logger = logging.getLogger(__name__)

STORAGE_FOLDER = "models"


def model_path(relative: str) -> Path:
    """Where a checkpoint is on this worker (annotate.services.ml.model_path)."""
    return Path(settings.ML_MODELS_DIR) / relative


def _stored_name(relative: str) -> str:
    return f"{STORAGE_FOLDER}/{relative}"


def checkpoint_publish(relative: str) -> None:
    """After a training wrote `relative` under ML_MODELS_DIR: copy it to the storage (unless
    that is local), before the version that names it is recorded."""
    if storage_is_local():
        return
    name = _stored_name(relative)
    if default_storage.exists(name):  # a run delivered twice writes the same name
        default_storage.delete(name)
    with open(model_path(relative), "rb") as f:
        saved = default_storage.save(name, File(f, name=Path(relative).name))
    if saved != name:
        raise OSError(f"checkpoint stored as {saved}, not {name}")


def checkpoint_local(relative: str) -> Path:
    """The local path of checkpoint `relative`, fetched from the storage when this worker does
    not have it (a missing one is left to fail where it is loaded)."""
    path = model_path(relative)
    if path.exists() or storage_is_local():
        return path
    name = _stored_name(relative)
    if not default_storage.exists(name):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with default_storage.open(name, "rb") as source, open(temporary, "wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("checkpoint %s fetched from the storage", relative)
    return path
