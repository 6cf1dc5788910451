"""Display copies of images stored before ingest made them: made on the first request for the
image, or all at once by `display_copies_backfill` (the `display_copies` command)."""

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotate.models import Image
from annotate.services import imaging, ingest_worker
from annotate.services.errors import NotFound
from annotate.services.ingest.inspection import limits

logger = logging.getLogger(__name__)

BACKFILL_BATCH = 200  # images read per query


def _display_write(image: Image) -> str:
    """Make and store the display copy of `image` from its original; the stored name (the
    original's own when it has nothing to drop or change)."""
    with image.file.open("rb") as original:
        data = original.read()  # at most IMAGE_MAX_BYTES
    display = imaging.display_bytes(io.BytesIO(data), limits())
    if display == data:
        return str(image.file.name)
    assert image.project_id is not None
    return default_storage.save(
        ingest_worker.display_name(project_id=image.project_id, sha256=image.sha256),
        ContentFile(display),
    )


def image_display_ensure(*, image: Image) -> Image:
    """`image` with its display copy, made now if it has none yet. Two requests making it at
    once both write; the first to set the row wins and the other deletes its file."""
    if image.display:
        return image
    try:
        name = _display_write(image)
    except (imaging.ImageRejected, OSError) as error:
        logger.warning("no display copy for image %s: %s", image.pk, error)
        raise NotFound(f"Image {image.pk} has no displayable file.") from None
    if Image.objects.filter(pk=image.pk, display="").update(display=name):
        image.display.name = name
        return image
    if name != image.file.name:
        default_storage.delete(name)
    image.refresh_from_db(fields=["display"])
    return image


@dataclass
class BackfillResult:
    made: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {id, reason}


def display_copies_backfill(
    *, project_id: int | None = None, progress: Callable[[int], object] | None = None
) -> BackfillResult:
    """Make the display copy of every image (of one project, or all) that has none. Safe to
    run again, and beside a running service: images that get one meanwhile are left alone."""
    result = BackfillResult()
    pending = Image.objects.filter(display="").order_by("id")
    if project_id is not None:
        pending = pending.filter(project_id=project_id)
    after = 0
    while batch := list(pending.filter(id__gt=after)[:BACKFILL_BATCH]):
        for image in batch:
            try:
                image_display_ensure(image=image)
            except NotFound as error:
                result.failed.append({"id": image.pk, "reason": error.message})
            else:
                result.made += 1
        after = batch[-1].pk
        if progress is not None:
            progress(len(batch))
    return result
