"""Checking one file and making what ingest stores with it: byte cap, identify, shape caps on
the header, full decode, SHA-256, perceptual hash, the CNN's copy and the display copy.

The rules of what is accepted are the ingest service's; the caps arrive as `Limits`.
"""

import functools
import hashlib
import io
import math
import struct
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

import PIL.Image
from PIL import UnidentifiedImageError

from annotate.services.imaging import convert
from annotate.services.imaging.jpeg import jpeg_without_metadata

# Pillow plugins we let open a file at all: fewer parsers, less attack surface (EPS, for one,
# would start Ghostscript).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
CHUNK = 1024 * 1024


class ImageRejected(Exception):
    """The file is not an image we accept; the message says why and is safe to show."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    short_side: int  # of the CNN copy
    max_aspect_ratio: float = 50.0  # longer side over shorter side
    display_max_side: int = 1024  # longer side of the display copy


@dataclass(frozen=True)
class Inspected:
    """What ingest learned about one accepted file, and the copies made of it."""

    sha256: str
    size_bytes: int
    format: str
    width: int  # after EXIF orientation
    height: int
    phash: str  # 64-bit perceptual hash of the oriented image, 16 hex digits
    preprocessed: bytes  # RGB JPEG, shorter side `Limits.short_side`
    display: bytes = b""  # RGB JPEG, upright, no metadata, longer side capped
    # The file has nothing to drop or change (an upright RGB JPEG within the display size,
    # without metadata): it is its own display copy, and `display` is empty.
    display_is_original: bool = False
    # Set when a worker process has stored the original and the copies already.
    stored_name: str = ""
    preprocessed_name: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class Known:
    """The file's SHA-256 is one the project holds already: it was not decoded again."""

    sha256: str


def file_digest(stream: BinaryIO, max_bytes: int) -> tuple[str, int]:
    """SHA-256 and size of `stream` from its start, refusing more than `max_bytes`."""
    digest = hashlib.sha256()
    size = 0
    stream.seek(0)
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ImageRejected(f"file is larger than the limit of {max_bytes} bytes")
        digest.update(chunk)
    if size == 0:
        raise ImageRejected("empty file")
    return digest.hexdigest(), size


def shape_check(width: int, height: int, limits: Limits) -> None:
    """Refuse, from the header's size alone, what would cost too much to decode or resize: too
    many pixels (a decompression bomb) or too thin a shape (a 12000x1 strip scaled to the CNN
    copy's shorter side would be 1.9 million pixels wide)."""
    if width < 1 or height < 1:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    pixels = width * height
    if pixels > limits.max_pixels:
        raise ImageRejected(
            f"decompression bomb refused: {width}x{height} is {pixels} pixels, over the limit "
            f"of {limits.max_pixels}"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise ImageRejected(
            f"aspect ratio {width}x{height} is {ratio:.0f}:1, over the limit of "
            f"{limits.max_aspect_ratio:g}:1"
        )


def perceptual_hash(img: PIL.Image.Image) -> str:
    """The DCT hash (64 bits, 16 hex digits) of imagehash.phash: the 8x8 lowest frequencies of
    the 2-D DCT-II of a 32x32 grey thumbnail, each bit whether its coefficient is above their
    median. The thumbnail is box-filtered here (imagehash would use Lanczos, for the same
    purpose at several times the cost), and the DCT is two small matrix products, so that
    neither imagehash nor SciPy's FFT (a third of a second to import in every worker process
    of an import) is loaded. Tests check that the hashes equal imagehash.phash's."""
    import numpy  # here: the export's worker processes import this package and never hash

    grey = img.convert("L").resize((_THUMB_SIDE, _THUMB_SIDE), PIL.Image.Resampling.BOX)
    pixels = numpy.asarray(grey, dtype=numpy.float64)
    rows = _dct_rows(numpy)
    # Rounded: where the FFT gives exact zeros (a flat image's AC coefficients) the products
    # leave rounding noise of 1e-13, which would decide the bits.
    low = numpy.round(rows @ pixels @ rows.T, 6).flatten().tolist()
    # The median as numpy.median takes it (the mean of the middle two), without the import of
    # numpy.ma that numpy.median makes on its first call.
    ordered = sorted(low)
    median = (ordered[len(low) // 2 - 1] + ordered[len(low) // 2]) / 2
    return f"{int(''.join('1' if value > median else '0' for value in low), 2):016x}"


_HASH_SIDE, _THUMB_SIDE = 8, 32


@functools.cache
def _dct_rows(numpy: Any) -> Any:
    """The first _HASH_SIDE rows of the unnormalised DCT-II matrix (scipy.fftpack.dct's
    default): 2 cos(pi k (2n + 1) / 2N)."""
    k = numpy.arange(_HASH_SIDE)[:, None]
    n = numpy.arange(_THUMB_SIDE)[None, :]
    return 2.0 * numpy.cos(numpy.pi * k * (2 * n + 1) / (2 * _THUMB_SIDE))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _display_as_is(img: PIL.Image.Image, limits: Limits) -> bool:
    """Whether the file itself, its metadata dropped, can be the display copy: an RGB JPEG
    that is upright and small enough already (the commonest upload). Header reads only."""
    return (
        img.format == "JPEG"
        and img.mode == "RGB"
        and max(img.size) <= limits.display_max_side
        and convert.orientation(img) == 1
    )


def _draft_size(size: tuple[int, int], limits: Limits, for_display: bool) -> tuple[int, int]:
    """The least size a JPEG must be decoded at for the copies made from it: the CNN copy's
    shorter side, and (`for_display`) the display copy's longer side, never above `size`."""
    shorter, longer = min(size), max(size)
    scale = min(1.0, limits.short_side / shorter)
    if for_display:
        scale = max(scale, min(1.0, limits.display_max_side / longer))
    return (math.ceil(size[0] * scale), math.ceil(size[1] * scale))


def inspect(
    stream: BinaryIO, limits: Limits, known: frozenset[str] = frozenset()
) -> Inspected | Known:
    """Check one file and prepare what ingest stores with it. `stream` must be seekable.

    Raises ImageRejected for anything that is not a complete image in an accepted format
    within the byte, pixel and aspect-ratio caps. Pillow only identifies the file (a header
    read) before the shape is checked, so a decompression bomb or a thin strip is refused
    before anything is decoded.
    """
    # The whole file, read once (within the byte cap): hashed, then decoded from memory. Read
    # through the open file, Pillow's decoder asked for it in some forty pieces.
    stream.seek(0)
    data = stream.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"file is larger than the limit of {limits.max_bytes} bytes")
    if not data:
        raise ImageRejected("empty file")
    sha256, size = hashlib.sha256(data).hexdigest(), len(data)
    if sha256 in known:
        return Known(sha256)
    display, display_is_original = b"", False
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice that; we refuse instead.
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                shape_check(img.width, img.height, limits)
                oriented_size = convert.upright_size(img)
                if _display_as_is(img, limits):
                    display = jpeg_without_metadata(data) or b""
                    display_is_original = display == data
                if img.format == "JPEG":
                    # libjpeg reads and entropy-decodes every byte of the file at any scale,
                    # so truncated or damaged data fails the same way; only the inverse DCT
                    # runs at the smallest scale the copies allow.
                    img.draft(None, _draft_size(img.size, limits, for_display=not display))
                img.load()  # the whole first frame: truncated or damaged data fails here
                fmt = img.format or ""
                small = convert.preprocessed_copy(img, limits.short_side)
                if not display:
                    display = convert.encode_jpeg(
                        convert.display_copy(img, limits.display_max_side)
                    )
    except ImageRejected:
        raise
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"decompression bomb refused: {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected(
            "not an image in an accepted format (JPEG, PNG, WebP, GIF, BMP, TIFF)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as error:
        raise ImageRejected(f"damaged or truncated image: {error}") from None
    return Inspected(
        sha256=sha256,
        size_bytes=size,
        format=fmt,
        width=oriented_size[0],
        height=oriented_size[1],
        phash=perceptual_hash(small),
        preprocessed=convert.encode_jpeg(small),
        display=b"" if display_is_original else display,
        display_is_original=display_is_original,
    )


def display_bytes(stream: BinaryIO, limits: Limits) -> bytes:
    """The display copy of a stored original (for images ingested before display copies):
    what inspect() makes, without the other checks and copies. Raises ImageRejected when the
    file cannot be decoded."""
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(stream, formats=ALLOWED_FORMATS) as img:
                if img.width * img.height > limits.max_pixels:
                    raise ImageRejected(f"{img.width}x{img.height} is over the pixel limit")
                if _display_as_is(img, limits):
                    position = stream.tell()
                    stream.seek(0)
                    stripped = jpeg_without_metadata(stream.read())
                    if stripped is not None:
                        return stripped
                    stream.seek(position)
                if img.format == "JPEG":
                    img.draft(None, _draft_size(img.size, limits, for_display=True))
                img.load()
                return convert.encode_jpeg(convert.display_copy(img, limits.display_max_side))
    except ImageRejected:
        raise
    except (
        PIL.Image.DecompressionBombError,
        PIL.Image.DecompressionBombWarning,
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        MemoryError,
    ) as error:
        raise ImageRejected(f"cannot make a display copy: {error}") from None
