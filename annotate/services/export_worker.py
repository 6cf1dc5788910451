"""The worker-process side of an export: read the stored images, convert those that need it,
hash them, and write them at the places the exporting process gives them.

Why processes: per image an export reads a file, hashes it and writes it, three system-level
costs of about 10, 20 and 17 µs for a 32 KB JPEG, and lays it out (its path, its lines in the
lists, its place in the tar), which is Python. In threads of one process all of that shares one
interpreter lock, and the handing over of that lock between the reading thread and the hashing
one was what limited an export (about half the speed of `tar -cf` on two cores). Here the
exporting process only lays the images out, in order, and worker processes do the rest.

The protocol, per worker, over a private socket pair (`multiprocessing.connection`):
    ("read", batch, [stored name, ...])   -> ("read", batch, [(size, sha256) | "reason", ...])
    ("write", batch, start, [member, ...]) -> ("written", batch)
A batch is read (and held here) first, because its files' sizes decide where they go; once the
exporting process has laid them out it says where to write them: a tar offset and each member's
name or header, or a file path per image for a dataset folder. Unreadable files are answered
with their reason and get no member. Any other failure is answered ("failed", message) and
ends the worker; so does the end of the connection (the exporting process stopped or died).

No Django and no database here: the process starts with `python -c` (see main) and imports
only this and the standard library's lighter modules (not multiprocessing, dataclasses or
typing: the messages are read and written here, in the format of multiprocessing's
Connection, which the exporting process uses). Pillow and imaging (for ingest's conversion to
RGB), export_privacy and, for storages other than a local folder, the storage classes
(ingest_worker) are imported when a file or the export first needs them. A worker's start-up
is a fixed cost of every export: importing Pillow, imaging, dataclasses and multiprocessing
made it about 0.1 s of CPU per worker, more than copying a thousand images.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sys
from collections import namedtuple

from annotate.services import jpeg_metadata
from annotate.services.export_tar import (
    MAX_BUFFERS,
    UstarHeaders,
    member_buffers,
    pwrite_all,
)
from annotate.services.jpeg_metadata import jpeg_header

# (typing is not imported at run time: mypy reads any `TYPE_CHECKING` as true.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from annotate.services.jpeg_metadata import Buffer

_PR_SET_PDEATHSIG = 1  # prctl(2)

# What a stored file that cannot be read or decoded raises: it is left out and reported. With
# Pillow loaded (a file was converted), its refusals of decompression bombs too.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError)


def unreadable_errors() -> tuple[type[BaseException], ...]:
    pil = sys.modules.get("PIL.Image")
    if pil is None:
        return _READ_ERRORS
    return (*_READ_ERRORS, pil.DecompressionBombError, pil.DecompressionBombWarning)


# --- JPEG ------------------------------------------------------------------------------------


def jpeg_kept(data: bytes, resize: int | None) -> bool:
    """Whether `data` is an RGB JPEG that needs no change (no resize, or already small enough;
    upright): one that jpeg_for_export() returns byte for byte."""
    header = jpeg_header(data)
    return header is not None and (resize is None or min(header) <= resize)


def jpeg_for_export(data: bytes, *, resize: int | None, quality: int) -> bytes:
    """A stored image file's bytes as the export writes them: an upright RGB JPEG, its shorter
    side at most `resize`. An RGB JPEG that needs no change (see jpeg_kept) is returned byte
    for byte."""
    if jpeg_kept(data, resize):
        return data
    from annotate.services.imaging import jpeg_upright_rgb

    # The one conversion of ingest, display copy and export (16-bit grey scaled, not
    # clipped; alpha over white; first frame).
    return jpeg_upright_rgb(data, short_side=resize, quality=quality)


# --- the copier -----------------------------------------------------------------------------


if TYPE_CHECKING:
    from typing import NamedTuple

    class CopyConfig(NamedTuple):
        source: str | Any
        tar_path: str | None
        tar_prefix: str
        tar_mtime: int
        resize: int | None
        quality: int
        keep_metadata: tuple[str, ...] = ()
        blur_faces: bool = False

else:
    # What a worker needs to know, once (picklable): where the stored files are (`source`: a
    # local folder, or an ingest_worker.StorageTarget to rebuild), where to write (`tar_path`,
    # with the tar's folder prefix and mtime; or None for a dataset folder), how to convert
    # (`resize`, `quality`), the kinds of metadata (jpeg_metadata.KINDS) that files keep (the
    # others are dropped) and whether faces are blurred. (A named tuple: see the docstring.)
    CopyConfig = namedtuple(
        "CopyConfig",
        (
            "source",
            "tar_path",
            "tar_prefix",
            "tar_mtime",
            "resize",
            "quality",
            "keep_metadata",
            "blur_faces",
        ),
        defaults=((), False),
    )


# What a worker says of each image it read: (size, SHA-256, the metadata kinds dropped as
# jpeg_metadata.BIT flags, the faces blurred), or why it is unreadable.
ReadResult = tuple[int, str, int, int] | str


def local_reader(base: str) -> Callable[[str], bytes]:
    """How to read a stored file by its name under the local folder `base`: a plain read. The
    names come from our own rows, written by the storage; the storage's own open() (a path
    check and a File wrapper) costs about as much as reading a small image, and so does
    Python's open(): its file objects make seven system calls per file, where an open, a stat
    for the size, one read and a close do."""
    base = os.path.abspath(base)

    def read_local(name: str) -> bytes:
        if name.startswith(("/", "..")) or "/../" in name:
            raise OSError(f"refusing to read {name!r} outside the storage")
        fd = os.open(f"{base}/{name}", os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)  # a byte more than its size, to see its end
            if len(data) > size:  # it grew since: read on to its end
                chunks = [data]
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                data = b"".join(chunks)
            return data
        finally:
            os.close(fd)

    return read_local


def storage_reader(target: Any) -> Callable[[str], bytes]:
    storage = target.storage()

    def read_any(name: str) -> bytes:
        with storage.open(name, "rb") as f:
            data: bytes = f.read()
            return data

    return read_any


class Copier:
    """Reads, converts and hashes batches of stored images, holds them, and writes them where
    it is told. Used by a worker process, or directly by the exporting process (no workers)."""

    def __init__(self, config: CopyConfig):
        self.config = config
        self.read_stored = (
            local_reader(config.source)
            if isinstance(config.source, str)
            else storage_reader(config.source)
        )
        self.headers = UstarHeaders(config.tar_prefix, config.tar_mtime)
        self.out = os.open(config.tar_path, os.O_WRONLY | os.O_CLOEXEC) if config.tar_path else None
        self.held: dict[int, list[list[Buffer]]] = {}

    def convert(self, data: bytes) -> bytes:
        return jpeg_for_export(data, resize=self.config.resize, quality=self.config.quality)

    def prepare(self, data: bytes) -> tuple[list[Buffer], int, int]:
        """A stored file as the export writes it (the pieces that make it up, see
        jpeg_metadata.strip_pieces), the metadata kinds dropped from it (as
        jpeg_metadata.BIT flags) and the faces blurred in it. An upright RGB JPEG keeps its
        image data byte for byte, less its metadata segments (jpeg_metadata); anything else
        is converted (jpeg_for_export), which writes none. Faces are blurred on request, the
        files with some re-encoded."""
        keep, quality = self.config.keep_metadata, self.config.quality
        if jpeg_kept(data, self.config.resize):
            try:
                pieces, mask = jpeg_metadata.strip_pieces(data, keep)
            except jpeg_metadata.NotJpeg:
                # Pillow decodes it (leniently) but the walker cannot follow it to its end
                # (truncated, say): written anew.
                from annotate.services import export_privacy

                mask = jpeg_metadata.header_kinds(data)
                pieces = [export_privacy.reencode(data, quality=quality)]
        else:
            mask = jpeg_metadata.header_kinds(data)
            # (What Pillow writes holds no metadata; stripped all the same, for certain.)
            pieces = [jpeg_metadata.strip(self.convert(data), keep).data]
        faces = 0
        if self.config.blur_faces:
            from annotate.services import export_privacy

            whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            blurred, faces = export_privacy.blur_faces_in(bytes(whole), quality=quality, keep=keep)
            pieces = [blurred]
        return pieces, mask, faces

    def read(self, batch: int, names: list[str]) -> list[ReadResult]:
        """Read the batch's files, converting those that need it; hold the bytes to write and
        return each file's size and SHA-256 (of the very bytes to be written, whatever was
        recorded at upload: a stored file may have rotted since), what was stripped and how
        many faces were blurred; or why it is unreadable."""
        results: list[ReadResult] = []
        kept: list[list[Buffer]] = []
        sha256 = hashlib.sha256
        for name in names:
            try:
                pieces, mask, faces = self.prepare(self.read_stored(name))
            except Exception as error:
                if not isinstance(error, unreadable_errors()):
                    raise
                results.append(f"unreadable: {error}"[:300])
                continue
            kept.append(pieces)
            digest = sha256(pieces[0])
            for piece in pieces[1:]:
                digest.update(piece)
            results.append((sum(map(len, pieces)), digest.hexdigest(), mask, faces))
        self.held[batch] = kept
        return results

    def write(self, batch: int, start: int | None, members: list[Any]) -> None:
        """Write the batch's readable files, in order: into the tar from offset `start`, each
        member given as (its name under the prefix, None) or (_, its full header) when a plain
        one does not hold it; or, with no tar, each to the path given."""
        files = self.held.pop(batch)
        if len(files) != len(members):
            raise RuntimeError(f"batch {batch}: {len(members)} places for {len(files)} files")
        if self.out is None:
            for path, pieces in zip(members, files, strict=False):
                with open(path, "wb", buffering=0) as f:
                    for piece in pieces:
                        f.write(piece)  # (unbuffered: all of it, short of an error)
            return
        if not members:
            return  # every file of the batch was unreadable: nothing was placed
        if start is None:
            raise ValueError(f"batch {batch}: no offset to write the tar members at")
        offset = start
        buffers: list[Buffer] = []
        for (name, header), pieces in zip(members, files, strict=True):
            if len(buffers) + len(pieces) + 2 > MAX_BUFFERS:
                pwrite_all(self.out, buffers, offset)
                offset += sum(map(len, buffers))
                buffers = []
            size = sum(map(len, pieces))
            buffers += member_buffers(header or self.headers(name, size), *pieces)
        pwrite_all(self.out, buffers, offset)

    def close(self) -> None:
        if self.out is not None:
            os.close(self.out)
            self.out = None


def _end_with(parent: int) -> None:
    """On Linux, have this process killed when the exporting process `parent` ends, however it
    ends: a worker blocked reading a slow file would not see its connection close. With
    glibc, also keep the memory freed between batches (see _KEEP_FREED)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the closed connection ends it
        return
    if os.getppid() != parent:  # it ended before that took effect
        os._exit(1)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        for parameter, value in _KEEP_FREED:
            mallopt(parameter, value)


# mallopt(3) settings for the worker processes. By default glibc gives the top of its heap
# back to the system once 128 KiB of it are free, and allocates blocks from 128 KiB up (an
# image file of a few MB) with mmap: either way the next files' pages are faulted in anew.
# (Reading 32 KB files one batch after another outside an export, that was 6 faults per file
# and a third of the time; in the bench's exports, whose workers hold several batches, the
# faults fell by only a tenth, 8,256 to 7,473 for 8,000 files: the gain is for larger files.)
# Kept up to 64 MiB free, and files up to 32 MiB (glibc's limit) taken from the heap, a worker
# reuses the memory of its last batches. (It holds up to COPY_AHEAD batches of about
# COPY_BATCH_BYTES each anyway.)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREED = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))


class Channel:
    """The worker's end of its connection: multiprocessing.connection.Connection's format (a
    4-byte big-endian length, or -1 and an 8-byte one, then a pickle), read and written on the
    socket's file descriptor here, so that a worker need not import multiprocessing."""

    def __init__(self, fd: int):
        self.fd = fd

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self.fd, size)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def recv(self) -> Any:
        size = int.from_bytes(self._read(4), "big", signed=True)
        if size == -1:
            size = int.from_bytes(self._read(8), "big")
        return pickle.loads(self._read(size))

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        size = len(data)
        header = (
            size.to_bytes(4, "big")
            if size <= 0x7FFFFFFF
            else (-1).to_bytes(4, "big", signed=True) + size.to_bytes(8, "big")
        )
        view = memoryview(header + data)
        while view:
            view = view[os.write(self.fd, view) :]


def serve(fd: int, parent: int | None = None) -> None:
    """A worker process's loop on the connection at file descriptor `fd`."""
    if parent is not None:
        _end_with(parent)
    connection = Channel(fd)
    batch = None
    try:
        config = connection.recv()
        copier = Copier(config)
        while True:
            try:
                message = connection.recv()
            except EOFError:  # the exporting process is done, or gone
                return
            kind, batch = message[0], message[1]
            if kind == "read":
                connection.send(("read", batch, copier.read(batch, message[2])))
            elif kind == "write":
                copier.write(batch, message[2], message[3])
                connection.send(("written", batch))
            else:
                raise ValueError(f"unknown message {kind!r}")
    except BaseException as error:  # said to the exporting process, which fails the export
        try:
            connection.send(("failed", batch, f"{type(error).__name__}: {error}"))
        except OSError:
            pass
        raise SystemExit(1) from None


def main() -> None:
    """A worker process: `python -c "...main()" FD PARENT_PID` (export.copiers)."""
    serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
    # Done: every write was made with pwrite and acknowledged, nothing is buffered. Ending
    # here skips the interpreter's teardown, which the exporting process would wait for.
    os._exit(0)


if __name__ == "__main__":
    main()
