"""ImageNet-style exports: stable split, layout, manifest, tar stream (PRODUCT.md section 6).

An export is a row (`Export`) created first, then filled by a job (or by the `export_dataset`
command) that writes the dataset into a temporary folder and renames it into place when it is
complete, so a killed export never leaves a folder that looks finished. Memory stays flat in
the number of images: rows are read with `.iterator()`, lists of files go to scratch files on
disk, images travel in bounded batches, and the download is a tar written on the fly. The
files themselves are read, converted, hashed and written by worker processes
(export_worker) while this module lays them out in order.

The split is stratified per class and stable. The first time an image is exported with a given
(seed, val fraction) it takes a side, and that side is stored (`SplitAssignment`), so a later
export with more images never moves it. New images of a class go to val, in the order of
SHA-256(seed, image SHA-256), until the class's val count reaches round(fraction * size); the
rest go to train. A pure hash threshold (val iff hash < fraction) would be stable too, but its
per-class val counts scatter binomially (±3 images for a class of 100 at 10 %); remembering
the sides keeps every class within one image of its target as it grows.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection, transaction
from django.db.models import Count, Exists, F, FilteredRelation, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from annotate.converters import parse_id
from annotate.models import Decision, Export, Image, Label, Project, SplitAssignment, User
from annotate.services import ingest, ingest_worker, jobs
from annotate.services.errors import Conflict, InvalidInput
from annotate.services.export_worker import (
    Copier,
    CopyConfig,
    UstarHeaders,
    member_buffers,
    pwrite_all,
)
from annotate.services.projects import one_line, validation_message

logger = logging.getLogger(__name__)

DECIDED_STATES = (Image.State.CONSENSUS, Image.State.REVIEWED)
EXPORT_TASK = "annotate.export_run"
TMP_FOLDER = ".tmp"
# Images go to the worker processes in batches of at most COPY_BATCH images and about
# COPY_BATCH_BYTES (as recorded at upload), and at most COPY_AHEAD batches per worker are read
# ahead of the one being laid out: what the workers hold stays within a few such batches.
COPY_BATCH = 64
# The first batches are smaller, doubling up to COPY_BATCH, so that the workers all start soon
# and a small export shows progress.
COPY_FIRST_BATCH = 4
COPY_BATCH_BYTES = 8 << 20
COPY_AHEAD = 3
# A tar being written is written back to disk every this many bytes (see _Writeback).
WRITEBACK_BYTES = 64 << 20
# How long a worker process is given to end once its connection is closed.
WORKER_EXIT_SECONDS = 10

ProgressCallback = Callable[[int, int], None]


class ExportAborted(Exception):
    """The export lost its claim (another run took it over, or clean-up failed it)."""


class Gone(Conflict):
    """The thing existed but is no more (an expired export's files)."""

    status = 410


class ExportEmpty(Exception):
    """No class has enough decided images to export."""


# --- creating -------------------------------------------------------------------------------


def export_create(
    *,
    project: Project,
    user: User | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    val_layout: str = Export.ValLayout.FOLDERS,
    resize: int | None = None,
    include_gold: bool = False,
    min_per_class: int = 2,
    enqueue: bool = True,
) -> Export:
    """Record an export of `project` and (with `enqueue`) start its job once committed."""
    if not isinstance(val_fraction, (int, float)) or not (0 < val_fraction < 1):
        raise InvalidInput(
            "val_fraction must be a number between 0 and 1 (exclusive).", field="val_fraction"
        )
    export = Export(
        project=project,
        created_by=user,
        name="export",
        val_fraction=float(val_fraction),
        seed=seed,
        val_layout=val_layout,
        resize=resize,
        include_gold=include_gold,
        min_per_class=min_per_class,
    )
    try:
        export.full_clean(exclude=["project", "created_by"])
    except ValidationError as error:
        field_name = next(iter(getattr(error, "message_dict", {}) or {}), None)
        raise InvalidInput(validation_message(error), field=field_name) from None
    if not _eligible(project=project, include_gold=include_gold).exists():
        raise InvalidInput("This project has no decided images to export yet.")
    with transaction.atomic():
        export.save()
        export.name = f"{slugify(project.name)[:48] or 'project'}-export-{export.pk}"
        export.save(update_fields=["name", "updated_at"])
        if enqueue:
            jobs.enqueue_on_commit(EXPORT_TASK, export.pk)
    return export


# --- the split ------------------------------------------------------------------------------


def split_key(*, seed: int, sha256: str) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def val_target(*, size: int, val_fraction: float) -> int:
    """How many of a class's `size` images belong in val: the nearest whole number to
    fraction * size, but at least one on each side, so that train and val hold the same
    classes and ImageFolder gives both the same class indices. Grows by 0 or 1 per image."""
    target = math.floor(val_fraction * size + 0.5)
    return min(max(target, 1), size - 1)


def _eligible(*, project: Project, include_gold: bool) -> QuerySet[Decision]:
    """Current decisions with a label on decided images: what an export may contain."""
    decisions = Decision.objects.filter(
        image__project=project,
        image__state__in=DECIDED_STATES,
        is_current=True,
        excluded=False,
        label__isnull=False,
    )
    if not include_gold:
        decisions = decisions.filter(image__is_gold=False)
    return decisions


def _assigned(*, export: Export, sides: list[str], **more: Any) -> QuerySet[Decision]:
    """The current decisions of the images eligible right now that took one of `sides` for
    `export`'s (seed, val fraction); that row is `image__split_assignments`.

    Starting from the decisions, as for the eligible images, rather than from the sides is
    2 to 4 times quicker on SQLite (the same on PostgreSQL). The side's conditions, and
    `more`, sit in one filter() call: they hold for one and the same row."""
    return _eligible(project=export.project, include_gold=export.include_gold).filter(
        image__split_assignments__seed=export.seed,
        image__split_assignments__val_fraction=export.val_fraction,
        image__split_assignments__side__in=sides,
        **more,
    )


@dataclass
class ClassPlan:
    label_id: int
    wnid: str
    name: str
    size: int
    target: int
    val: int = 0
    train: int = 0


@dataclass
class SplitPlan:
    classes: list[ClassPlan]  # exported classes, sorted by wnid: position = class index
    too_small: dict[str, int] = field(default_factory=dict)  # wnid -> decided images

    @property
    def total(self) -> int:
        return sum(c.val + c.train for c in self.classes)


_SPLIT_COLUMNS = ("image_id", "seed", "val_fraction", "key", "side", "created_at", "updated_at")


def _sides_to_take(*, export: Export) -> QuerySet[Decision]:
    """The eligible images with no side yet for `export`'s (seed, val fraction): new ones, and
    any left without one while their class was too small (rows with a blank side)."""
    sided = SplitAssignment.objects.filter(
        image=OuterRef("image"),
        seed=export.seed,
        val_fraction=export.val_fraction,
        side__in=[SplitAssignment.Side.TRAIN, SplitAssignment.Side.VAL],
    )
    return _eligible(project=export.project, include_gold=export.include_gold).filter(
        ~Exists(sided)
    )


def _upsert_sql(table: str, columns: str, values: str) -> str:
    # A row left with a blank side takes one; the key is the same function of the image.
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {table} ({columns}) {values} "
        f"ON CONFLICT ({quote('image_id')}, {quote('seed')}, {quote('val_fraction')}) "
        f"DO UPDATE SET {quote('side')} = excluded.{quote('side')}, "
        f"{quote('updated_at')} = excluded.{quote('updated_at')}"
    )


def _ranked_sql(*, export: Export, rows: QuerySet[Decision]) -> tuple[str, list[Any]]:
    """SQL ranking `rows` per class by (key, image id), and its parameters: columns image_id,
    class_id, key, rn (1 for the first). The database computes the keys as split_key() does:
    PostgreSQL with its sha256(), SQLite with the SHA256() function Django gives it."""
    select, params = (
        rows.annotate(class_id=F("label_id"), sha=F("image__sha256"))
        .values_list("image_id", "class_id", "sha")
        .order_by()
        .query.sql_with_params()
    )
    if connection.vendor == "postgresql":
        key, keyed = "encode(sha256(convert_to(%s || s.sha, 'UTF8')), 'hex')", ""
    else:
        # SQLite would otherwise compute each key twice, once per use (in Python).
        key = "SHA256(%s || s.sha)"
        # (Django's SQLite backend is the sqlite3 module: connection.Database is it.)
        keyed = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""
    sql = (
        f"WITH n AS {keyed}(SELECT s.image_id, s.class_id, {key} AS key "
        f"FROM ({select}) AS s) "
        "SELECT image_id, class_id, key, "
        "ROW_NUMBER() OVER (PARTITION BY class_id ORDER BY key, image_id) AS rn FROM n"
    )
    return sql, [f"{export.seed}:", *params]


def _take_sides_postgresql(
    *, export: Export, rows: QuerySet[Decision], quotas: dict[int, int]
) -> None:
    """Write the sides of `rows` in one INSERT ... SELECT: each class's images ranked by
    (key, image id), the first `quotas[class]` go to val, the others to train. No row
    travels to Python, and each is written once, with its side, in image order (as on
    SQLite)."""
    quote = connection.ops.quote_name
    ranked, params = _ranked_sql(export=export, rows=rows)
    values = ", ".join(["(%s, %s)"] * len(quotas))
    sql = _upsert_sql(
        quote(SplitAssignment._meta.db_table),
        ", ".join(quote(c) for c in _SPLIT_COLUMNS),
        f"SELECT r.image_id, %s, %s, r.key, CASE WHEN r.rn <= quota.column2 "
        f"THEN '{SplitAssignment.Side.VAL}' ELSE '{SplitAssignment.Side.TRAIN}' END, %s, %s "
        f"FROM ({ranked}) AS r JOIN (VALUES {values}) AS quota ON quota.column1 = r.class_id "
        "ORDER BY r.image_id",
    )
    now = timezone.now()
    flat_quotas = [number for pair in quotas.items() for number in pair]
    with connection.cursor() as cursor:
        cursor.execute(sql, (export.seed, export.val_fraction, now, now, *params, *flat_quotas))


def _take_sides_rows(
    *, export: Export, rows: QuerySet[Decision], quotas: dict[int, int], batch_size: int
) -> None:
    """The same for SQLite, which would join the ranked rows to the quotas by scanning the
    quotas once per row: the sides are given here, and written in batches, in image order
    (inserting in key order would scatter the writes over the indexes: twice as long)."""
    quote = connection.ops.quote_name
    insert = _upsert_sql(
        quote(SplitAssignment._meta.db_table),
        ", ".join(quote(c) for c in _SPLIT_COLUMNS),
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
    )
    ranked, params = _ranked_sql(export=export, rows=rows)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    val, train = SplitAssignment.Side.VAL, SplitAssignment.Side.TRAIN
    with connection.cursor() as reading, connection.cursor() as writing:
        reading.execute(f"{ranked} ORDER BY image_id", params)
        while chunk := reading.fetchmany(batch_size):
            writing.executemany(
                insert,
                [
                    (
                        image_id,
                        export.seed,
                        export.val_fraction,
                        key,
                        val if rn <= quotas[class_id] else train,
                        now,
                        now,
                    )
                    for image_id, class_id, key, rn in chunk
                ],
            )


def split_assign(*, export: Export) -> SplitPlan:
    """Give every eligible image of `export`'s project a side for its (seed, val fraction),
    keeping the sides taken before, and return the per-class plan.

    Runs under the project row lock, so two exports never assign the same images at once."""
    project = export.project
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        # Per class, how many eligible images are on each side already and how many have
        # none yet (side ""): one pass over the eligible images, each joined to its side if
        # it has one (a LEFT JOIN: there is at most one row per image, seed and fraction).
        counts: dict[int, Counter[str]] = {}
        taken = _eligible(project=project, include_gold=export.include_gold).annotate(
            taken=FilteredRelation(
                "image__split_assignments",
                condition=Q(
                    image__split_assignments__seed=export.seed,
                    image__split_assignments__val_fraction=export.val_fraction,
                    image__split_assignments__side__in=[
                        SplitAssignment.Side.TRAIN,
                        SplitAssignment.Side.VAL,
                    ],
                ),
            )
        )
        for label_id, side, n in (
            taken.values_list("label_id", "taken__side").annotate(n=Count("id")).order_by()
        ):
            counts.setdefault(label_id, Counter())[side or ""] = n
        # On a first export (nothing has a side yet) every eligible image takes one: no need
        # to look each up among the sides.
        first = not any(
            sides[SplitAssignment.Side.TRAIN] or sides[SplitAssignment.Side.VAL]
            for sides in counts.values()
        )
        to_take = taken if first else _sides_to_take(export=export)
        labels = {label.pk: label for label in Label.objects.filter(project=project, pk__in=counts)}
        plan = SplitPlan(classes=[])
        quotas: dict[int, int] = {}  # class -> how many of its new images go to val
        for label_id, sides in counts.items():
            label = labels[label_id]
            size = sum(sides.values())
            if size < export.min_per_class:
                plan.too_small[label.wnid] = size
                continue
            target = val_target(size=size, val_fraction=export.val_fraction)
            new = sides[""]
            to_val = max(0, min(target - sides[SplitAssignment.Side.VAL], new))
            if new:
                quotas[label_id] = to_val
            plan.classes.append(
                ClassPlan(
                    label_id=label_id,
                    wnid=label.wnid,
                    name=one_line(label.name),  # one line per class in the synset mapping
                    size=size,
                    target=target,
                    val=sides[SplitAssignment.Side.VAL] + to_val,
                    train=sides[SplitAssignment.Side.TRAIN] + new - to_val,
                )
            )
        if quotas:
            # Each class's new images ranked by (key, image id): the first quotas[class] go
            # to val, the others to train.
            rows = to_take.filter(label_id__in=list(quotas))
            if connection.vendor == "postgresql":
                _take_sides_postgresql(export=export, rows=rows, quotas=quotas)
            else:
                _take_sides_rows(export=export, rows=rows, quotas=quotas, batch_size=2000)
    # The class index is the position in wnid order, as ImageFolder sorts folder names.
    plan.classes.sort(key=lambda c: c.wnid)
    return plan


# --- sinks ----------------------------------------------------------------------------------


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


# --- copying ---------------------------------------------------------------------------------


class CopyFailed(Exception):
    """A worker process failed or died: the export fails with its reason."""


def _copy_source(project_id: int) -> str | ingest_worker.StorageTarget:
    """Where the workers read stored images: the local folder of the default storage, or that
    storage as a worker process rebuilds it (as the import's workers do)."""
    if isinstance(default_storage, FileSystemStorage) or isinstance(
        getattr(default_storage, "_wrapped", None), FileSystemStorage
    ):
        return os.path.abspath(cast(FileSystemStorage, default_storage).location)
    return ingest.storage_target(project_id)


def _worker_command(fd: int) -> list[str]:
    return [sys.executable, "-m", "annotate.services.export_worker", str(fd), str(os.getpid())]


class _Copiers:
    """The copying side of one export: `processes` worker processes (annotate.services.
    export_worker), batch b going to worker b % processes; or, with none, a Copier in this
    process. read(b, names), then results(b), then write(b, start, members), in batch order;
    finish() returns once every batch is written."""

    def __init__(self, config: CopyConfig, processes: int):
        self.local = Copier(config) if processes <= 0 else None
        self.results_of: dict[int, list[tuple[int, str] | str]] = {}
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.unwritten: list[int] = []
        environment = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [str(settings.BASE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        )
        try:
            for _ in range(max(processes, 0)):
                ours, theirs = socket.socketpair()
                with ours, theirs:
                    self.processes.append(
                        subprocess.Popen(
                            _worker_command(theirs.fileno()),
                            pass_fds=[theirs.fileno()],
                            env=environment,
                            stdin=subprocess.DEVNULL,
                        )
                    )
                    self.connections.append(Connection(ours.detach()))
                self.unwritten.append(0)
                self._send(len(self.connections) - 1, config)
        except BaseException:
            self.close()
            raise

    def _receive(self, worker: int) -> None:
        try:
            message = self.connections[worker].recv()
        except (EOFError, OSError):
            process = self.processes[worker]
            try:
                code = process.wait(WORKER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                code = None
            raise CopyFailed(
                f"export worker process {process.pid} ended unexpectedly (exit status {code})"
            ) from None
        if message[0] == "read":
            self.results_of[message[1]] = message[2]
        elif message[0] == "written":
            self.unwritten[worker] -= 1
        else:
            raise CopyFailed(f"export worker process {self.processes[worker].pid}: {message[2]}")

    def _send(self, worker: int, message: CopyConfig | tuple[Any, ...]) -> None:
        try:
            self.connections[worker].send(message)
        except OSError:  # the worker has ended: what it said last tells why
            while True:
                self._receive(worker)  # raises CopyFailed at its failure or at the end

    def read(self, batch: int, names: list[str]) -> None:
        if self.local is not None:
            self.results_of[batch] = self.local.read(batch, names)
        else:
            self._send(batch % len(self.connections), ("read", batch, names))

    def results(self, batch: int) -> list[tuple[int, str] | str]:
        while batch not in self.results_of:
            self._receive(batch % len(self.connections))
        return self.results_of.pop(batch)

    def write(self, batch: int, start: int | None, members: list[Any]) -> None:
        if self.local is not None:
            self.local.write(batch, start, members)
        else:
            worker = batch % len(self.connections)
            self._send(worker, ("write", batch, start, members))
            self.unwritten[worker] += 1

    def finish(self) -> None:
        for worker, _ in enumerate(self.connections):
            while self.unwritten[worker]:
                self._receive(worker)

    def close(self) -> None:
        """End the workers (a closed connection ends a worker's loop) and wait for them: none
        may go on writing once the export is over, whether it succeeded or failed."""
        if self.local is not None:
            self.local.close()
        for connection_ in self.connections:
            connection_.close()
        for process in self.processes:
            try:
                process.wait(WORKER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> _Copiers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _ListFile:
    """One of the dataset's list files (train.txt, val.txt, ...), written line by line in the
    scratch folder as UTF-8 with \\n line ends; _file_sha256() hashes it once it is closed."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "w", encoding="utf-8", newline="\n")

    def write(self, text: str) -> None:
        self.file.write(text)

    def close(self) -> None:
        self.file.close()


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# --- building -------------------------------------------------------------------------------


def _class_names(name: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in name.split(",") if part.strip())
    return names or (name,)


def _left_out_rows(*, export: Export, plan: SplitPlan) -> Iterator[tuple[int, str, str]]:
    """(image id, sha256, reason) for each image of the project the export does not hold,
    except unreadable files, which the writer reports itself."""
    images = Image.objects.filter(project=export.project_id).order_by("id")
    yield from (
        images.exclude(state__in=DECIDED_STATES)
        .values_list("id", "sha256", "state")
        .iterator(chunk_size=2000)
    )
    decided = images.filter(state__in=DECIDED_STATES)
    if not export.include_gold:
        for image_id, sha in (
            decided.filter(is_gold=True).values_list("id", "sha256").iterator(chunk_size=2000)
        ):
            yield image_id, sha, "gold"
        decided = decided.filter(is_gold=False)
    if plan.too_small:
        small = decided.filter(
            decisions__is_current=True, decisions__label__wnid__in=list(plan.too_small)
        )
        for image_id, sha in small.values_list("id", "sha256").iterator(chunk_size=2000):
            yield image_id, sha, "class_too_small"
    current = Decision.objects.filter(
        image=OuterRef("pk"), is_current=True, excluded=False, label__isnull=False
    )
    for image_id, sha in (
        decided.filter(~Exists(current)).values_list("id", "sha256").iterator(chunk_size=2000)
    ):
        yield image_id, sha, "no_label"


@dataclass
class BuildResult:
    summary: dict[str, Any]
    files: int
    bytes: int


def export_build(
    *,
    export: Export,
    sink: DirectorySink | TarSink,
    scratch: Path,
    heartbeat: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Write the whole dataset of `export` into `sink`, using `scratch` for its lists.

    Raises ExportEmpty when no class qualifies. `heartbeat(done, total)` is called every
    EXPORT_PROGRESS_SECONDS and at the end; it may raise ExportAborted to stop the build.
    The worker processes start first: they get ready while the split is assigned."""
    config = CopyConfig(
        source=_copy_source(export.project_id),
        tar_path=os.fspath(sink.path) if isinstance(sink, TarSink) else None,
        tar_prefix=sink.prefix if isinstance(sink, TarSink) else "",
        tar_mtime=sink.mtime if isinstance(sink, TarSink) else 0,
        resize=export.resize,
        quality=settings.EXPORT_JPEG_QUALITY,
    )
    with _Copiers(config, settings.EXPORT_PROCESSES) as copiers:
        return _build(
            export=export, sink=sink, scratch=scratch, heartbeat=heartbeat, copiers=copiers
        )


def _build(
    *,
    export: Export,
    sink: DirectorySink | TarSink,
    scratch: Path,
    heartbeat: Callable[[int, int], None] | None,
    copiers: _Copiers,
) -> BuildResult:
    plan = split_assign(export=export)
    if not plan.classes:
        raise ExportEmpty(
            f"No class has at least {export.min_per_class} decided images"
            + (f" (too small: {', '.join(sorted(plan.too_small))})." if plan.too_small else ".")
        )
    if heartbeat is not None:
        heartbeat(0, plan.total)
    index = {c.label_id: i for i, c in enumerate(plan.classes)}
    wnid_of = {c.label_id: c.wnid for c in plan.classes}
    total = plan.total
    flat = export.val_layout == Export.ValLayout.FLAT
    quality = settings.EXPORT_JPEG_QUALITY

    scratch.mkdir(parents=True, exist_ok=True)
    # The manifest's "files" and "left_out" entries, each written once in its final text as
    # the export goes: the manifest is the summary with these copied in.
    files_log = open(scratch / "files.part", "w", encoding="utf-8")
    left_log = open(scratch / "left_out.part", "w", encoding="utf-8")
    lists = {
        "train.txt": _ListFile(scratch / "train.txt"),
        "val.txt": _ListFile(scratch / "val.txt"),
    }
    if flat:
        lists["val_ground_truth.txt"] = _ListFile(scratch / "val_ground_truth.txt")
        lists["LOC_val_solution.csv"] = _ListFile(scratch / "LOC_val_solution.csv")
        lists["LOC_val_solution.csv"].write("ImageId,PredictionString\n")

    side_list: dict[str, str] = {
        SplitAssignment.Side.TRAIN: "train.txt",
        SplitAssignment.Side.VAL: "val.txt",
    }
    written: Counter[tuple[int, str]] = Counter()  # (label id, side) -> images written
    unreadable = 0
    flat_val_wnids: list[str] = []  # one shared str per class: 8 bytes per val image
    done = 0
    total_bytes = 0
    files_logged = left_logged = 0
    last_beat = time.monotonic()

    def log_files(entries: str, count: int, size: int) -> None:
        """Log `count` files of the dataset, `size` bytes in all: their manifest entries."""
        nonlocal total_bytes, files_logged
        total_bytes += size
        files_log.write(f",{entries}" if files_logged else entries)
        files_logged += count

    def log_file(name: str, data: bytes) -> None:
        log_files(_manifest_entry(name, hashlib.sha256(data).hexdigest(), len(data)), 1, len(data))

    def log_left(image_id: int, sha: str | None, reason: str) -> None:
        nonlocal left_logged
        entry = {"image": image_id, "sha256": sha, "reason": reason}
        left_log.write(f"{',' if left_logged else ''}\n  {json.dumps(entry)}")
        left_logged += 1

    def side_rows(
        side: str, *order: str
    ) -> tuple[str, QuerySet[Decision, tuple[int, str, int | None, int]]]:
        rows = _assigned(export=export, sides=[side], label_id__in=list(index))
        return side, rows.values_list(
            "image_id", "image__file", "image__size_bytes", "label_id"
        ).order_by(*order)

    passes = [
        side_rows(SplitAssignment.Side.TRAIN, "label_id", "image_id"),
        side_rows(
            SplitAssignment.Side.VAL,
            *(("image__split_assignments__key", "image_id") if flat else ("label_id", "image_id")),
        ),
    ]
    progress_seconds = settings.EXPORT_PROGRESS_SECONDS

    # Per class and side: the start of its images' paths, the same as a JSON string (less
    # its closing quote), how to write a line of its list, and the end of those lines. Made
    # once, not per image.
    folders: dict[tuple[int, str], tuple[str, str, Callable[[str], Any], str]] = {}

    def folder(label_id: int, side: str) -> tuple[str, str, Callable[[str], Any], str]:
        wnid = wnid_of[label_id]
        start = f"{side}/{wnid}/{wnid}_"
        folders[label_id, side] = made = (
            start,
            json.dumps(start)[:-1],
            lists[side_list[side]].write,
            f" {index[label_id]}\n",
        )
        return made

    def lay_out(
        image_id: int, label_id: int, side: str, size: int
    ) -> tuple[str, tuple[None, str] | tuple[int, tuple[bytes, bytes | None]]]:
        """Give one image its place in the sink and its lines in the lists; returns its path
        as a JSON string and its place."""
        if side == SplitAssignment.Side.VAL and flat:
            wnid = wnid_of[label_id]
            number = len(flat_val_wnids) + 1
            relpath = f"val/ILSVRC_val_{number:08d}.JPEG"
            name = f'"{relpath}"'
            flat_val_wnids.append(wnid)
            lists["val_ground_truth.txt"].write(f"{index[label_id] + 1}\n")
            lists["LOC_val_solution.csv"].write(f"ILSVRC_val_{number:08d},{wnid}\n")
            lists["val.txt"].write(f"{relpath} {index[label_id]}\n")
        else:
            start, quoted, write_line, line_end = folders.get((label_id, side)) or folder(
                label_id, side
            )
            relpath = f"{start}{image_id}.JPEG"
            name = f'{quoted}{image_id}.JPEG"'
            write_line(relpath + line_end)
        written[label_id, side] += 1
        return name, sink.place(relpath, size)

    try:
        # Per image, the time goes to reading the file, hashing it and writing it; laying it
        # out (its path, its lines in the lists, its place in the tar, its manifest entry)
        # costs less, but is Python. So this process lays the images out, in query order,
        # and the worker processes (export_worker) read, convert, hash and write them, a
        # batch at a time, up to COPY_AHEAD batches per worker ahead of the one being laid
        # out. The output is the same whatever the workers' timing.
        in_flight: deque[tuple[int, list[tuple[int, int, str]]]] = deque()
        ahead = COPY_AHEAD * max(settings.EXPORT_PROCESSES, 1)
        batches = 0
        batch_limit = COPY_FIRST_BATCH

        def lay_out_batch() -> None:
            nonlocal done, unreadable, last_beat
            batch, rows = in_flight.popleft()
            entries: list[str] = []
            members: list[Any] = []
            start = None
            size_sum = 0
            for (image_id, label_id, side), result in zip(
                rows, copiers.results(batch), strict=False
            ):
                if isinstance(result, str):  # why it is unreadable
                    unreadable += 1
                    log_left(image_id, None, result)
                    continue
                size, digest = result
                name, (offset, member) = lay_out(image_id, label_id, side, size)
                if start is None:
                    start = offset
                members.append(member)
                entries.append(_manifest_entry(name, digest, size, image_id))
                size_sum += size
            copiers.write(batch, start, members)
            if entries:
                log_files(",".join(entries), len(entries), size_sum)
            done += len(rows)
            if heartbeat is not None and time.monotonic() - last_beat >= progress_seconds:
                heartbeat(done, total)
                last_beat = time.monotonic()

        def send(rows: list[tuple[int, int, str]], names: list[str]) -> None:
            nonlocal batches, batch_limit
            copiers.read(batches, names)
            in_flight.append((batches, rows))
            batches += 1
            batch_limit = min(2 * batch_limit, COPY_BATCH)
            while len(in_flight) > ahead:
                lay_out_batch()

        for side, queryset in passes:
            rows: list[tuple[int, int, str]] = []
            names: list[str] = []
            batch_bytes = 0
            # (Not bound to a name: a failure must close the database cursor at once.)
            for image_id, file_name, size_bytes, label_id in queryset.iterator(chunk_size=2000):
                rows.append((image_id, label_id, side))
                names.append(file_name)
                batch_bytes += size_bytes or 0
                if len(rows) >= batch_limit or batch_bytes >= COPY_BATCH_BYTES:
                    send(rows, names)
                    rows, names, batch_bytes = [], [], 0
            if rows:
                send(rows, names)
        while in_flight:
            lay_out_batch()
        copiers.finish()

        # Class list, meta.bin as torchvision's ImageNet reads it, the split lists.
        synsets = "".join(f"{c.wnid} {c.name}\n" for c in plan.classes).encode()
        sink.add_bytes("LOC_synset_mapping.txt", synsets)
        log_file('"LOC_synset_mapping.txt"', synsets)
        if flat:
            val_wnids = flat_val_wnids
        else:  # in the order of the val files' sorted paths: by class folder
            val_wnids = [
                c.wnid
                for c in plan.classes
                for _ in range(written[c.label_id, SplitAssignment.Side.VAL])
            ]
        meta = _torch_save_bytes(({c.wnid: _class_names(c.name) for c in plan.classes}, val_wnids))
        sink.add_bytes("meta.bin", meta)
        log_file('"meta.bin"', meta)
        for relpath, writer in lists.items():
            writer.close()
            digest, size = _file_sha256(writer.path)
            sink.add_file(relpath, writer.path)
            log_files(_manifest_entry(json.dumps(relpath), digest, size), 1, size)
        files_log.close()

        for image_id, sha, reason in _left_out_rows(export=export, plan=plan):
            log_left(image_id, sha, reason)
        left_log.close()

        per_class: dict[str, dict[str, Any]] = {
            c.wnid: {
                "index": i,
                "name": c.name,
                "train": written[c.label_id, SplitAssignment.Side.TRAIN],
                "val": written[c.label_id, SplitAssignment.Side.VAL],
                "val_target": c.target,
            }
            for i, c in enumerate(plan.classes)
        }
        off_target = sorted(
            wnid
            for wnid, row in per_class.items()
            if abs(row["val"] - export.val_fraction * (row["train"] + row["val"])) > 1
        )
        summary = {
            "format": "imagenet-style/1",
            "project": {"id": export.project_id, "name": export.project.name},
            "export_id": export.pk,
            "name": export.name,
            "created": timezone.now().isoformat(),
            "policy": {
                "mode": export.project.mode,
                "min_votes": export.project.min_votes,
                "max_votes": export.project.max_votes,
                "agreement": export.project.agreement,
                "target_confidence": export.project.target_confidence,
            },
            "seed": export.seed,
            "val_fraction": export.val_fraction,
            "val_layout": export.val_layout,
            "resize": export.resize,
            "include_gold": export.include_gold,
            "min_per_class": export.min_per_class,
            "jpeg_quality": quality,
            "counts": {
                "train": sum(r["train"] for r in per_class.values()),
                "val": sum(r["val"] for r in per_class.values()),
                "classes": len(per_class),
                "unreadable": unreadable,
            },
            "classes": per_class,
            "classes_too_small": plan.too_small,
            "classes_off_target": off_target,
        }
        manifest = scratch / "manifest.json"
        _write_manifest(manifest, summary, scratch / "files.part", scratch / "left_out.part")
        sink.add_file("manifest.json", manifest)
        if heartbeat is not None:
            heartbeat(done, total)
    finally:
        for handle in (files_log, left_log, *(w.file for w in lists.values())):
            handle.close()
    return BuildResult(summary=summary, files=sum(written.values()), bytes=total_bytes)


def _manifest_entry(name: str, digest: str, size: int, image_id: int | None = None) -> str:
    """A file's entry in the manifest, `name` being its path as a JSON string: formatted by
    hand as json.dumps() writes it (json.dumps per file was a tenth of an export's time)."""
    image = f', "image": {image_id}' if image_id is not None else ""
    return f'\n  {name}: {{"sha256": "{digest}", "bytes": {size}{image}}}'


def _torch_save_bytes(obj: Any) -> bytes:
    import torch  # heavy; only exports need it

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_manifest(path: Path, summary: dict[str, Any], files_part: Path, left_part: Path) -> None:
    """manifest.json: the summary, then `files` ({path: {sha256, bytes, image?}}) and
    `left_out` ([{image, sha256, reason}]) copied from the parts written as the export went."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("{\n")
        for key, value in summary.items():
            out.write(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)},\n")
        out.write(' "files": {')
        out.flush()
        for part, closing in ((files_part, '\n },\n "left_out": ['), (left_part, "\n ]\n}\n")):
            with open(part, "rb") as entries:
                shutil.copyfileobj(entries, out.buffer, 1 << 20)
            out.write(closing)
            out.flush()


# --- running --------------------------------------------------------------------------------


def export_dir() -> Path:
    path = Path(settings.EXPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim(*, export_id: int, run_token: str) -> Export | None:
    """Take the export for this run: a pending one, or a running one whose claim is ours
    (the same job delivered again after its worker died). Returns None when it is not ours
    to run: done, failed, or running under another job."""
    now = timezone.now()
    base = Export.objects.filter(pk=export_id)
    claimed = base.filter(
        Q(state=Export.State.PENDING) | Q(state=Export.State.RUNNING, run_token=run_token),
        attempts__lt=settings.EXPORT_MAX_ATTEMPTS,
    ).update(
        state=Export.State.RUNNING,
        run_token=run_token,
        heartbeat_at=now,
        updated_at=now,
        progress_done=0,
        error="",
        attempts=F("attempts") + 1,
    )
    if not claimed:
        gave_up = base.filter(
            Q(state=Export.State.PENDING) | Q(state=Export.State.RUNNING, run_token=run_token),
        ).update(
            state=Export.State.FAILED,
            finished_at=now,
            updated_at=now,
            error=f"Gave up after {settings.EXPORT_MAX_ATTEMPTS} attempts.",
        )
        if gave_up:
            logger.warning("export %s failed: too many attempts", export_id)
        return None
    return Export.objects.select_related("project").get(pk=export_id)


def _heartbeat(
    export_id: int, run_token: str, progress: ProgressCallback | None
) -> ProgressCallback:
    def beat(done: int, total: int) -> None:
        now = timezone.now()
        alive = Export.objects.filter(
            pk=export_id, state=Export.State.RUNNING, run_token=run_token
        ).update(progress_done=done, progress_total=total, heartbeat_at=now, updated_at=now)
        if not alive:
            raise ExportAborted(f"export {export_id} is no longer claimed by this run")
        if progress is not None:
            progress(done, total)

    return beat


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def export_run(
    *,
    export_id: int,
    run_token: str,
    destination: Path | None = None,
    tar: bool = False,
    progress: ProgressCallback | None = None,
) -> str:
    """Build the export `export_id` and mark it done, or failed with a reason.

    Without `destination` (the job) it becomes EXPORT_DIR/<id>/<name>.tar beside a copy of its
    manifest.json, ready to download. With one (the command) the dataset folder, or with
    `tar` a tar file, is written at that path. Either way everything is written under a
    temporary name and renamed into place when complete. Safe to run twice: a second copy of
    the job finds the export claimed by another and returns."""
    export = _claim(export_id=export_id, run_token=run_token)
    if export is None:
        return "not claimed"
    beat = _heartbeat(export.pk, run_token, progress)
    if destination is None:
        temporary = export_dir() / TMP_FOLDER
        # Folders of earlier attempts of this export, killed mid-way: the claim is ours now.
        for leftover in temporary.glob(f"{export.pk}-*"):
            _remove(leftover)
        work = temporary / f"{export.pk}-{uuid.uuid4().hex[:12]}"
        final = export_dir() / str(export.pk)
        tar = True
    else:
        destination = Path(destination).absolute()
        work = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:12]}"
        final = destination
    prefix = _tar_prefix(destination, export)
    scratch = work / "scratch"
    try:
        work.mkdir(parents=True)
        if tar:
            out = work / "out"
            out.mkdir()
            tar_path = out / f"{prefix}.tar"
            with open(tar_path, "wb", buffering=0) as tar_file:
                tar_sink = TarSink(tar_file.fileno(), prefix, tar_path)
                try:
                    result = export_build(
                        export=export, sink=tar_sink, scratch=scratch, heartbeat=beat
                    )
                    tar_sink.close()
                except BaseException:
                    tar_sink.abandon()
                    raise
                os.fsync(tar_file.fileno())
            size = tar_path.stat().st_size
            if destination is None:
                os.replace(scratch / "manifest.json", out / "manifest.json")
                built, location = out, final / tar_path.name
            else:
                built, location = tar_path, final
        else:
            sink = DirectorySink(work / "dataset")
            result = export_build(export=export, sink=sink, scratch=scratch, heartbeat=beat)
            built, location, size = work / "dataset", final, result.bytes
        if destination is None:
            # Left by an earlier attempt killed between its rename and its state update.
            _remove(final)
        elif final.exists() and not (final.is_dir() and not any(final.iterdir())):
            raise FileExistsError(f"{final} appeared while exporting")
        os.replace(built, final)
    except ExportAborted:
        _remove(work)
        logger.warning("export %s stopped: its claim was taken", export.pk)
        return "aborted"
    except ExportEmpty as error:
        _remove(work)
        _fail(export.pk, run_token, str(error))
        return "failed"
    except BaseException as error:
        _remove(work)
        _fail(export.pk, run_token, f"{type(error).__name__}: {error}"[:2000])
        raise
    now = timezone.now()
    finished = Export.objects.filter(
        pk=export.pk, state=Export.State.RUNNING, run_token=run_token
    ).update(
        state=Export.State.DONE,
        location=str(location),
        counts=result.summary,
        size_bytes=size,
        progress_done=result.summary["counts"]["train"] + result.summary["counts"]["val"],
        heartbeat_at=now,
        finished_at=now,
        updated_at=now,
    )
    _remove(work)
    if not finished:
        if destination is None:
            _remove(final)
        return "aborted"
    return "done"


def _tar_prefix(destination: Path | None, export: Export) -> str:
    """The top folder inside a tar: the export's name, or the name of the command's path."""
    if destination is None:
        return export.name
    name = destination.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or export.name
    return name


def _fail(export_id: int, run_token: str, message: str) -> None:
    now = timezone.now()
    Export.objects.filter(pk=export_id, state=Export.State.RUNNING, run_token=run_token).update(
        state=Export.State.FAILED, error=message, finished_at=now, updated_at=now
    )


# --- clean-up -------------------------------------------------------------------------------


@dataclass
class CleanupResult:
    expired: int = 0
    failed_stale: int = 0
    requeued: int = 0
    removed_temporary: int = 0


def _inside_export_dir(path: str) -> bool:
    try:
        return Path(path).resolve().is_relative_to(export_dir().resolve())
    except (OSError, ValueError):
        return False


def exports_cleanup() -> CleanupResult:
    """Periodic: remove the files of exports older than EXPORT_TTL_HOURS, fail running exports
    whose job stopped beating, start again pending ones whose job never came, and remove
    temporary folders no live export owns. Never touches files outside EXPORT_DIR."""
    result = CleanupResult()
    now = timezone.now()
    ttl = timedelta(hours=settings.EXPORT_TTL_HOURS)
    stale = now - timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    for export in Export.objects.filter(
        state=Export.State.DONE, finished_at__lt=now - ttl
    ).iterator():
        if not _inside_export_dir(export.location):
            continue  # written by the command to a path of its own: not ours to remove
        _remove(export_dir() / str(export.pk))
        Export.objects.filter(pk=export.pk, state=Export.State.DONE).update(
            state=Export.State.EXPIRED, updated_at=now
        )
        result.expired += 1
    result.failed_stale = Export.objects.filter(
        state=Export.State.RUNNING, heartbeat_at__lt=stale
    ).update(
        state=Export.State.FAILED,
        finished_at=now,
        updated_at=now,
        error="The export job stopped (worker lost); start a new export.",
    )
    for export_id in Export.objects.filter(
        state=Export.State.PENDING, created_at__lt=stale
    ).values_list("pk", flat=True):
        # Its job was never queued (broker down) or lost: send it again; a duplicate finds
        # the export claimed and returns.
        result.requeued += jobs.enqueue(EXPORT_TASK, export_id)
    running = {
        str(pk)
        for pk in Export.objects.filter(state=Export.State.RUNNING).values_list("pk", flat=True)
    }
    temporary = export_dir() / TMP_FOLDER
    if temporary.is_dir():
        for entry in temporary.iterdir():
            if entry.name.split("-", 1)[0] not in running:
                _remove(entry)
                result.removed_temporary += 1
    for entry in export_dir().iterdir():
        # Folders of exports that are gone or never finished (killed after the rename).
        folder_id = parse_id(entry.name)
        if (
            folder_id is not None
            and not Export.objects.filter(
                pk=folder_id, state__in=[Export.State.DONE, Export.State.RUNNING]
            ).exists()
        ):
            _remove(entry)
            result.removed_temporary += 1
    return result


# --- downloading ----------------------------------------------------------------------------


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
