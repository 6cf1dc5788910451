"""Small decided projects with real image files, for the export tests."""

import io
import random

from PIL import Image as PILImage

from annotate.models import Decision, Image, Label, Project
from annotate.services import ingest
from annotate.services.consensus import decision_record


def unique_image(rng: random.Random, fmt: str = "JPEG", size=(40, 30), mode: str = "RGB") -> bytes:
    """A small image no other call returns: random noise pixels."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
    pixels = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * channels))
    img = PILImage.frombytes(mode, size, pixels)
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def add_image(project: Project, data: bytes, name: str = "img.jpg") -> Image:
    result = ingest.images_upload(project=project, files=[(name, io.BytesIO(data))])
    assert result.created, result
    return Image.objects.get(pk=result.created[0])


def decide(image: Image, label: Label | None, state: str = Image.State.CONSENSUS) -> Image:
    """Give `image` a current decision (label, or excluded for None) and `state`."""
    rule = Decision.Rule.REVIEW if state == Image.State.REVIEWED else Decision.Rule.MAJORITY
    if state != Image.State.DISPUTED:
        decision_record(
            image=image,
            label_id=label.pk if label else None,
            rule=rule,
            confidence=0.9,
            votes_count=3,
        )
    Image.objects.filter(pk=image.pk).update(state=state, free_slots=0)
    image.refresh_from_db()
    return image


def decided_images(
    project: Project,
    label: Label,
    count: int,
    rng: random.Random,
    state: str = Image.State.CONSENSUS,
    **image_args,
) -> list[Image]:
    return [
        decide(add_image(project, unique_image(rng, **image_args)), label, state)
        for _ in range(count)
    ]
