"""Where an export's files go: a folder, or a tar written in place with its own headers and
write-back."""

from __future__ import annotations

import os
import tarfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from annotate.services.export_tar import (
    UstarHeaders,
    member_buffers,
    pwrite_all,
)

# A tar being written is written back to disk every this many bytes (see _Writeback). At
# 64 MiB an export of 2,000 files of 32 KB (63 MB) found all of it still to write at its
# closing fsync (35 to 45 ms, on a shared machine); at 16 MiB that fsync took 5 to 15 ms.
WRITEBACK_BYTES = 16 << 20


class DirectorySink:
    """Writes the dataset's files under `root`.

    Files are laid out by place(), in the dataset's order; a placed file may then be written
    by this process (write()) or by a worker process (Copier.write) to the path it got."""

    def __init__(self, root: Path):
        self.root = root
        self._made: set[str] = set()

    def place(self, relpath: str, size: int) -> tuple[None, str]:
        """Lay out the next file: (no offset, its path)."""
        folder = relpath.rpartition("/")[0]
        if folder not in self._made:  # one entry per folder: a class, not an image
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        return None, os.path.join(self.root, relpath)

    def write(self, placed: tuple[None, str], data: bytes) -> None:
        with open(placed[1], "wb") as f:
            f.write(data)

    def add_bytes(self, relpath: str, data: bytes) -> None:
        self.write(self.place(relpath, len(data)), data)

    def add_file(self, relpath: str, source: Path) -> None:
        os.replace(source, self.place(relpath, 0)[1])

    def close(self) -> None:
        pass


class _Writeback:
    """Has the disk write a growing file's data in the background, in a thread (no GIL held
    while it waits), every `every` bytes: the fsync that makes the file durable at the end
    then finds little left to write, instead of waiting for all of it after the last byte.
    (fdatasync writes the file's pages whichever process wrote them.)"""

    def __init__(self, fd: int, every: int):
        self.fd = fd
        self.every = every
        self.next = every
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-writeback")
        self.pending: Future[None] | None = None

    def wrote(self, position: int) -> None:
        if position < self.next or (self.pending is not None and not self.pending.done()):
            return
        if self.pending is not None:
            self.pending.result()  # a write error is reported to one fdatasync only: raise it
        self.pending = self.pool.submit(os.fdatasync, self.fd)
        self.next = position + self.every

    def stop(self) -> None:
        """Wait for the write-back under way: none may outlive the file it syncs."""
        self.pool.shutdown(wait=True)

    def close(self) -> None:
        self.stop()
        if self.pending is not None:
            self.pending.result()


class TarSink:
    """Writes the dataset's files into a tar file, under the folder `prefix`: a header block,
    the bytes, padding to 512 (POSIX ustar; GNU long names when a path needs one).

    `fd` is a file opened for writing, at its start, and `path` its path. Members are laid out
    by place(), in the dataset's order: each gets its offset in the tar then, as its size is
    known. A placed member may then be written by this process (write()) or by a worker process
    (Copier.write), in any order: it goes at its offset. The file's data is written back to
    disk as it grows (see _Writeback); the caller fsyncs it when the sink is closed."""

    def __init__(self, fd: int, prefix: str, path: Path, writeback_every: int = WRITEBACK_BYTES):
        self.fd = fd
        self.path = path  # where worker processes open it
        self.prefix = prefix
        self.mtime = int(time.time())
        self.headers = UstarHeaders(prefix, self.mtime)
        self.position = 0
        self._writeback = _Writeback(fd, writeback_every)

    def place(self, relpath: str, size: int) -> tuple[int, tuple[bytes, bytes | None]]:
        """Lay out the next member: (its offset, (its name, its header if it is not a plain
        ustar one)). Plain headers are made by whoever writes the member: they are most of
        the work of laying one out."""
        name = relpath.encode()
        header = None if self.headers.fits(name, size) else self.headers.gnu(relpath, size)
        offset = self.position
        self.position += (
            (len(header) if header else tarfile.BLOCKSIZE) + size + -size % tarfile.BLOCKSIZE
        )
        self._writeback.wrote(offset)
        return offset, (name, header)

    def write(self, placed: tuple[int, tuple[bytes, bytes | None]], data: bytes) -> None:
        offset, (name, header) = placed
        pwrite_all(self.fd, member_buffers(header or self.headers(name, len(data)), data), offset)

    def add_bytes(self, relpath: str, data: bytes) -> None:
        self.write(self.place(relpath, len(data)), data)

    def add_file(self, relpath: str, source: Path) -> None:
        with open(source, "rb") as f:  # written by this export and closed: its size holds
            size = os.fstat(f.fileno()).st_size
            offset, (name, header) = self.place(relpath, size)
            header = header or self.headers(name, size)
            pwrite_all(self.fd, [header], offset)
            offset += len(header)
            while chunk := f.read(1 << 20):
                pwrite_all(self.fd, [chunk], offset)
                offset += len(chunk)
        pwrite_all(self.fd, [bytes(-size % tarfile.BLOCKSIZE)], offset)

    def close(self) -> None:
        """Once every placed member is written: the end of the archive."""
        pwrite_all(self.fd, [bytes(2 * tarfile.BLOCKSIZE)], self.position)
        self.position += 2 * tarfile.BLOCKSIZE
        self._writeback.close()

    def abandon(self) -> None:
        """After a failure: stop, leaving the file to be removed."""
        self._writeback.stop()
