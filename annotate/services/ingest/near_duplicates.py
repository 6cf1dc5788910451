"""Near duplicates: perceptual hashes split into bands, the images sharing a band, the closest
one within NEAR_DUPLICATE_MAX_DISTANCE."""

from collections.abc import Iterable

from django.conf import settings

from annotate.models import Image, ImageHashBand, Project
from annotate.services import imaging

HASH_BANDS = 4  # 16-bit quarters of the 64-bit perceptual hash (models.ImageHashBand)


def band_keys(phash: str) -> list[int]:
    value = int(phash, 16)
    return [band * 65536 + ((value >> (16 * band)) & 0xFFFF) for band in range(HASH_BANDS)]


def hashes_sharing_a_band(*, project: Project, phashes: Iterable[str]) -> dict[int, str]:
    """Earlier images of the project whose hash shares a band with one of `phashes`: every
    image within distance 3 of any of them is among these (see ImageHashBand)."""
    keys = {key for phash in phashes for key in band_keys(phash)}
    if not keys:
        return {}
    return dict(
        ImageHashBand.objects.filter(project=project, key__in=keys)
        .values_list("image_id", "image__phash")
        .distinct()
    )


def closest(phash: str, others: Iterable[tuple[int, str]]) -> tuple[int, int] | None:
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
    return closest(phash, hashes_sharing_a_band(project=project, phashes=[phash]).items())


def near_duplicates_link(
    *, images: list[Image], earlier: dict[int, str]
) -> dict[int, tuple[int, int]]:
    """Link each image to the closest earlier one: one already stored (set here), or one
    earlier in this batch (returned as index -> (earlier index, distance), for after the
    insert). Images already stored win ties: they are the earlier ones."""
    links = {}
    for index, image in enumerate(images):
        best = closest(image.phash, earlier.items())
        in_batch = closest(image.phash, ((i, o.phash) for i, o in enumerate(images[:index])))
        if best is not None and (in_batch is None or best[1] <= in_batch[1]):
            image.near_duplicate_of_id, image.near_duplicate_distance = best
        elif in_batch is not None:
            links[index] = in_batch
    return links
