"""Tar members written in place: ustar headers made fast for many members of one export, a
member's buffers (header, data, padding), and a positional write of them. No Django: the export
worker processes (annotate.services.export_worker) and the exporting process (export.sinks)
both use it."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # (mypy reads any `TYPE_CHECKING` as true; typing is not imported)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from annotate.services.jpeg_metadata import Buffer

# tarfile's BLOCKSIZE and REGTYPE: the worker processes do not import tarfile (a fixed cost of
# their start); gnu() does, in the exporting process.
BLOCKSIZE = 512
REGTYPE = b"0"
_ZEROS = bytes(BLOCKSIZE)


class UstarHeaders:
    """POSIX ustar headers of regular files under the folder `prefix`, all with one mtime.

    The fields after the name and size are the same for every file, and so is their share of
    the checksum (a plain sum of the bytes, the checksum field counting as spaces), which
    leaves only the name's and size's bytes to add up per file."""

    def __init__(self, prefix: str, mtime: int):
        self.prefix = prefix
        self.mtime = mtime
        self._owner = b"0000644\x000000000\x000000000\x00"  # mode, uid, gid
        self._mtime = b"%011o\x00" % mtime
        self._tail = (REGTYPE + bytes(100) + b"ustar\x0000").ljust(BLOCKSIZE - 156, b"\x00")
        self._fixed_sum = sum(self._owner) + sum(self._mtime) + sum(b" " * 8) + sum(self._tail)
        self._prefix = f"{prefix}/".encode()
        self._prefix_sum = sum(self._prefix)

    def fits(self, name: bytes, size: int) -> bool:
        """Whether a plain ustar header holds this member (else it needs a GNU one)."""
        return len(self._prefix) + len(name) <= 100 and size < 8**11

    def gnu(self, relpath: str, size: int) -> bytes:
        """The header (with its long-name blocks) of a member that does not fit a plain one."""
        import tarfile

        info = tarfile.TarInfo(f"{self.prefix}/{relpath}")
        info.size, info.mtime, info.mode = size, self.mtime, 0o644
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    def __call__(self, name: bytes, size: int) -> bytes:
        size_field = b"%011o\x00" % size
        checksum = self._fixed_sum + self._prefix_sum + sum(name) + sum(size_field)
        return b"".join(
            (
                (self._prefix + name).ljust(100, b"\x00"),
                self._owner,
                size_field,
                self._mtime,
                b"%06o\x00 " % checksum,
                self._tail,
            )
        )


def member_buffers(header: bytes, *pieces: Buffer) -> list[Buffer]:
    """A tar member: its header, its bytes (in one piece or more), and the zeros padding it to
    a whole block."""
    return [header, *pieces, _ZEROS[: -sum(map(len, pieces)) % BLOCKSIZE]]


def pwrite_all(fd: int, buffers: Sequence[Buffer], offset: int) -> None:
    """Write `buffers` at `offset`, in one system call: the bytes go from where they were read
    straight to the page cache. (Through a 4 MiB buffer, each file was copied once more, into
    a buffer too large for the CPU's cache, which made writing cost as much as reading and
    hashing together.) A regular file takes everything at once short of a full disk or a
    signal; what a short write left is written after it."""
    written = os.pwritev(fd, buffers, offset)
    if written < sum(map(len, buffers)):
        rest = memoryview(b"".join(buffers))[written:]
        offset += written
        while rest:
            written = os.pwrite(fd, rest, offset)
            rest, offset = rest[written:], offset + written


# At most this many buffers in one pwritev() (IOV_MAX is 1024 on Linux): a member's header, its
# pieces (one or a few) and its padding.
MAX_BUFFERS = 1000
