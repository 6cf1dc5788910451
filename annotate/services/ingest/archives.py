"""Expanding uploads, folders and zip archives into candidates; the zip rules (member names,
sizes, counts) are checked here, before anything is read."""

import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from annotate.services import imaging
from annotate.services.ingest.candidates import Candidate, GoldRule

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _is_zip(name: str, stream: BinaryIO) -> bool:
    stream.seek(0)
    head = stream.read(4)
    stream.seek(0)
    return head in ZIP_MAGIC or name.lower().endswith(".zip")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is refused, or None. Members are never extracted by their names, but
    an archive that tries path tricks is refused member by member, loudly."""
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path in the archive"
    if ".." in re.split(r"[/\\]", name):
        return "path with '..' in the archive"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "symbolic link in the archive"
    if info.flag_bits & 0x1:
        return "encrypted archive member"
    if info.file_size > settings.IMAGE_MAX_BYTES:
        return f"file is larger than the limit of {settings.IMAGE_MAX_BYTES} bytes"
    return None


def archive_candidates(
    *, name: str, archive: "str | BinaryIO", gold: Callable[[str], Candidate]
) -> Iterator[Candidate]:
    """The members of a zip archive as candidates, after the archive-wide checks.

    `gold(path)` makes the candidate for a member path (it settles the gold label). Sizes are
    checked on the central directory; zipfile never inflates a member past its recorded size,
    so the recorded total bounds what reading the archive can cost (zip bombs).
    """
    try:
        opened = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        yield Candidate(name=name, problem=f"not a valid zip archive: {error}")
        return
    files = [info for info in opened.infolist() if not info.is_dir()]
    if isinstance(archive, str):
        opened.close()  # members are read by path, in whichever process inspects them
    total = sum(info.file_size for info in files)
    if len(files) > settings.ZIP_MAX_MEMBERS:
        yield Candidate(
            name=name,
            problem=f"archive has {len(files)} files, over the limit of {settings.ZIP_MAX_MEMBERS}",
        )
        return
    if total > settings.ZIP_MAX_TOTAL_BYTES:
        yield Candidate(
            name=name,
            problem=f"archive expands to {total} bytes, over the limit of "
            f"{settings.ZIP_MAX_TOTAL_BYTES} (zip bomb refused)",
        )
        return
    for info in files:
        candidate = gold(info.filename)
        candidate.name = f"{name}/{info.filename}"
        problem = _member_problem(info)
        if problem is not None:
            candidate.problem = problem
        elif candidate.problem is None:
            candidate.source = imaging.ZipMemberSource(
                archive=archive if isinstance(archive, str) else opened,
                member=info.filename,
                max_bytes=settings.IMAGE_MAX_BYTES,
            )
        yield candidate


def upload_candidates(files: Iterable[tuple[str, BinaryIO]], gold: GoldRule) -> Iterator[Candidate]:
    for name, stream in files:
        if _is_zip(name, stream):
            yield from archive_candidates(name=name, archive=stream, gold=gold)
        else:
            candidate = gold(name)
            if candidate.problem is None:
                candidate.source = imaging.StreamSource(stream)
            yield candidate


def folder_candidates(root: Path, gold: GoldRule) -> Iterator[Candidate]:
    """Every file under `root` (sorted, so runs are reproducible); zip files are expanded."""
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for filename in sorted(names):
            path = Path(folder) / filename
            relative = path.relative_to(root).as_posix()
            if filename.lower().endswith(".zip"):
                yield from archive_candidates(name=relative, archive=str(path), gold=gold)
                continue
            candidate = gold(relative)
            if candidate.problem is None:
                candidate.source = imaging.PathSource(str(path))
            yield candidate


def images_count_files(*, path: Path) -> int:
    """How many files an import of `path` will look at, zip members included (for progress)."""
    if path.is_file():
        return _archive_size(path)
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            total += _archive_size(Path(folder) / name) if name.lower().endswith(".zip") else 1
    return total


def _archive_size(path: Path) -> int:
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(1 for info in archive.infolist() if not info.is_dir())
    except (zipfile.BadZipFile, OSError):
        return 1
