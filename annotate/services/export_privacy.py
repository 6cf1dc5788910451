"""The worker-process side of an export's privacy options: faces blurred in a file (when the
export asks for it), and files written anew when their metadata cannot be cut out of them.

No Django here: export_worker imports it in its processes. The face detector (faces, which
imports OpenCV) is loaded only by exports that blur faces.
"""

from __future__ import annotations

import io
from typing import Any

import PIL.Image


def _save(img: PIL.Image.Image, *, quality: int, icc: bytes | None = None) -> bytes:
    out = io.BytesIO()
    options: dict[str, Any] = {"quality": quality}
    if icc:
        options["icc_profile"] = icc
    img.save(out, "JPEG", **options)
    return out.getvalue()


def reencode(data: bytes, *, quality: int) -> bytes:
    """An upright RGB JPEG (see export_worker.jpeg_kept) decoded and encoded again, with no
    metadata."""
    with PIL.Image.open(io.BytesIO(data)) as opened:
        return _save(opened.convert("RGB"), quality=quality)


def blur_faces_in(data: bytes, *, quality: int, keep: tuple[str, ...] = ()) -> tuple[bytes, int]:
    """The upright RGB JPEG `data` with the faces found in it blurred, and how many there
    were. A file with no face is returned as it is (byte for byte); one with faces is encoded
    anew at `quality` (keeping its ICC profile only if `keep` says so)."""
    from annotate.services import faces

    with PIL.Image.open(io.BytesIO(data)) as opened:
        img = opened.convert("RGB")
        icc = opened.info.get("icc_profile") if "icc" in keep else None
    boxes = faces.find_faces(img)
    if not boxes:
        return data, 0
    return _save(faces.blur_boxes(img, boxes), quality=quality, icc=icc), len(boxes)
