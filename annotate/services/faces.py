"""Face obfuscation for exports (`blur_faces`), as ImageNet did for its ILSVRC images in 2021.

The detector is OpenCV's frontal-face Haar cascade, which the opencv-python-headless wheel
ships (cv2.data.haarcascades): nothing is downloaded at run time. A cascade finds upright,
roughly frontal faces; it misses profiles and small faces, so this is obfuscation on a best
effort basis, not a guarantee. Detection runs on a grey copy whose longer side is at most
DETECT_SIDE pixels (its cost grows with the pixels: about 0.1 s for a 512 x 512 photo on one
core; windows grow by a fifth per scale, which halves the cost of a tenth for little recall);
each face found is blurred in the full-size image, over its box grown by a margin so
that hair line and chin go too, with a Gaussian blur strong enough (sigma a quarter of the
face's size) that no feature survives.

No Django here: export_worker imports it in its processes, and only when an export asks.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import PIL.Image

DETECT_SIDE = 1024
MARGIN = 0.2  # of the face box's size, on each side
_CASCADE = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


@cache
def _detector() -> Any:
    import cv2

    cv2.setNumThreads(1)  # one core per export worker process: they run side by side
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + _CASCADE)  # type: ignore[attr-defined]
    if detector.empty():
        raise RuntimeError(f"OpenCV's {_CASCADE} did not load")
    return detector


def find_faces(img: PIL.Image.Image) -> list[Box]:
    """The faces in the RGB image `img`, as boxes grown by MARGIN and clipped to the image."""
    import cv2

    grey = img.convert("L")
    scale = min(1.0, DETECT_SIDE / max(grey.size))
    if scale < 1.0:
        grey = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
            PIL.Image.Resampling.BILINEAR,
        )
    pixels = cv2.equalizeHist(np.asarray(grey))
    found = _detector().detectMultiScale(pixels, scaleFactor=1.2, minNeighbors=5, minSize=(20, 20))
    boxes = []
    for x, y, w, h in (tuple(int(v / scale) for v in row) for row in found):
        grow_x, grow_y = int(w * MARGIN), int(h * MARGIN)
        boxes.append(
            (
                max(0, x - grow_x),
                max(0, y - grow_y),
                min(img.width, x + w + grow_x),
                min(img.height, y + h + grow_y),
            )
        )
    return boxes


def blur_boxes(img: PIL.Image.Image, boxes: list[Box]) -> PIL.Image.Image:
    """A copy of the RGB image `img` with each box blurred."""
    import cv2

    pixels = np.array(img)
    for left, top, right, bottom in boxes:
        region = pixels[top:bottom, left:right]
        sigma = max(right - left, bottom - top) / 4
        pixels[top:bottom, left:right] = cv2.GaussianBlur(region, (0, 0), sigma)
    return PIL.Image.fromarray(pixels)
