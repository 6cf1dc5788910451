"""The worker-process side of a bulk import: inspect files and write them to storage.

No models and no database here: worker processes start with `spawn` and import only this, the
pure imaging package and Django's file storage. They write the original and the copies, so
that the importing process is left with the rows alone; it deletes the files again of every
image whose rows do not commit (annotate.services.ingest).
"""

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage
from django.utils.functional import LazyObject
from django.utils.module_loading import import_string

from annotate.services import imaging


@dataclass(frozen=True)
class StorageTarget:
    """Where a worker writes: a storage backend and options (picklable), and the project."""

    backend: str
    options: dict[str, Any]
    project_id: int

    def storage(self) -> Storage:
        storage: Storage = import_string(self.backend)(**self.options)
        return storage


def original_name(*, project_id: int, sha256: str, filename: str) -> str:
    """Where an original is stored: the layout of annotate.models.image_upload_to."""
    return f"images/{project_id}/{sha256[:2]}/{sha256}/{filename}"


def preprocessed_name(*, project_id: int, sha256: str) -> str:
    return f"preprocessed/{project_id}/{sha256[:2]}/{sha256}.jpg"


def display_name(*, project_id: int, sha256: str) -> str:
    """Where the display copy is stored: beside the CNN copy, under its own top folder."""
    return f"display/{project_id}/{sha256[:2]}/{sha256}.jpg"


def stored_filename(storage: Storage, name: str) -> str:
    """A safe, short file name for the original, from the name it arrived with."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    if dot and len(extension) <= 10:
        base = f"{stem[:90]}.{extension}"
    return storage.get_valid_name(base[:100]) or "image"


def files_write(
    *,
    storage: Storage,
    project_id: int,
    name: str,
    original: BinaryIO,
    inspected: imaging.Inspected,
) -> tuple[str, str, str]:
    """Write the original (as it arrived: `original`, an open file read from its start), the
    CNN copy and the display copy (unless the original is its own); their stored names. On
    any failure nothing of them stays."""
    written: list[str] = []
    try:
        original.seek(0)
        written.append(
            file_save(
                storage,
                original_name(
                    project_id=project_id,
                    sha256=inspected.sha256,
                    filename=stored_filename(storage, name),
                ),
                original.read(),
            )
        )
        written.append(
            file_save(
                storage,
                preprocessed_name(project_id=project_id, sha256=inspected.sha256),
                inspected.preprocessed,
            )
        )
        if not inspected.display_is_original:
            written.append(
                file_save(
                    storage,
                    display_name(project_id=project_id, sha256=inspected.sha256),
                    inspected.display,
                )
            )
    except BaseException:
        for stored in written:
            storage.delete(stored)
        raise
    # A file with nothing to drop is its own display copy: one file fewer to write.
    return written[0], written[1], written[0] if inspected.display_is_original else written[2]


def file_save(storage: Storage, name: str, data: bytes) -> str:
    """Store `data` as a new file `name` (or, if that name is taken, under the free name the
    storage picks); the name it got.

    Into Django's local file storage the file is written here, as its save() writes it (the
    same folders, name, permissions and group, never over an existing file), without the
    costs of the general path: an existence check, a folder creation attempt and a lock per
    file, and Python's file objects. For an import they were about half a millisecond of
    CPU per image, a tenth of all its work. Any other storage: its save()."""
    local = _plain_local(storage)
    if local is None:
        return storage.save(name, ContentFile(data))
    path = local.path(name)  # refuses a name that leads out of the storage's folder
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:  # its folder is new (an original's always is)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o666)
    except FileExistsError:
        return storage.save(name, ContentFile(data))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if local.file_permissions_mode is not None:
            os.fchmod(fd, local.file_permissions_mode)
        group = os.stat(local.location).st_gid
        if os.fstat(fd).st_gid != group:
            try:
                os.fchown(fd, -1, group)
            except PermissionError:
                pass
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return name


def _plain_local(storage: Storage) -> FileSystemStorage | None:
    """`storage` (or what the lazy default storage stands for) when it is Django's own local
    file storage with the options file_save() writes as it does; else None."""
    if isinstance(storage, LazyObject):
        storage.location  # noqa: B018 - sets the lazy object up
        storage = storage._wrapped
    if type(storage) is not FileSystemStorage or os.name != "posix":
        return None
    if storage.directory_permissions_mode is not None:
        return None  # folders made with a mode: its save() does that
    return storage


_target: StorageTarget | None = None
_storage: Storage | None = None


FILE_SYSTEM_STORAGE = "django.core.files.storage.FileSystemStorage"
# The settings the local file storage reads even when its options give their values.
FILE_SYSTEM_SETTINGS = {
    "MEDIA_ROOT": "location",
    "MEDIA_URL": "base_url",
    "FILE_UPLOAD_PERMISSIONS": "file_permissions_mode",
    "FILE_UPLOAD_DIRECTORY_PERMISSIONS": "directory_permissions_mode",
}


def worker_init(known: frozenset[str], target: StorageTarget) -> None:
    """Process pool initializer."""
    global _target, _storage
    imaging.known_set(known)
    if target.backend == FILE_SYSTEM_STORAGE:
        # The local storage reads these settings whatever its options say, which would load
        # the project's settings module (a fifth of a second of CPU in every worker process
        # of every import, Celery's imports among it). The parent made them explicit.
        from django.conf import settings

        if not settings.configured:
            settings.configure(
                **{
                    name: target.options.get(option)
                    for name, option in FILE_SYSTEM_SETTINGS.items()
                }
            )
    _target, _storage = target, target.storage()


def inspect_and_store(
    items: list[tuple[str, imaging.Source]], limits: imaging.Limits
) -> list[imaging.Inspected | imaging.Known | str]:
    """Inspect a few files and store the accepted ones: one round trip to a worker process.

    An accepted file comes back with its stored names and without the copies' bytes.
    """
    assert _target is not None and _storage is not None, "call worker_init first"
    return [
        imaging.inspect_source(source, limits, keep=functools.partial(_stored, name))
        for name, source in items
    ]


def _stored(name: str, original: BinaryIO, inspected: imaging.Inspected) -> imaging.Inspected | str:
    """Write an accepted file and its copies; the Inspected with their names and without
    the copies' bytes, or why it could not be stored."""
    assert _target is not None and _storage is not None, "call worker_init first"
    try:
        stored, copy, display = files_write(
            storage=_storage,
            project_id=_target.project_id,
            name=name,
            original=original,
            inspected=inspected,
        )
    except OSError as error:
        return f"could not store the file: {error}"
    return dataclasses.replace(
        inspected,
        preprocessed=b"",
        display=b"",
        stored_name=stored,
        preprocessed_name=copy,
        display_name=display,
    )
