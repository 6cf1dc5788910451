"""Storing checked files, each one all or nothing: the original and its copies first, then
the rows (image, hash bands, gold decision), one transaction per batch."""

import logging

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from annotate import rows
from annotate.models import Decision, Image, Project
from annotate.rows import ingest as ingest_sql
from annotate.services import ingest_worker
from annotate.services.consensus import decision_record
from annotate.services.imaging import Inspected
from annotate.services.ingest.candidates import Candidate, UploadResult
from annotate.services.ingest.files import files_delete, worker_files
from annotate.services.ingest.near_duplicates import (
    band_keys,
    hashes_sharing_a_band,
    image_near_duplicate,
    near_duplicates_link,
)
from annotate.services.serving import image_free_slots

logger = logging.getLogger(__name__)

STORE_BATCH = 50  # files per transaction


def _files_write(image: Image, candidate: Candidate, inspected: Inspected) -> list[str]:
    """Write the original, the CNN copy and the display copy (unless a worker process did);
    return their names. On failure nothing of them stays."""
    if inspected.stored_name:
        image.file.name, image.preprocessed.name, image.display.name = (
            inspected.stored_name,
            inspected.preprocessed_name,
            inspected.display_name,
        )
    else:
        assert candidate.source is not None
        with candidate.source.open() as original:
            image.file.name, image.preprocessed.name, image.display.name = (
                ingest_worker.files_write(
                    storage=default_storage,
                    project_id=project_id_of(image),
                    name=candidate.name,
                    original=original,
                    inspected=inspected,
                )
            )
    return list(dict.fromkeys([image.file.name, image.preprocessed.name, image.display.name]))


def project_id_of(image: Image) -> int:
    assert image.project_id is not None
    return image.project_id


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
    rows.execute_many(
        ingest_sql.hash_band_insert(),
        [(image.pk, project.pk, key) for image in images for key in band_keys(image.phash)],
    )
    for image in images:
        if image.gold_label is not None:
            decision_record(
                image=image,
                label_id=image.gold_label.pk,
                rule=Decision.Rule.GOLD,
                confidence=1.0,
            )


def store_batch(
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
    written_by_workers = worker_files(inspected for _, inspected in batch)
    for candidate, inspected in batch:
        if inspected.sha256 in known:
            result.duplicates += 1
            files_delete(worker_files([inspected]))
        else:
            known.add(inspected.sha256)
            fresh.append((candidate, inspected))
    earlier = hashes_sharing_a_band(project=project, phashes=[i.phash for _, i in fresh])
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
        links = near_duplicates_link(images=images, earlier=earlier)
        try:
            with transaction.atomic():
                _image_rows_create(images=images, project=project, links=links)
        except IntegrityError:
            handed_over = True
            stored = _store_one_by_one(project=project, stored=stored, result=result)
    except BaseException:
        if not handed_over:
            files_delete(
                {name for _, _, files in stored for name in files} | set(written_by_workers)
            )
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
            files_delete(files)
            result.duplicates += 1
            continue
        except BaseException:
            files_delete(name for _, _, rest in stored[index:] for name in rest)
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
