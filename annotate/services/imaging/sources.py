"""Where a file's bytes come from, and inspecting one such source: the entry point of the
bulk import's worker processes. Sources are small picklable values, so that worker processes
can open the file themselves.
"""

import contextlib
import logging
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from annotate.services.imaging.checks import CHUNK, ImageRejected, Inspected, Known, Limits, inspect

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathSource:
    """A file on the local disk (bulk imports from a folder)."""

    path: str

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


_archives: dict[str, zipfile.ZipFile] = {}


@dataclass(frozen=True)
class ZipMemberSource:
    """One member of a zip archive, read into a spooled temporary file of at most `max_bytes`.

    `archive` is a path (picklable: worker processes open the archive once and keep it) or an
    open ZipFile (the request's own upload, read in the request's process).
    """

    archive: "str | zipfile.ZipFile"
    member: str
    max_bytes: int

    def open(self) -> BinaryIO:
        if isinstance(self.archive, str):
            archive = _archives.get(self.archive)
            if archive is None:
                archive = _archives[self.archive] = zipfile.ZipFile(self.archive)
        else:
            archive = self.archive
        copy = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        try:
            with archive.open(self.member) as member:
                size = 0
                while chunk := member.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageRejected(
                            f"file is larger than the limit of {self.max_bytes} bytes"
                        )
                    copy.write(chunk)
        except ImageRejected:
            copy.close()
            raise
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as e:
            # CRC mismatch, damaged deflate data, encryption, an unknown compression method.
            copy.close()
            raise ImageRejected(f"cannot read this archive member: {e}") from None
        copy.seek(0)
        return copy  # type: ignore[return-value]


@dataclass(frozen=True)
class StreamSource:
    """An already open, seekable stream (an uploaded file). Not for worker processes."""

    stream: BinaryIO

    def open(self) -> AbstractContextManager[BinaryIO]:
        # Lent for a `with` block without being closed: the upload handler owns the stream.
        self.stream.seek(0)
        return contextlib.nullcontext(self.stream)


def archives_close() -> None:
    """Close the archives ZipMemberSource opened by path in this process."""
    while _archives:
        _archives.popitem()[1].close()


Source = PathSource | ZipMemberSource | StreamSource


_known: frozenset[str] = frozenset()


def known_set(sha256s: frozenset[str]) -> None:
    """Worker process initializer: the SHA-256s the project holds when the import starts."""
    global _known
    _known = sha256s


# What to do with an accepted file while it is still open (store it): the Inspected to answer,
# or the reason it was refused after all.
Keep = Callable[[BinaryIO, Inspected], Inspected | str]


def inspect_source(
    source: Source,
    limits: Limits,
    known: frozenset[str] | None = None,
    keep: Keep | None = None,
) -> Inspected | Known | str:
    """Open and inspect one source: the Inspected, Known, or the reason it was rejected.
    `keep`, when given, is called with the still open file once it is accepted, so that
    storing it reads it again without opening it again (or inflating a zip member again).

    The entry point of worker processes; it returns the reason rather than raising it, so
    that nothing but plain values crosses the process boundary. Whatever goes wrong with
    one file is that file's reason, never the end of the upload it came with: a decoder's
    unforeseen exception is logged and the file refused.
    """
    try:
        with source.open() as stream:
            outcome = inspect(stream, limits, _known if known is None else known)
            if keep is not None and isinstance(outcome, Inspected):
                return keep(stream, outcome)
            return outcome
    except ImageRejected as error:
        return str(error)
    except OSError as error:
        return f"cannot read the file: {error.strerror or error}"
    except Exception as error:  # one file's failure is its own (see above)
        logger.exception("inspecting a file failed")
        return f"cannot process this image: {type(error).__name__}"
