"""Looking after stored files: those no image row points at (orphans)."""

from collections.abc import Iterator
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from annotate.converters import parse_id
from annotate.models import Image


def storage_orphans(*, min_age: timedelta, delete: bool = False) -> list[str]:
    """Stored originals and copies (CNN, display) that no image row points at, older than
    `min_age`.

    Ingest deletes the files of every image whose rows did not commit; only a process killed
    between the two (or a deleted project) leaves such files. `min_age` spares the files of
    imports still running. With `delete`, they are deleted. Works on any storage backend.
    """
    cutoff = timezone.now() - min_age
    orphans = []
    for top in ("images", "preprocessed", "display"):
        for project_folder in _listdir(top)[0]:
            referenced: set[str] = set()
            project_id = parse_id(project_folder)
            if project_id is not None:
                rows = Image.objects.filter(project_id=project_id)
                referenced = {
                    name
                    for names in rows.values_list("file", "preprocessed", "display")
                    for name in names
                }
            for name in _walk(f"{top}/{project_folder}"):
                if name in referenced:
                    continue
                if default_storage.get_modified_time(name) > cutoff:
                    continue
                orphans.append(name)
                if delete:
                    default_storage.delete(name)
    return orphans


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except FileNotFoundError:
        return [], []


def _walk(path: str) -> Iterator[str]:
    folders, files = _listdir(path)
    for name in sorted(files):
        yield f"{path}/{name}"
    for folder in sorted(folders):
        yield from _walk(f"{path}/{folder}")
