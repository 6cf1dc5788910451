"""Stored files of the ingest: where worker processes write them, and deleting those whose
rows did not commit."""

import logging
from collections.abc import Iterable

from django.conf import settings
from django.core.files.storage import default_storage

from annotate.services import ingest_worker
from annotate.services.imaging import Inspected

logger = logging.getLogger(__name__)


def storage_target(project_id: int) -> ingest_worker.StorageTarget:
    """The default storage as worker processes can rebuild it, with its place made explicit
    (settings changed at run time, as in tests, do not reach a spawned process)."""
    config = settings.STORAGES["default"]
    options = dict(config.get("OPTIONS", {}))
    if config["BACKEND"] == ingest_worker.FILE_SYSTEM_STORAGE:
        for name, option in ingest_worker.FILE_SYSTEM_SETTINGS.items():
            value = getattr(settings, name)
            options.setdefault(option, str(value) if name == "MEDIA_ROOT" else value)
    return ingest_worker.StorageTarget(
        backend=config["BACKEND"], options=options, project_id=project_id
    )


def worker_files(outcomes: Iterable[object]) -> list[str]:
    """The files worker processes wrote for these outcomes, each once (an original can be its
    own display copy)."""
    names = (
        name
        for outcome in outcomes
        if isinstance(outcome, Inspected)
        for name in (outcome.stored_name, outcome.preprocessed_name, outcome.display_name)
        if name
    )
    return list(dict.fromkeys(names))


def files_delete(names: Iterable[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.exception("could not delete %s after a failed ingest", name)
