"""An export's download: its finished tar, read in chunks or gzipped on the fly, and its
manifest."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from annotate.models import Export
from annotate.services.errors import Conflict
from annotate.services.export.lifecycle import _inside_export_dir


class Gone(Conflict):
    """The thing existed but is no more (an expired export's files)."""

    status = 410


def export_downloadable(*, export: Export) -> Path:
    """The finished tar of `export`, or the reason it cannot be downloaded."""
    if export.state == Export.State.EXPIRED:
        raise Gone("This export has expired and its files were removed; start a new one.")
    if export.state != Export.State.DONE:
        raise Conflict(f"This export is {export.state}; it can be downloaded once it is done.")
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


def export_download(*, export: Export, compress: bool = False) -> Download:
    """The export's tar, read in chunks (never whole into memory), or gzipped on the fly."""
    path = export_downloadable(export=export)
    if compress:
        return Download(gzip_stream(file_chunks(path)), f"{path.name}.gz", "application/gzip", None)
    return Download(file_chunks(path), path.name, "application/x-tar", path.stat().st_size)


def export_manifest_path(*, export: Export) -> Path:
    return export_downloadable(export=export).parent / "manifest.json"
