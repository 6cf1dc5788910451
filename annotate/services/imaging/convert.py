"""The one conversion of a decoded image into what is stored or shipped: upright, RGB, resized,
encoded without metadata. Ingest's CNN copy, the volunteers' display copy and the export all
come from here, so that they show the same picture.
"""

import io
import struct
import warnings
from typing import cast

import PIL.Image
from PIL import ImageOps

# What a damaged EXIF block raises when Pillow reads it.
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error)
_ORIENTATION = 0x0112


def orientation(img: PIL.Image.Image) -> int:
    """The EXIF orientation (1 to 8; 1 when absent or unreadable). Read from the header: no
    pixels are decoded."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except _EXIF_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(img: PIL.Image.Image) -> tuple[int, int]:
    """(width, height) as the image is shown: orientations 5 to 8 turn it a quarter."""
    return (img.height, img.width) if orientation(img) in (5, 6, 7, 8) else img.size


def upright(img: PIL.Image.Image) -> PIL.Image.Image:
    """The image with its EXIF orientation applied (the first frame of an animation): the
    image itself when it is upright already (Pillow would copy its pixels)."""
    if orientation(img) == 1:
        return img
    try:
        return ImageOps.exif_transpose(img)
    except _EXIF_ERRORS:
        # A damaged EXIF block must not cost the image: keep it as stored.
        return img


def to_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """RGB for any mode Pillow decodes: alpha, transparent palettes and colour keys over white,
    CMYK converted, and 16-bit or float greyscale scaled to 8 bits (a plain convert() would
    clip it: a 16-bit PNG would come out white)."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        img = img.convert("I")
    if img.mode in ("I", "F"):
        # One band: (min, max) numbers, not the per-band pairs of multi-band modes.
        low, high = cast(tuple[float, float], img.getextrema())
        scale = 255.0 / (high - low) if high > low else 0.0
        img = img.point(lambda value: (value - low) * scale).convert("L")
    elif "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = PIL.Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def upright_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """A decoded image as every copy starts: upright, then RGB."""
    return to_rgb(upright(img))


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def preprocessed_copy(img: PIL.Image.Image, short_side: int) -> PIL.Image.Image:
    """The CNN's view of a decoded image: upright, RGB, shorter side `short_side` (scaled up
    or down; the aspect-ratio cap of ingest bounds how large that makes a thin image)."""
    img = upright_rgb(img)
    # Bilinear, as torchvision's Resize does by default; past twice the size a box reduce
    # goes first (reducing_gap), which keeps the cost of big images down.
    size = _scaled(img.size, short_side / min(img.size))
    return img.resize(size, PIL.Image.Resampling.BILINEAR, reducing_gap=2.0)


def display_copy(img: PIL.Image.Image, max_side: int) -> PIL.Image.Image:
    """What volunteers and reviewers see: upright, RGB, the longer side at most `max_side`
    (never scaled up)."""
    img = upright_rgb(img)
    if max(img.size) <= max_side:
        return img
    size = _scaled(img.size, max_side / max(img.size))
    return img.resize(size, PIL.Image.Resampling.LANCZOS, reducing_gap=2.0)


def export_copy(img: PIL.Image.Image, short_side: int | None) -> PIL.Image.Image:
    """What an export ships when it must convert: upright, RGB, the shorter side at most
    `short_side` (never scaled up; None: as stored)."""
    img = upright_rgb(img)
    if short_side is None or min(img.size) <= short_side:
        return img
    size = _scaled(img.size, short_side / min(img.size))
    return img.resize(size, PIL.Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode_jpeg(img: PIL.Image.Image, quality: int = 90) -> bytes:
    """An RGB image as a JPEG with no metadata. Each kind is named empty: Pillow would
    otherwise copy the decoded file's comment (im.info) into the new one."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality, comment=b"", exif=b"", icc_profile=None, xmp=b"")
    return buffer.getvalue()


def jpeg_upright_rgb(data: bytes, *, short_side: int | None, quality: int) -> bytes:
    """A stored image file's bytes converted as the export does: decoded (first frame),
    export_copy(), encoded without metadata. Raises what Pillow raises for a file it cannot
    decode, and DecompressionBombWarning as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        with PIL.Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return encode_jpeg(export_copy(opened, short_side), quality)
