"""Pure image work for ingest: check, hash, preprocess. No Django here, so that the worker
processes of a bulk import can import this module alone (they start with `spawn`).

The rules of what is accepted are the ingest service's; the caps arrive as `Limits`.
"""

import contextlib
import hashlib
import io
import math
import struct
import tempfile
import warnings
import zipfile
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, cast

import PIL.Image
from PIL import ImageOps, UnidentifiedImageError

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
    short_side: int


@dataclass(frozen=True)
class Inspected:
    """What ingest learned about one accepted file, and the CNN's copy of it."""

    sha256: str
    size_bytes: int
    format: str
    width: int  # after EXIF orientation
    height: int
    phash: str  # 64-bit perceptual hash of the oriented image, 16 hex digits
    preprocessed: bytes  # RGB JPEG, shorter side `Limits.short_side`
    # Set when a worker process has stored the original and the CNN copy already.
    stored_name: str = ""
    preprocessed_name: str = ""


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


def _oriented(img: PIL.Image.Image) -> PIL.Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        # A damaged EXIF block must not cost the image: keep it as stored.
        return img


def to_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """RGB for any mode Pillow decodes: alpha, transparent palettes and colour keys over white,
    CMYK converted, and 16-bit or float greyscale scaled to 8 bits (a plain convert() would
    clip it: a 16-bit PNG would come out white). The one conversion of ingest's CNN copy and
    of the export, so that both show the same picture."""
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


def preprocessed_copy(img: PIL.Image.Image, short_side: int) -> PIL.Image.Image:
    """The CNN's view of a decoded image: oriented, RGB, shorter side `short_side`."""
    img = to_rgb(_oriented(img))
    scale = short_side / min(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # Bilinear, as torchvision's Resize does by default; past twice the size a box reduce
    # goes first (reducing_gap), which keeps the cost of big images down.
    return img.resize(size, PIL.Image.Resampling.BILINEAR, reducing_gap=2.0)


def encode_jpeg(img: PIL.Image.Image, quality: int = 90) -> bytes:
    """A decoded image (RGB) encoded as JPEG."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def perceptual_hash(img: PIL.Image.Image) -> str:
    """imagehash's DCT hash (64 bits) of a 32x32 grey thumbnail. The thumbnail is box-filtered
    here; imagehash would resize with Lanczos, for the same purpose at several times the cost."""
    grey = img.convert("L").resize((32, 32), PIL.Image.Resampling.BOX)
    # Imported here: the export's worker processes import this module for to_rgb() alone and
    # need not load imagehash and numpy at every start.
    import imagehash

    return str(imagehash.phash(grey))


@dataclass(frozen=True)
class Known:
    """The file's SHA-256 is one the project holds already: it was not decoded again."""

    sha256: str


def inspect(
    stream: BinaryIO, limits: Limits, known: frozenset[str] = frozenset()
) -> Inspected | Known:
    """Check one file and prepare what ingest stores with it. `stream` must be seekable.

    Raises ImageRejected for anything that is not a complete image in an accepted format
    within the byte and pixel caps. Pillow only identifies the file (a header read) before
    the pixel cap is checked, so a decompression bomb is refused before it is decoded.
    """
    sha256, size = file_digest(stream, limits.max_bytes)
    if sha256 in known:
        return Known(sha256)
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice that; we refuse instead.
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(stream, formats=ALLOWED_FORMATS) as img:
                pixels = img.width * img.height
                if pixels > limits.max_pixels:
                    raise ImageRejected(
                        f"decompression bomb refused: {img.width}x{img.height} is {pixels} "
                        f"pixels, over the limit of {limits.max_pixels}"
                    )
                stored_size = img.size
                if img.format == "JPEG":
                    # libjpeg reads and entropy-decodes every byte of the file at any scale,
                    # so truncated or damaged data fails the same way; only the inverse DCT
                    # runs at the smallest scale still above the CNN copy's size.
                    img.draft(None, _at_least(img.size, limits.short_side))
                img.load()  # the whole first frame: truncated or damaged data fails here
                fmt = img.format or ""
                small = preprocessed_copy(img, limits.short_side)
                oriented_size = _oriented_size(img, stored_size)
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
        preprocessed=encode_jpeg(small),
    )


def _at_least(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """`size` scaled down so that its shorter side is `short_side` (never up), rounded up."""
    shorter = min(size)
    if shorter <= short_side:
        return size
    return (math.ceil(size[0] * short_side / shorter), math.ceil(size[1] * short_side / shorter))


def _oriented_size(img: PIL.Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    try:
        orientation = img.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        orientation = 1
    # Orientations 5 to 8 turn the image a quarter.
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


# --- where a file's bytes come from -------------------------------------------------------------
# Sources are small picklable values, so that worker processes can open the file themselves.


@dataclass(frozen=True)
class PathSource:
    """A file on the local disk (bulk imports from a folder)."""

    path: str

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


_archives: dict[str, zipfile.ZipFile] = {}


@dataclass(frozen=True)
class ZipMemberSource:
    """One member of a zip archive, read into a spooled temporary file of at most `max_bytes`.

    `archive` is a path (picklable: worker processes open the archive once and keep it) or an
    open ZipFile (the request's own upload, read in the request's process).
    """

    archive: "str | zipfile.ZipFile"
    member: str
    max_bytes: int

    def open(self) -> BinaryIO:
        if isinstance(self.archive, str):
            archive = _archives.get(self.archive)
            if archive is None:
                archive = _archives[self.archive] = zipfile.ZipFile(self.archive)
        else:
            archive = self.archive
        copy = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        try:
            with archive.open(self.member) as member:
                size = 0
                while chunk := member.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageRejected(
                            f"file is larger than the limit of {self.max_bytes} bytes"
                        )
                    copy.write(chunk)
        except ImageRejected:
            copy.close()
            raise
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as e:
            # CRC mismatch, damaged deflate data, encryption, an unknown compression method.
            copy.close()
            raise ImageRejected(f"cannot read this archive member: {e}") from None
        copy.seek(0)
        return copy  # type: ignore[return-value]


@dataclass(frozen=True)
class StreamSource:
    """An already open, seekable stream (an uploaded file). Not for worker processes."""

    stream: BinaryIO

    def open(self) -> AbstractContextManager[BinaryIO]:
        # Lent for a `with` block without being closed: the upload handler owns the stream.
        self.stream.seek(0)
        return contextlib.nullcontext(self.stream)


def archives_close() -> None:
    """Close the archives ZipMemberSource opened by path in this process."""
    while _archives:
        _archives.popitem()[1].close()


Source = PathSource | ZipMemberSource | StreamSource


_known: frozenset[str] = frozenset()


def known_set(sha256s: frozenset[str]) -> None:
    """Worker process initializer: the SHA-256s the project holds when the import starts."""
    global _known
    _known = sha256s


def inspect_source(
    source: Source, limits: Limits, known: frozenset[str] | None = None
) -> Inspected | Known | str:
    """Open and inspect one source: the Inspected, Known, or the reason it was rejected.

    The entry point of worker processes; it returns the reason rather than raising it, so
    that nothing but plain values crosses the process boundary.
    """
    try:
        with source.open() as stream:
            return inspect(stream, limits, _known if known is None else known)
    except ImageRejected as error:
        return str(error)
    except OSError as error:
        return f"cannot read the file: {error.strerror or error}"
