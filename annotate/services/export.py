"""ImageNet-style exports: stable split, layout, manifest, tar stream (PRODUCT.md section 6).

An export is a row (`Export`) created first, then filled by a job (or by the `export_dataset`
command) that writes the dataset into a temporary folder and renames it into place when it is
complete, so a killed export never leaves a folder that looks finished. Memory stays flat in
the number of images: rows are read with `.iterator()`, lists of files go to scratch files on
disk, and the download is a tar written on the fly.

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
import re
import shutil
import tarfile
import time
import uuid
import warnings
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import PIL.Image
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify
from PIL import ImageOps

from annotate.models import Decision, Export, Image, Label, Project, SplitAssignment, User
from annotate.services import jobs
from annotate.services.errors import Conflict, InvalidInput, NotFound
from annotate.services.projects import validation_message

logger = logging.getLogger(__name__)

DECIDED_STATES = (Image.State.CONSENSUS, Image.State.REVIEWED)
EXPORT_TASK = "annotate.export_run"
TMP_FOLDER = ".tmp"
# Images being read and converted ahead of the writer: bounds the memory an export holds.
LOAD_AHEAD = 64
LOAD_BATCH = 16
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./-]+")

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
        raise InvalidInput("val_fraction must be a number between 0 and 1 (exclusive).",
                           field="val_fraction")
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


def export_get(*, export_id: int) -> Export:
    export = Export.objects.select_related("project").filter(pk=export_id).first()
    if export is None:
        raise NotFound(f"Export {export_id} does not exist.")
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


def _assigned(*, export: Export, **more: Any) -> QuerySet[SplitAssignment]:
    """This export's (seed, fraction) assignments of images that are eligible right now.

    `more` joins the same filter() call: a second filter() on `image__decisions` would join
    the decisions again and match old decisions too."""
    rows = SplitAssignment.objects.filter(
        project=export.project_id,
        seed=export.seed,
        val_fraction=export.val_fraction,
        image__state__in=DECIDED_STATES,
        image__decisions__is_current=True,
        image__decisions__excluded=False,
        image__decisions__label__isnull=False,
        **more,
    )
    if not export.include_gold:
        rows = rows.filter(image__is_gold=False)
    return rows


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


_SPLIT_COLUMNS = ("project_id", "image_id", "seed", "val_fraction", "key", "side", "created_at",
                  "updated_at")


def _insert_missing_rows(*, export: Export, missing: QuerySet, batch_size: int) -> None:
    """Add the missing assignments as plain rows (building model instances for 10^6 images
    would take minutes), their keys computed here."""
    quote = connection.ops.quote_name
    insert = (f"INSERT INTO {quote(SplitAssignment._meta.db_table)} "
              f"({', '.join(quote(c) for c in _SPLIT_COLUMNS)}) "
              "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    batch: list[tuple] = []
    with connection.cursor() as cursor:
        for image_id, sha in missing.iterator(chunk_size=batch_size):
            batch.append((export.project_id, image_id, export.seed, export.val_fraction,
                          split_key(seed=export.seed, sha256=sha), "", now, now))
            if len(batch) >= batch_size:
                cursor.executemany(insert, batch)
                batch = []
        if batch:
            cursor.executemany(insert, batch)


def _insert_missing_postgresql(*, export: Export, missing: QuerySet) -> None:
    """The same in one INSERT ... SELECT: PostgreSQL computes the keys (its sha256() gives
    the bytes split_key() hashes), and no row travels to Python."""
    quote = connection.ops.quote_name
    select, params = missing.query.sql_with_params()
    sql = (
        f"INSERT INTO {quote(SplitAssignment._meta.db_table)} "
        f"({', '.join(quote(c) for c in _SPLIT_COLUMNS)}) "
        "SELECT %s, missing.image_id, %s, %s, "
        "encode(sha256(convert_to(%s || ':' || missing.sha256, 'UTF8')), 'hex'), '', %s, %s "
        f"FROM ({select}) AS missing (image_id, sha256) ON CONFLICT DO NOTHING"
    )
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(sql, (export.project_id, export.seed, export.val_fraction, str(export.seed),
                             now, now, *params))


def _assign_new(*, export: Export, quotas: dict[int, int]) -> None:
    """In one UPDATE: per class, its unassigned images ranked by (key, image id); the first
    `quotas[class]` go to val, the others to train. (PostgreSQL, and SQLite >= 3.33.)"""
    if not quotas:
        return
    quote = connection.ops.quote_name
    table = quote(SplitAssignment._meta.db_table)
    unassigned = (
        _assigned(export=export, side="", image__decisions__label_id__in=list(quotas))
        .annotate(row_id=F("pk"), class_id=F("image__decisions__label_id"), row_key=F("key"),
                  row_image=F("image_id"))
        .values_list("row_id", "class_id", "row_key", "row_image")
        .order_by()
    )
    select, params = unassigned.query.sql_with_params()
    values = ", ".join(["(%s, %s)"] * len(quotas))
    sql = (
        f"UPDATE {table} SET {quote('side')} = CASE WHEN ranked.rn <= quota.column2 "
        f"THEN '{SplitAssignment.Side.VAL}' ELSE '{SplitAssignment.Side.TRAIN}' END "
        "FROM (SELECT u.row_id AS id, u.class_id AS class_id, ROW_NUMBER() OVER ("
        "PARTITION BY u.class_id ORDER BY u.row_key, u.row_image) AS rn "
        f"FROM ({select}) AS u) AS ranked "
        f"JOIN (VALUES {values}) AS quota ON quota.column1 = ranked.class_id "
        f"WHERE {table}.id = ranked.id"
    )
    flat_quotas = [number for pair in quotas.items() for number in pair]
    with connection.cursor() as cursor:
        cursor.execute(sql, (*params, *flat_quotas))


def split_assign(*, export: Export) -> SplitPlan:
    """Give every eligible image of `export`'s project a side for its (seed, val fraction),
    keeping the sides taken before, and return the per-class plan.

    Runs under the project row lock, so two exports never assign the same images at once."""
    project = export.project
    batch_size = 2000
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        known = SplitAssignment.objects.filter(
            image=OuterRef("image"), seed=export.seed, val_fraction=export.val_fraction
        )
        missing = (
            _eligible(project=project, include_gold=export.include_gold)
            .filter(~Exists(known))
            .values_list("image_id", "image__sha256")
            .order_by()
        )
        if connection.vendor == "postgresql":
            _insert_missing_postgresql(export=export, missing=missing)
        else:
            _insert_missing_rows(export=export, missing=missing, batch_size=batch_size)

        assigned = _assigned(export=export)
        counts: dict[int, Counter] = {}
        for row in (
            assigned.values("image__decisions__label_id", "side").annotate(n=Count("id")).order_by()
        ):
            counts.setdefault(row["image__decisions__label_id"], Counter())[row["side"]] = row["n"]
        labels = {
            label.pk: label for label in Label.objects.filter(project=project, pk__in=counts)
        }
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
                    name=label.name,
                    size=size,
                    target=target,
                    val=sides[SplitAssignment.Side.VAL] + to_val,
                    train=sides[SplitAssignment.Side.TRAIN] + new - to_val,
                )
            )
        _assign_new(export=export, quotas=quotas)
    # The class index is the position in wnid order, as ImageFolder sorts folder names.
    plan.classes.sort(key=lambda c: c.wnid)
    return plan


# --- images ---------------------------------------------------------------------------------


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _exif_orientation(segment: bytes) -> int | None:
    """The orientation tag (0x0112) of an APP1 Exif segment's first IFD, if any."""
    tiff = segment[6:]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "little" if tiff[:2] == b"II" else "big"
    offset = int.from_bytes(tiff[4:8], order)
    if offset + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[offset:offset + 2], order)
    for n in range(count):
        entry = tiff[offset + 2 + 12 * n: offset + 14 + 12 * n]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return None


def jpeg_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is an 8-bit, 3-component (RGB) JPEG with no EXIF rotation,
    that is a file that decodes upright to RGB as it is; None otherwise or when unsure.

    Reads the markers up to the scan only: about 20 times cheaper than opening it with
    Pillow, which matters when most of an export is copying such files."""
    if data[:2] != b"\xff\xd8":
        return None
    size = None
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        segment = data[i + 4:i + 2 + length]
        if marker == 0xDA:  # start of scan: the header is over
            return size
        if marker in _SOF_MARKERS:
            if len(segment) < 6 or segment[0] != 8 or segment[5] != 3:
                return None
            size = (int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big"))
        elif marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            if _exif_orientation(segment) not in (None, 1):
                return None
        i += 2 + length
    return None


def jpeg_bytes(data: bytes, *, resize: int | None, quality: int) -> bytes:
    """The image as an RGB JPEG, its shorter side at most `resize`. An RGB JPEG that needs no
    change (no resize, or already small enough; upright) is returned byte for byte."""
    header = jpeg_header(data)
    if header is not None and (resize is None or min(header) <= resize):
        return data
    with warnings.catch_warnings():
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        with PIL.Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA", "P") or "transparency" in img.info:
                img = img.convert("RGBA")
                background = PIL.Image.new("RGB", img.size, (255, 255, 255))
                background.paste(img, mask=img.getchannel("A"))
                img = background
            img = img.convert("RGB")
            if resize is not None and min(img.size) > resize:
                scale = resize / min(img.size)
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(size, PIL.Image.Resampling.BICUBIC, reducing_gap=3.0)
            out = io.BytesIO()
            img.save(out, "JPEG", quality=quality)
            return out.getvalue()


# --- where files go -------------------------------------------------------------------------


class DirectorySink:
    """Writes the dataset's files under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self._made: set[Path] = set()

    def _target(self, relpath: str) -> Path:
        target = self.root / relpath
        parent = target.parent
        if parent not in self._made:  # one entry per folder: a class, not an image
            parent.mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
        return target

    def add_bytes(self, relpath: str, data: bytes) -> None:
        with open(self._target(relpath), "wb") as f:
            f.write(data)

    def add_file(self, relpath: str, source: Path) -> None:
        os.replace(source, self._target(relpath))

    def close(self) -> None:
        pass


class TarSink:
    """Writes the dataset's files into a tar file, under the folder `prefix`: a header block,
    the bytes, padding to 512 (POSIX ustar; GNU long names when a path needs one)."""

    def __init__(self, fileobj: BinaryIO, prefix: str):
        self.file = fileobj
        self.prefix = prefix
        self.mtime = int(time.time())

    def _header(self, relpath: str, size: int) -> bytes:
        name = f"{self.prefix}/{relpath}"
        raw = name.encode()
        if len(raw) > 100 or size >= 8**11:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, self.mtime, 0o644
            return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
        # The common case, built directly (a third of the time tarfile takes): a POSIX
        # ustar header for a regular file.
        header = bytearray(tarfile.BLOCKSIZE)
        header[0:len(raw)] = raw
        header[100:124] = b"0000644\x000000000\x000000000\x00"  # mode, uid, gid
        header[124:148] = b"%011o\x00%011o\x00" % (size, self.mtime)
        header[148:156] = b"        "  # the checksum counts its own field as spaces
        header[156] = ord(tarfile.REGTYPE)
        header[257:265] = b"ustar\x0000"
        header[148:156] = b"%06o\x00 " % sum(header)
        return bytes(header)

    def add_bytes(self, relpath: str, data: bytes) -> None:
        self.file.write(self._header(relpath, len(data)))
        self.file.write(data)
        if pad := -len(data) % tarfile.BLOCKSIZE:
            self.file.write(bytes(pad))

    def add_file(self, relpath: str, source: Path) -> None:
        size = source.stat().st_size
        self.file.write(self._header(relpath, size))
        with open(source, "rb") as f:  # written by this export and closed: its size holds
            shutil.copyfileobj(f, self.file, 1 << 20)
        if pad := -size % tarfile.BLOCKSIZE:
            self.file.write(bytes(pad))

    def close(self) -> None:
        self.file.write(bytes(2 * tarfile.BLOCKSIZE))  # the end-of-archive marker


class _HashingWriter:
    """A text file in the scratch folder whose SHA-256 is known when it is closed."""

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
        for image_id, sha in decided.filter(is_gold=True).values_list("id", "sha256").iterator(
            chunk_size=2000
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
    for image_id, sha in decided.filter(~Exists(current)).values_list("id", "sha256").iterator(
        chunk_size=2000
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
    EXPORT_PROGRESS_SECONDS and at the end; it may raise ExportAborted to stop the build."""
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
    files_log = open(scratch / "files.jsonl", "w", encoding="utf-8")
    left_log = open(scratch / "left_out.jsonl", "w", encoding="utf-8")
    lists = {"train.txt": _HashingWriter(scratch / "train.txt"),
             "val.txt": _HashingWriter(scratch / "val.txt")}
    if flat:
        lists["val_ground_truth.txt"] = _HashingWriter(scratch / "val_ground_truth.txt")
        lists["LOC_val_solution.csv"] = _HashingWriter(scratch / "LOC_val_solution.csv")
        lists["LOC_val_solution.csv"].write("ImageId,PredictionString\n")

    written = Counter()  # (wnid, side) -> images written
    unreadable = 0
    flat_val_wnids: list[str] = []  # one shared str per class: 8 bytes per val image
    done = 0
    total_bytes = 0
    last_beat = time.monotonic()

    def log_file(relpath: str, digest: str, size: int, image_id: int | None = None) -> None:
        nonlocal total_bytes
        total_bytes += size
        # Formatted by hand (json.dumps per file is a tenth of an export's time): the paths
        # hold only label ids ([A-Za-z0-9_.-]), digits and '/', nothing JSON must escape.
        if not _PLAIN_PATH.fullmatch(relpath):  # a label id that skipped validation
            entry = [relpath, digest, size] + ([image_id] if image_id is not None else [])
            files_log.write(json.dumps(entry) + "\n")
            return
        image = f",{image_id}" if image_id is not None else ""
        files_log.write(f'["{relpath}","{digest}",{size}{image}]\n')

    def side_rows(side: str, *order: str) -> QuerySet:
        return (
            _assigned(export=export, image__decisions__label_id__in=list(index), side=side)
            .values_list("image_id", "image__file", "image__decisions__label_id", "side")
            .order_by(*order)
        )

    passes = [
        side_rows(SplitAssignment.Side.TRAIN, "image__decisions__label_id", "image_id"),
        side_rows(SplitAssignment.Side.VAL,
                  *(("key", "image_id") if flat else ("image__decisions__label_id", "image_id"))),
    ]
    resize = export.resize
    read_stored = _stored_file_reader()
    progress_seconds = settings.EXPORT_PROGRESS_SECONDS

    def load(file_name: str) -> tuple[bytes, str] | Exception:
        """Read, convert and hash one image (in a pool thread: file reads, Pillow's codecs and
        hashlib release the GIL). A file that can't be read is returned as its error.

        The SHA-256 is always of the bytes that will be written, even for a file copied byte
        for byte: the one recorded at upload says what the file was then, and a manifest that
        repeats it would vouch for a stored file that has since rotted."""
        try:
            data = jpeg_bytes(read_stored(file_name), resize=resize, quality=quality)
        except (OSError, SyntaxError, ValueError, EOFError,
                PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
            return error
        return data, hashlib.sha256(data).hexdigest()

    def write(image_id: int, label_id: int, side: str, loaded: tuple[bytes, str] | Exception):
        nonlocal done, unreadable, last_beat
        done += 1
        if isinstance(loaded, Exception):
            unreadable += 1
            left_log.write(json.dumps([image_id, None, f"unreadable: {loaded}"[:300]]) + "\n")
            return
        data, digest = loaded
        wnid = wnid_of[label_id]
        if side == SplitAssignment.Side.VAL and flat:
            number = len(flat_val_wnids) + 1
            relpath = f"val/ILSVRC_val_{number:08d}.JPEG"
            flat_val_wnids.append(wnid)
            lists["val_ground_truth.txt"].write(f"{index[label_id] + 1}\n")
            lists["LOC_val_solution.csv"].write(f"ILSVRC_val_{number:08d},{wnid}\n")
        else:
            relpath = f"{side}/{wnid}/{wnid}_{image_id}.JPEG"
        sink.add_bytes(relpath, data)
        log_file(relpath, digest, len(data), image_id)
        lists[f"{side}.txt"].write(f"{relpath} {index[label_id]}\n")
        written[(wnid, side)] += 1
        if heartbeat is not None and time.monotonic() - last_beat >= progress_seconds:
            heartbeat(done, total)
            last_beat = time.monotonic()

    try:
        # Images are loaded by a few threads, a bounded window ahead of the writer, and
        # written in query order: the output is the same whatever the threads' timing.
        # They go in batches of LOAD_BATCH rows, so a thread hand-off is not paid per image.
        threads = settings.EXPORT_THREADS

        def load_batch(rows: list[tuple]) -> list:
            return [load(row[1]) for row in rows]

        def write_batch(rows: list[tuple], future: Future) -> None:
            for (image_id, _, label_id, side), loaded in zip(rows, future.result()):
                write(image_id, label_id, side, loaded)

        with ThreadPoolExecutor(max_workers=threads) if threads > 0 else _Inline() as pool:
            for queryset in passes:
                window: deque = deque()
                batch: list[tuple] = []
                for row in queryset.iterator(chunk_size=1000):
                    batch.append(row)
                    if len(batch) >= LOAD_BATCH:
                        window.append((batch, pool.submit(load_batch, batch)))
                        batch = []
                        if len(window) * LOAD_BATCH >= LOAD_AHEAD:
                            write_batch(*window.popleft())
                if batch:
                    window.append((batch, pool.submit(load_batch, batch)))
                while window:
                    write_batch(*window.popleft())

        # Class list, meta.bin as torchvision's ImageNet reads it, the split lists.
        synsets = "".join(f"{c.wnid} {c.name}\n" for c in plan.classes).encode()
        sink.add_bytes("LOC_synset_mapping.txt", synsets)
        log_file("LOC_synset_mapping.txt", hashlib.sha256(synsets).hexdigest(), len(synsets))
        if flat:
            val_wnids = flat_val_wnids
        else:  # in the order of the val files' sorted paths: by class folder
            val_wnids = [c.wnid for c in plan.classes for _ in range(written[(c.wnid, "val")])]
        meta = _torch_save_bytes(({c.wnid: _class_names(c.name) for c in plan.classes}, val_wnids))
        sink.add_bytes("meta.bin", meta)
        log_file("meta.bin", hashlib.sha256(meta).hexdigest(), len(meta))
        for relpath, writer in lists.items():
            writer.close()
            digest, size = _file_sha256(writer.path)
            sink.add_file(relpath, writer.path)
            log_file(relpath, digest, size)
        files_log.close()

        for image_id, sha, reason in _left_out_rows(export=export, plan=plan):
            left_log.write(json.dumps([image_id, sha, reason]) + "\n")
        left_log.close()

        per_class = {
            c.wnid: {
                "index": i,
                "name": c.name,
                "train": written[(c.wnid, "train")],
                "val": written[(c.wnid, "val")],
                "val_target": c.target,
            }
            for i, c in enumerate(plan.classes)
        }
        off_target = sorted(
            wnid for wnid, row in per_class.items()
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
        _write_manifest(manifest, summary, scratch / "files.jsonl", scratch / "left_out.jsonl")
        sink.add_file("manifest.json", manifest)
        if heartbeat is not None:
            heartbeat(done, total)
    finally:
        for handle in (files_log, left_log, *(w.file for w in lists.values())):
            handle.close()
    return BuildResult(summary=summary, files=sum(written.values()), bytes=total_bytes)


def _stored_file_reader() -> Callable[[str], bytes]:
    """How to read a stored image by its name. On local storage, a plain open() under its
    folder: the names come from our own rows, written by the storage, and the storage's own
    open() (a path check and a File wrapper) costs about as much as reading a small image."""
    if isinstance(default_storage, FileSystemStorage) or isinstance(
        getattr(default_storage, "_wrapped", None), FileSystemStorage
    ):
        base = os.path.abspath(default_storage.location)

        def read_local(name: str) -> bytes:
            if name.startswith(("/", "..")) or "/../" in name:
                raise OSError(f"refusing to read {name!r} outside the storage")
            with open(os.path.join(base, name), "rb") as f:
                return f.read()

        return read_local

    def read_any(name: str) -> bytes:
        with default_storage.open(name, "rb") as f:
            return f.read()

    return read_any


class _Inline:
    """A stand-in for a thread pool that runs each call at once (EXPORT_THREADS = 0)."""

    def submit(self, fn: Callable, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _torch_save_bytes(obj: Any) -> bytes:
    import torch  # heavy; only exports need it

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_manifest(path: Path, summary: dict, files_log: Path, left_log: Path) -> None:
    """manifest.json, streamed: the summary, then `files` ({path: {sha256, bytes, image?}})
    and `left_out` ([{image, sha256, reason}]) read back line by line from the scratch lists."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("{\n")
        for key, value in summary.items():
            out.write(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)},\n")
        out.write(' "files": {')
        with open(files_log, encoding="utf-8") as lines:
            for n, line in enumerate(lines):
                relpath, digest, size, *image = json.loads(line)
                entry = {"sha256": digest, "bytes": size} | ({"image": image[0]} if image else {})
                out.write(("," if n else "") + f"\n  {json.dumps(relpath)}: {json.dumps(entry)}")
        out.write("\n },\n \"left_out\": [")
        with open(left_log, encoding="utf-8") as lines:
            for n, line in enumerate(lines):
                image_id, sha, reason = json.loads(line)
                entry = {"image": image_id, "sha256": sha, "reason": reason}
                out.write(("," if n else "") + f"\n  {json.dumps(entry)}")
        out.write("\n ]\n}\n")


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
    ).update(state=Export.State.RUNNING, run_token=run_token, heartbeat_at=now, updated_at=now,
             progress_done=0, error="", attempts=F("attempts") + 1)
    if not claimed:
        gave_up = base.filter(
            Q(state=Export.State.PENDING) | Q(state=Export.State.RUNNING, run_token=run_token),
        ).update(state=Export.State.FAILED, finished_at=now, updated_at=now,
                 error=f"Gave up after {settings.EXPORT_MAX_ATTEMPTS} attempts.")
        if gave_up:
            logger.warning("export %s failed: too many attempts", export_id)
        return None
    return Export.objects.select_related("project").get(pk=export_id)


def _heartbeat(export_id: int, run_token: str, progress: ProgressCallback | None):
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
            with open(tar_path, "wb", buffering=4 << 20) as tar_file:
                sink: DirectorySink | TarSink = TarSink(tar_file, prefix)
                result = export_build(export=export, sink=sink, scratch=scratch, heartbeat=beat)
                sink.close()
                tar_file.flush()
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
    for export in Export.objects.filter(state=Export.State.DONE, finished_at__lt=now - ttl).iterator():
        if not _inside_export_dir(export.location):
            continue  # written by the command to a path of its own: not ours to remove
        _remove(export_dir() / str(export.pk))
        Export.objects.filter(pk=export.pk, state=Export.State.DONE).update(
            state=Export.State.EXPIRED, updated_at=now
        )
        result.expired += 1
    result.failed_stale = Export.objects.filter(
        state=Export.State.RUNNING, heartbeat_at__lt=stale
    ).update(state=Export.State.FAILED, finished_at=now, updated_at=now,
             error="The export job stopped (worker lost); start a new export.")
    for export_id in Export.objects.filter(
        state=Export.State.PENDING, created_at__lt=stale
    ).values_list("pk", flat=True):
        # Its job was never queued (broker down) or lost: send it again; a duplicate finds
        # the export claimed and returns.
        result.requeued += jobs.enqueue(EXPORT_TASK, export_id)
    running = {
        str(pk) for pk in Export.objects.filter(state=Export.State.RUNNING).values_list("pk", flat=True)
    }
    temporary = export_dir() / TMP_FOLDER
    if temporary.is_dir():
        for entry in temporary.iterdir():
            if entry.name.split("-", 1)[0] not in running:
                _remove(entry)
                result.removed_temporary += 1
    for entry in export_dir().iterdir():
        # Folders of exports that are gone or never finished (killed after the rename).
        if entry.name.isdigit() and not Export.objects.filter(
            pk=int(entry.name), state__in=[Export.State.DONE, Export.State.RUNNING]
        ).exists():
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
        raise Conflict("This export was written to a local path by a command; it is not "
                       "downloadable.")
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
        return Download(gzip_stream(file_chunks(path)), f"{path.name}.gz", "application/gzip",
                        None)
    return Download(file_chunks(path), path.name, "application/x-tar", path.stat().st_size)


def export_manifest_path(*, export: Export) -> Path:
    return export_downloadable(export=export).parent / "manifest.json"
