"""Bringing images and label sets into a project: validate, dedupe, store, preprocess."""

import collections
import logging
import os
import re
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.converters import parse_id
from annotate.models import Decision, Image, ImageHashBand, Label, Project, label_key_validator
from annotate.services import imaging, ingest_worker
from annotate.services.consensus import decision_record
from annotate.services.errors import InvalidInput, ServiceError
from annotate.services.imaging import Inspected
from annotate.services.projects import control_character, text_lines
from annotate.services.serving import image_free_slots

logger = logging.getLogger(__name__)


# --- label sets -------------------------------------------------------------------------------


@dataclass
class LabelImportResult:
    created: int = 0
    existing: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _parse_synset_line(line: str) -> tuple[str, str]:
    wnid, _, names = line.strip().partition(" ")
    names = names.strip()
    if not names:
        raise ValueError("expected '<wnid> <name>[, <other names>]'")
    try:
        label_key_validator(wnid)
    except Exception:
        raise ValueError(f"{wnid[:70]!r} is not a valid label id (WordNet id or slug)") from None
    if len(names) > 200:
        raise ValueError("names longer than 200 characters")
    found = control_character(names)
    if found is not None:
        raise ValueError(f"name contains {found}")
    return wnid, names


def labels_import(*, project: Project, text: str) -> LabelImportResult:
    """Import a synset mapping (`n02123045 tabby, tabby cat`, one per line).

    Labels already in the project are counted as `existing`, so re-importing adds nothing.
    Bad lines are reported with their line numbers; the good ones are imported.
    """
    result = LabelImportResult()
    parsed: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            result.errors.append({"line": number, "reason": "blank line"})
            continue
        try:
            wnid, names = _parse_synset_line(line)
        except ValueError as error:
            result.errors.append({"line": number, "reason": str(error)})
            continue
        if wnid in seen:
            result.errors.append(
                {"line": number, "reason": f"duplicate id {wnid} (first on line {seen[wnid]})"}
            )
            continue
        seen[wnid] = number
        parsed.append((number, wnid, names))
    if not parsed:
        raise InvalidInput("No valid synset lines found: expected '<wnid> <name>' per line.")
    with transaction.atomic():
        existing = set(
            Label.objects.filter(project=project, wnid__in=seen).values_list("wnid", flat=True)
        )
        start = Label.objects.filter(project=project).count()
        new_labels = [
            Label(project=project, wnid=wnid, name=names, position=start + index)
            for index, (_, wnid, names) in enumerate(
                item for item in parsed if item[1] not in existing
            )
        ]
        Label.objects.bulk_create(new_labels)
    result.created = len(new_labels)
    result.existing = len(existing)
    return result


# --- images -----------------------------------------------------------------------------------
#
# One pipeline for the API, the import_images command and the benchmark:
#   expand     uploads, folders and zip archives into candidates (zip rules checked here);
#   inspect    each candidate: byte cap, identify, pixel cap, full decode, SHA-256, perceptual
#              hash, the CNN's copy (imaging.inspect; in worker processes for bulk imports);
#   store      each accepted file all or nothing: original and CNN copy written first, then
#              the rows (one transaction per batch); any failure deletes the files of every
#              image whose rows did not commit.


class UploadTooLarge(ServiceError):
    status = 413


@dataclass
class UploadResult:
    created: list[int] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Stored, but an earlier image of the project looks the same: {name, id, near_duplicate_of,
    # distance}.
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Candidate:
    """One file to ingest, or (with `problem`) one already refused while expanding."""

    name: str
    source: imaging.Source | None = None
    gold_label: Label | None = None
    problem: str | None = None


# Called with the number of files just finished; what it returns is not used.
Progress = Callable[[int], object]

STORE_BATCH = 50  # files per transaction
INSPECT_CHUNK = 8  # files per task sent to a worker process
KNOWN_SHA256_MAX = 250_000  # hashes of a project's images handed to the inspection
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
HASH_BANDS = 4  # 16-bit quarters of the 64-bit perceptual hash (models.ImageHashBand)


def _limits() -> imaging.Limits:
    return imaging.Limits(
        max_bytes=settings.IMAGE_MAX_BYTES,
        max_pixels=settings.IMAGE_MAX_PIXELS,
        short_side=settings.PREPROCESSED_SHORT_SIDE,
    )


def upload_size_check(*, content_length: int | None) -> None:
    """Refuse a request body over UPLOAD_MAX_REQUEST_BYTES before anything of it is read."""
    if content_length is not None and content_length > settings.UPLOAD_MAX_REQUEST_BYTES:
        raise UploadTooLarge(
            f"The upload is {content_length} bytes; one request may carry at most "
            f"{settings.UPLOAD_MAX_REQUEST_BYTES} bytes. Send the files in several requests."
        )


# --- expand -----------------------------------------------------------------------------------


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


def _archive_candidates(
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


class _GoldRule:
    """Settles each file's gold label: one label for all, or the label folder of its path
    (`<wnid>/...` or `train/<wnid>/...`) with gold_from_folders."""

    def __init__(self, *, project: Project, gold_label: Label | None, from_folders: bool):
        self.gold_label = gold_label
        self.by_wnid = (
            {label.wnid: label for label in Label.objects.filter(project=project)}
            if from_folders
            else None
        )

    def __call__(self, path: str) -> Candidate:
        if self.by_wnid is None:
            return Candidate(name=path, gold_label=self.gold_label)
        folders = [part for part in PurePosixPath(path.replace("\\", "/")).parts[:-1] if part]
        if folders and folders[0] in ("train", "val"):
            folders = folders[1:]
        if not folders:
            return Candidate(name=path, problem="not inside a label folder (<wnid>/...)")
        label = self.by_wnid.get(folders[0])
        if label is None:
            return Candidate(
                name=path, problem=f"folder {folders[0][:70]!r} is not a label of this project"
            )
        return Candidate(name=path, gold_label=label)


def _upload_candidates(
    files: Iterable[tuple[str, BinaryIO]], gold: _GoldRule
) -> Iterator[Candidate]:
    for name, stream in files:
        if _is_zip(name, stream):
            yield from _archive_candidates(name=name, archive=stream, gold=gold)
        else:
            candidate = gold(name)
            if candidate.problem is None:
                candidate.source = imaging.StreamSource(stream)
            yield candidate


def _folder_candidates(root: Path, gold: _GoldRule) -> Iterator[Candidate]:
    """Every file under `root` (sorted, so runs are reproducible); zip files are expanded."""
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for filename in sorted(names):
            path = Path(folder) / filename
            relative = path.relative_to(root).as_posix()
            if filename.lower().endswith(".zip"):
                yield from _archive_candidates(name=relative, archive=str(path), gold=gold)
                continue
            candidate = gold(relative)
            if candidate.problem is None:
                candidate.source = imaging.PathSource(str(path))
            yield candidate


# --- inspect ----------------------------------------------------------------------------------


# A worker's answer for one chunk: ingest_worker.inspect_and_store()'s list.
_Outcomes = Future[list[Inspected | imaging.Known | str]]


def _inspected(
    candidates: Iterable[Candidate], *, workers: int, known: frozenset[str], project_id: int
) -> Generator[tuple[Candidate, Inspected | imaging.Known | str], None, None]:
    """Each candidate with its inspection (or the reason it was refused), in input order.

    Files whose SHA-256 is in `known` are not decoded (re-runs of an import are quick). With
    workers > 1 the decoding runs in that many processes, at most a few files ahead of the
    storing, so memory stays flat however many files there are.
    """
    limits = _limits()
    if workers <= 1:
        for candidate in candidates:
            if candidate.problem is not None or candidate.source is None:
                yield candidate, candidate.problem or "nothing to read"
            else:
                yield candidate, imaging.inspect_source(candidate.source, limits, known)
        return
    # Files go to the workers in small chunks (less inter-process traffic per file); at most
    # a few chunks per worker are in flight. The workers also write the files, so that this
    # process, which writes the rows one batch after the other, is never the bottleneck.
    window: collections.deque[tuple[list[Candidate], _Outcomes | None]] = collections.deque()
    # spawn, not fork: a forked child would share the parent's database connection.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=ingest_worker.worker_init,
        initargs=(known, storage_target(project_id)),
    ) as pool:
        current: list[tuple[Candidate, Inspected | imaging.Known | str]] = []  # not handed out
        try:
            for chunk in _chunks(candidates, INSPECT_CHUNK):
                items = [(c.name, c.source) for c in chunk if c.problem is None and c.source]
                if any(isinstance(source, imaging.StreamSource) for _, source in items):
                    raise ValueError("open streams cannot be sent to worker processes")
                future = (
                    pool.submit(ingest_worker.inspect_and_store, items, limits) if items else None
                )
                window.append((chunk, future))
                while len(window) > workers * 4:
                    current = _settled(*window.popleft())
                    while current:
                        yield current.pop(0)
            while window:
                current = _settled(*window.popleft())
                while current:
                    yield current.pop(0)
        except BaseException:
            # Stopped half-way: the files workers wrote for what nobody will store go too.
            _files_delete(_worker_files(outcome for _, outcome in current))
            for _, future in window:
                if future is not None and not future.cancel():
                    try:
                        outcomes = future.result()
                    except Exception:  # the worker failed: it wrote nothing we know of
                        continue
                    _files_delete(_worker_files(outcomes))
            raise


def storage_target(project_id: int) -> ingest_worker.StorageTarget:
    """The default storage as worker processes can rebuild it, with its place made explicit
    (settings changed at run time, as in tests, do not reach a spawned process)."""
    config = settings.STORAGES["default"]
    options = dict(config.get("OPTIONS", {}))
    if config["BACKEND"] == "django.core.files.storage.FileSystemStorage":
        options.setdefault("location", str(settings.MEDIA_ROOT))
        options.setdefault("base_url", settings.MEDIA_URL)
    return ingest_worker.StorageTarget(
        backend=config["BACKEND"], options=options, project_id=project_id
    )


def _worker_files(outcomes: Iterable[object]) -> list[str]:
    return [
        name
        for outcome in outcomes
        if isinstance(outcome, Inspected)
        for name in (outcome.stored_name, outcome.preprocessed_name)
        if name
    ]


def _chunks(candidates: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    chunk: list[Candidate] = []
    for candidate in candidates:
        chunk.append(candidate)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _settled(
    chunk: list[Candidate], future: _Outcomes | None
) -> list[tuple[Candidate, Inspected | imaging.Known | str]]:
    outcomes = iter(future.result() if future is not None else ())
    return [
        (candidate, candidate.problem or "nothing to read")
        if candidate.problem is not None or candidate.source is None
        else (candidate, next(outcomes))
        for candidate in chunk
    ]


# --- store ------------------------------------------------------------------------------------


def _band_keys(phash: str) -> list[int]:
    value = int(phash, 16)
    return [band * 65536 + ((value >> (16 * band)) & 0xFFFF) for band in range(HASH_BANDS)]


def _hashes_sharing_a_band(*, project: Project, phashes: Iterable[str]) -> dict[int, str]:
    """Earlier images of the project whose hash shares a band with one of `phashes`: every
    image within distance 3 of any of them is among these (see ImageHashBand)."""
    keys = {key for phash in phashes for key in _band_keys(phash)}
    if not keys:
        return {}
    return dict(
        ImageHashBand.objects.filter(project=project, key__in=keys)
        .values_list("image_id", "image__phash")
        .distinct()
    )


def _closest(phash: str, others: Iterable[tuple[int, str]]) -> tuple[int, int] | None:
    """The (id, distance) of the closest hash within NEAR_DUPLICATE_MAX_DISTANCE, ties to
    the earliest image, or None."""
    best = None
    for image_id, other in others:
        distance = imaging.hamming(phash, other)
        if distance <= settings.NEAR_DUPLICATE_MAX_DISTANCE and (
            best is None or (distance, image_id) < (best[1], best[0])
        ):
            best = (image_id, distance)
    return best


def image_near_duplicate(*, project: Project, phash: str) -> tuple[int, int] | None:
    """The closest earlier image of the project within NEAR_DUPLICATE_MAX_DISTANCE of `phash`,
    as (image id, distance), or None."""
    return _closest(phash, _hashes_sharing_a_band(project=project, phashes=[phash]).items())


def _files_write(image: Image, candidate: Candidate, inspected: Inspected) -> list[str]:
    """Write the original and the CNN copy (unless a worker process did); return their names.
    On failure nothing of them stays."""
    if inspected.stored_name:
        image.file.name, image.preprocessed.name = (
            inspected.stored_name,
            inspected.preprocessed_name,
        )
    else:
        assert candidate.source is not None
        image.file.name, image.preprocessed.name = ingest_worker.files_write(
            storage=default_storage,
            project_id=project_id_of(image),
            name=candidate.name,
            source=candidate.source,
            inspected=inspected,
        )
    return [image.file.name, image.preprocessed.name]


def project_id_of(image: Image) -> int:
    assert image.project_id is not None
    return image.project_id


def _files_delete(names: Iterable[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.exception("could not delete %s after a failed ingest", name)


def _image_rows_create(
    *, images: list[Image], project: Project, links: dict[int, tuple[int, int]] | None = None
) -> None:
    """The rows of freshly stored images: images, hash bands, gold decisions. Call inside a
    transaction. `links` maps an image's index to (index of an earlier image in `images`,
    distance): near duplicates within the batch, linked once both have ids."""
    Image.objects.bulk_create(images)
    if links:
        for index, (earlier, distance) in links.items():
            images[index].near_duplicate_of_id = images[earlier].pk
            images[index].near_duplicate_distance = distance
        Image.objects.bulk_update(
            [images[index] for index in links],
            ["near_duplicate_of", "near_duplicate_distance"],
        )
    ImageHashBand.objects.bulk_create(
        ImageHashBand(image=image, project=project, key=key)
        for image in images
        for key in _band_keys(image.phash)
    )
    for image in images:
        if image.gold_label is not None:
            decision_record(
                image=image,
                label_id=image.gold_label.pk,
                rule=Decision.Rule.GOLD,
                confidence=1.0,
            )


def _store_batch(
    *, project: Project, batch: list[tuple[Candidate, Inspected]], result: UploadResult
) -> None:
    """Store a batch of checked files, each one all or nothing.

    Files are written before their rows, and every file written for an image whose rows did
    not commit is deleted again, whatever went wrong: no row is ever without its files, no
    file outlives a failed row. The rows of the batch go in one transaction; if another
    upload stored some of the same bytes meanwhile, the batch is redone file by file.
    """
    known = set(
        Image.objects.filter(
            project=project, sha256__in=[inspected.sha256 for _, inspected in batch]
        ).values_list("sha256", flat=True)
    )
    fresh: list[tuple[Candidate, Inspected]] = []
    worker_files = _worker_files(inspected for _, inspected in batch)
    for candidate, inspected in batch:
        if inspected.sha256 in known:
            result.duplicates += 1
            _files_delete(_worker_files([inspected]))
        else:
            known.add(inspected.sha256)
            fresh.append((candidate, inspected))
    earlier = _hashes_sharing_a_band(project=project, phashes=[i.phash for _, i in fresh])
    stored: list[tuple[Candidate, Image, list[str]]] = []
    handed_over = False  # to the file-by-file path, which then cleans up after itself
    try:
        for candidate, inspected in fresh:
            image = _image_new(project=project, candidate=candidate, inspected=inspected)
            try:
                files = _files_write(image, candidate, inspected)
            except OSError as error:
                logger.exception("could not store %s", candidate.name)
                result.rejected.append(
                    {"name": candidate.name, "reason": f"could not store the file: {error}"}
                )
                continue
            stored.append((candidate, image, files))
        images = [image for _, image, _ in stored]
        links = _near_duplicates_link(images=images, earlier=earlier)
        try:
            with transaction.atomic():
                _image_rows_create(images=images, project=project, links=links)
        except IntegrityError:
            handed_over = True
            stored = _store_one_by_one(project=project, stored=stored, result=result)
    except BaseException:
        if not handed_over:
            _files_delete({name for _, _, files in stored for name in files} | set(worker_files))
        raise
    for candidate, image, _ in stored:
        result.created.append(image.pk)
        if image.near_duplicate_of_id is not None:
            result.near_duplicates.append(
                {
                    "name": candidate.name,
                    "id": image.pk,
                    "near_duplicate_of": image.near_duplicate_of_id,
                    "distance": image.near_duplicate_distance,
                }
            )


def _near_duplicates_link(
    *, images: list[Image], earlier: dict[int, str]
) -> dict[int, tuple[int, int]]:
    """Link each image to the closest earlier one: one already stored (set here), or one
    earlier in this batch (returned as index -> (earlier index, distance), for after the
    insert). Images already stored win ties: they are the earlier ones."""
    links = {}
    for index, image in enumerate(images):
        best = _closest(image.phash, earlier.items())
        in_batch = _closest(image.phash, ((i, o.phash) for i, o in enumerate(images[:index])))
        if best is not None and (in_batch is None or best[1] <= in_batch[1]):
            image.near_duplicate_of_id, image.near_duplicate_distance = best
        elif in_batch is not None:
            links[index] = in_batch
    return links


def _store_one_by_one(
    *, project: Project, stored: list[tuple[Candidate, Image, list[str]]], result: UploadResult
) -> list[tuple[Candidate, Image, list[str]]]:
    """The slow path after a conflict: each image in its own transaction, relinked."""
    kept = []
    for index, (candidate, image, files) in enumerate(stored):
        image.pk = None
        image.near_duplicate_of = None
        image.near_duplicate_of_id = None
        image.near_duplicate_distance = None
        near = image_near_duplicate(project=project, phash=image.phash)
        if near is not None:
            image.near_duplicate_of_id, image.near_duplicate_distance = near
        try:
            with transaction.atomic():
                _image_rows_create(images=[image], project=project)
        except IntegrityError:
            # The same bytes arrived through another upload in the meantime.
            _files_delete(files)
            result.duplicates += 1
            continue
        except BaseException:
            _files_delete(name for _, _, rest in stored[index:] for name in rest)
            raise
        kept.append((candidate, image, files))
    return kept


def _image_new(*, project: Project, candidate: Candidate, inspected: Inspected) -> Image:
    gold_label = candidate.gold_label
    image = Image(
        project=project,
        original_name=candidate.name[-255:],
        sha256=inspected.sha256,
        size_bytes=inspected.size_bytes,
        format=inspected.format,
        width=inspected.width,
        height=inspected.height,
        phash=inspected.phash,
        is_gold=gold_label is not None,
        gold_label=gold_label,
        state=Image.State.CONSENSUS if gold_label is not None else Image.State.OPEN,
    )
    image.free_slots = image_free_slots(image=image, project=project)
    return image


def _ingest(
    *,
    project: Project,
    candidates: Iterable[Candidate],
    workers: int = 1,
    progress: Progress | None = None,
    skip_known: bool = False,
) -> UploadResult:
    result = UploadResult()
    batch: list[tuple[Candidate, Inspected]] = []
    pending = 0
    known: frozenset[str] = frozenset()
    if skip_known:
        # Bulk imports skip decoding what the project holds already, so a re-run is quick.
        # Up to this many hashes are cheap to hand to each worker; past it, a re-run decodes
        # again, and the database still finds every duplicate.
        shas = Image.objects.filter(project=project).values_list("sha256", flat=True)
        first = list(shas[: KNOWN_SHA256_MAX + 1])
        known = frozenset(first) if len(first) <= KNOWN_SHA256_MAX else frozenset()
    inspected = _inspected(candidates, workers=workers, known=known, project_id=project.pk)
    try:
        for candidate, outcome in inspected:
            pending += 1
            if isinstance(outcome, str):
                result.rejected.append({"name": candidate.name, "reason": outcome})
            elif isinstance(outcome, imaging.Known):
                result.duplicates += 1
            else:
                batch.append((candidate, outcome))
            if len(batch) >= STORE_BATCH:
                stored, batch = batch, []
                _store_batch(project=project, batch=stored, result=result)
                if progress is not None:
                    progress(pending)
                pending = 0
        if batch:
            stored, batch = batch, []
            _store_batch(project=project, batch=stored, result=result)
    except BaseException:
        # Interrupted between inspecting and storing: what workers wrote for it goes too.
        _files_delete(_worker_files(outcome for _, outcome in batch))
        raise
    finally:
        inspected.close()  # stops the workers, deleting what they wrote for unstored files
    if progress is not None and pending:
        progress(pending)
    return result


def _gold_check(project: Project, gold_label: Label | None, from_folders: bool) -> None:
    if gold_label is not None and gold_label.project_id != project.pk:
        raise InvalidInput("The gold label belongs to another project.", field="gold_label")
    if gold_label is not None and from_folders:
        raise InvalidInput(
            "Give either one gold label or gold labels from folders, not both.",
            field="gold_label",
        )


def images_upload(
    *,
    project: Project,
    files: Iterable[tuple[str, BinaryIO]],
    gold_label: Label | None = None,
    gold_from_folders: bool = False,
) -> UploadResult:
    """Ingest uploaded files (images and zip archives), each file on its own: one bad file
    is one `rejected` entry; exact duplicates are counted, not stored."""
    _gold_check(project, gold_label, gold_from_folders)
    gold = _GoldRule(project=project, gold_label=gold_label, from_folders=gold_from_folders)
    return _ingest(project=project, candidates=_upload_candidates(files, gold))


def images_import(
    *,
    project: Project,
    path: Path,
    gold_label: Label | None = None,
    gold_from_folders: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> UploadResult:
    """Ingest a folder (recursively; zip files in it are expanded) or one zip archive.

    Re-running the same import adds nothing: every file is then an exact duplicate.
    `progress(n)` is called as files finish; with `workers` > 1 the decoding runs in that
    many processes.
    """
    _gold_check(project, gold_label, gold_from_folders)
    if workers < 1:
        raise InvalidInput("workers must be at least 1.", field="workers")
    gold = _GoldRule(project=project, gold_label=gold_label, from_folders=gold_from_folders)
    if path.is_dir():
        candidates = _folder_candidates(path, gold)
    elif path.is_file():
        candidates = _archive_candidates(name=path.name, archive=str(path), gold=gold)
    else:
        raise InvalidInput(f"{path} is neither a folder nor a zip archive.", field="path")
    try:
        return _ingest(
            project=project,
            candidates=candidates,
            workers=workers,
            progress=progress,
            skip_known=True,
        )
    finally:
        imaging.archives_close()


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


def storage_orphans(*, min_age: timedelta, delete: bool = False) -> list[str]:
    """Stored originals and CNN copies that no image row points at, older than `min_age`.

    Ingest deletes the files of every image whose rows did not commit; only a process killed
    between the two (or a deleted project) leaves such files. `min_age` spares the files of
    imports still running. With `delete`, they are deleted. Works on any storage backend.
    """
    cutoff = timezone.now() - min_age
    orphans = []
    for top in ("images", "preprocessed"):
        for project_folder in _listdir(top)[0]:
            referenced: set[str] = set()
            project_id = parse_id(project_folder)
            if project_id is not None:
                rows = Image.objects.filter(project_id=project_id)
                referenced = set(rows.values_list("file", flat=True)) | set(
                    rows.values_list("preprocessed", flat=True)
                )
            for name in _walk(f"{top}/{project_folder}"):
                if name in referenced:
                    continue
                if default_storage.get_modified_time(name) > cutoff:
                    continue
                orphans.append(name)
                if delete:
                    default_storage.delete(name)
    return orphans


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except FileNotFoundError:
        return [], []


def _walk(path: str) -> Iterator[str]:
    folders, files = _listdir(path)
    for name in sorted(files):
        yield f"{path}/{name}"
    for folder in sorted(folders):
        yield from _walk(f"{path}/{folder}")
