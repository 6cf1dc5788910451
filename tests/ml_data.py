"""Generated images of visually distinct classes (colours), for the ML tests."""

import io
import random

from PIL import Image as PILImage
from PIL import ImageDraw

# Three classes a small CNN tells apart after a few steps.
COLOURS = {"red": (210, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 210)}


def colour_image(colour: str, rng: random.Random, size=(48, 40)) -> bytes:
    """A noisy image dominated by `colour`: distinct bytes every time, same class look."""
    base = COLOURS[colour]
    img = PILImage.new("RGB", size, tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in base))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        shade = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in base)
        draw.rectangle((x, y, x + rng.randint(2, 8), y + rng.randint(2, 8)), fill=shade)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_colour_samples(folder, per_class: int, seed: int = 0) -> list[tuple[str, int]]:
    """Files in `folder` and their class indices (in COLOURS order), shuffled."""
    rng = random.Random(seed)
    samples = []
    for index, colour in enumerate(COLOURS):
        for i in range(per_class):
            path = folder / f"{colour}_{i}.jpg"
            path.write_bytes(colour_image(colour, rng))
            samples.append((str(path), index))
    rng.shuffle(samples)
    return samples
