"""An export's download: its finished tar (a local file, or in the object store: a signed URL
or streamed), read in chunks or gzipped on the fly, and its manifest."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files.storage import default_storage

from annotate.models import Export
from annotate.services.errors import Conflict
from annotate.services.export.lifecycle import _inside_export_dir
from annotate.services.export.stored import stored_chunks, stored_key, stored_manifest
from annotate.services.storage_kind import signed_url


class Gone(Conflict):
    """The thing existed but is no more (an expired export's files)."""

    status = 410


def _done_or_why(export: Export) -> None:
    if export.state == Export.State.EXPIRED:
        raise Gone("This export has expired and its files were removed; start a new one.")
    if export.state != Export.State.DONE:
        raise Conflict(f"This export is {export.state}; it can be downloaded once it is done.")


def _stored_downloadable(export: Export) -> str | None:
    """The storage key of a finished export kept in the storage (None: a local one)."""
    _done_or_why(export)
    key = stored_key(export.location)
    if key is not None and not default_storage.exists(key):
        raise Gone("This export's files are gone; start a new export.")
    return key


def export_downloadable(*, export: Export) -> Path:
    """The finished tar of `export` in EXPORT_DIR, or the reason it cannot be downloaded."""
    _done_or_why(export)
    path = Path(export.location)
    if not _inside_export_dir(export.location):
        raise Conflict(
            "This export was written to a local path by a command; it is not downloadable."
        )
    if not path.is_file():
        raise Gone("This export's files are gone; start a new export.")
    return path


def file_chunks(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


def gzip_stream(chunks: Iterator[bytes], level: int = 6) -> Iterator[bytes]:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


@dataclass
class Download:
    chunks: Iterator[bytes]
    filename: str
    content_type: str
    size: int | None
    # Where the client can fetch it itself for a short while (a signed URL): then send there.
    url: str | None = None


def export_download(*, export: Export, compress: bool = False) -> Download:
    """The export's tar, read in chunks (never whole into memory), or gzipped on the fly; for
    one in an object store that signs URLs, a short-lived URL to it instead (EXPORT_URL_SECONDS)
    unless EXPORT_DOWNLOAD_REDIRECT is off."""
    key = _stored_downloadable(export)
    if key is not None:
        filename = key.rpartition("/")[2]
        if compress:
            return Download(
                gzip_stream(stored_chunks(key)), f"{filename}.gz", "application/gzip", None
            )
        url = (
            signed_url(key, seconds=settings.EXPORT_URL_SECONDS, filename=filename)
            if settings.EXPORT_DOWNLOAD_REDIRECT
            else None
        )
        size = export.size_bytes
        return Download(stored_chunks(key), filename, "application/x-tar", size, url=url)
    path = export_downloadable(export=export)
    if compress:
        return Download(gzip_stream(file_chunks(path)), f"{path.name}.gz", "application/gzip", None)
    return Download(file_chunks(path), path.name, "application/x-tar", path.stat().st_size)


def export_manifest_path(*, export: Export) -> Path:
    return export_downloadable(export=export).parent / "manifest.json"


def export_manifest_open(*, export: Export) -> IO[bytes]:
    """The finished export's manifest.json, opened, wherever it is kept."""
    if _stored_downloadable(export) is not None:
        return stored_manifest(export.location)
    return open(export_manifest_path(export=export), "rb")
