"""What the default storage is and can do: a folder on this host, or an object store whose
objects can be handed out by short-lived signed URL."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import FileSystemStorage, Storage, storages


def _backend() -> Storage:
    """The backend default_storage (a lazy proxy) stands for."""
    backend: Storage = storages["default"]
    return backend


def storage_is_local() -> bool:
    """The default storage is this host's file system: one host, or a shared folder."""
    return isinstance(_backend(), FileSystemStorage)


def signed_url(name: str, *, seconds: int, filename: str | None = None) -> str | None:
    """A URL that lets its holder GET stored `name` for `seconds`, without our credentials;
    None when the storage cannot sign one (a local folder, or S3 with querystring_auth off)."""
    from storages.backends.s3 import S3Storage

    backend = _backend()
    if not isinstance(backend, S3Storage) or not backend.querystring_auth:
        return None
    parameters: dict[str, Any] = {}
    if filename:
        parameters["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    url: str = backend.url(name, parameters=parameters, expire=seconds)
    return url
