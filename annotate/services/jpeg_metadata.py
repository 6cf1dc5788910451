"""Metadata in JPEG files: find it segment by segment and drop it without touching the image.

A JPEG is a list of marker segments (FF xx, a 2-byte length, the payload), then the scans:
entropy-coded data in which a 0xFF byte of the data is always followed by 0x00 (and FF D0..D7
are restart markers), so the next real marker is the next FF followed by anything else.
Metadata lives in the application segments APP1..APP15 and in COM: EXIF (with GPS positions,
camera serial numbers, a thumbnail) and XMP in APP1, the ICC profile in APP2, IPTC in
Photoshop's APP13; and in whatever follows the end of the image (a phone's "motion photo"
appends a video, with its sound, after EOI).

strip() copies everything else byte for byte: the frame and scan headers, the tables, the
entropy-coded data. Decoded pixels are unchanged. Two application segments are kept:
- APP0 JFIF, which says how to read the colour channels and the pixel density (without the
  thumbnail it may carry; an APP0 of another kind, such as a JFXX thumbnail, goes);
- APP14 "Adobe", 12 bytes of flags with nothing personal in them, whose transform flag tells a
  decoder whether 3 channels are RGB or YCbCr (and, for 4 channels, CMYK or YCCK). Dropping it
  could change the colours of an RGB-coded file, so it stays. (Exports are 3-channel files.)
jpeg_header() tells the files an export copies as they are (upright, 8-bit, 3 components)
from those it converts.
No Django here: export_worker imports it in its processes.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Collection, Iterator

# The kinds of metadata, each a bit in a mask (compact to send between processes).
KINDS = ("exif", "xmp", "iptc", "icc", "comment", "other", "trailing")
BIT = {kind: 1 << n for n, kind in enumerate(KINDS)}

_APP0, _APP14, _COM, _SOS, _EOI = 0xE0, 0xEE, 0xFE, 0xDA, 0xD9
# Markers that stand alone, with no length: SOI, EOI, TEM, RST0..7.
_STANDALONE = {0xD8, _EOI, 0x01, *range(0xD0, 0xD8)}
# The next marker inside entropy-coded data: an FF not followed by 00 (stuffing) or a restart.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")


class NotJpeg(ValueError):
    """The bytes are not a JPEG this walker can follow to its end."""


# Named tuples made with collections, not dataclasses or typing's: the export's worker
# processes import this, and `dataclasses` alone cost them more to import than the rest.
# (mypy reads any `TYPE_CHECKING` as true.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, NamedTuple

    class Segment(NamedTuple):
        marker: int
        start: int  # offset of its FF
        end: int  # offset just past it

    class Stripped(NamedTuple):
        data: bytes
        mask: int  # the kinds dropped, as BIT flags

    Buffer = bytes | memoryview

else:
    Segment = namedtuple("Segment", ("marker", "start", "end"))
    Stripped = namedtuple("Stripped", ("data", "mask"))


def kind_of(marker: int, payload: bytes) -> str | None:
    """The metadata kind of an APPn or COM segment with this payload start, or None for one
    that is kept always (APP0, Adobe APP14) or that is no metadata at all."""
    if marker == _COM:
        return "comment"
    if not 0xE0 <= marker <= 0xEF:
        return None
    if marker == _APP0:  # JFIF stays; other APP0s (a JFXX thumbnail, AVI1) go
        return None if payload.startswith(b"JFIF\x00") else "other"
    if marker == 0xE1:
        if payload.startswith(b"Exif\x00"):
            return "exif"
        if payload.startswith(b"http://ns.adobe.com/"):
            return "xmp"
        return "other"
    if marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
        return "icc"
    if marker == 0xED and payload.startswith(b"Photoshop 3.0\x00"):
        return "iptc"
    if marker == _APP14 and payload.startswith(b"Adobe"):
        return None
    return "other"


def _walk(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment of the JPEG `data` after its start of image,
    scans included (each as its header with its entropy-coded data), its end of image last.
    Raises NotJpeg when the structure is broken (a length running past the end, no EOI)."""
    if data[:2] != b"\xff\xd8":
        raise NotJpeg("no start of image")
    i, end = 2, len(data)
    while True:
        if i + 2 > end:
            raise NotJpeg("ends before its end-of-image marker")
        if data[i] != 0xFF:
            raise NotJpeg(f"no marker at offset {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == _EOI or marker in _STANDALONE:
            yield marker, i, i + 2
            if marker == _EOI:
                return
            i += 2
            continue
        if i + 4 > end:
            raise NotJpeg("a segment's length runs past the end")
        stop = i + 2 + (data[i + 2] << 8 | data[i + 3])
        if stop > end or stop < i + 4:
            raise NotJpeg("a segment's length runs past the end")
        if marker == _SOS:  # its header, then the entropy-coded data up to the next marker
            following = _NEXT_MARKER.search(data, stop)
            if following is None:
                raise NotJpeg("ends inside its scan data")
            stop = following.start()
        yield marker, i, stop
        i = stop


def segments(data: bytes) -> tuple[list[Segment], int]:
    """The marker segments of the JPEG `data` (scans included, each as its header with its
    entropy-coded data), and the offset just past EOI. Raises NotJpeg when the structure is
    broken (a length running past the end, no EOI)."""
    found = [Segment(0xD8, 0, 2)]
    found.extend(Segment(marker, start, stop) for marker, start, stop in _walk(data))
    return found, found[-1].end


def strip(data: bytes, keep: Collection[str] = ()) -> Stripped:
    """`data` without its metadata segments and trailing bytes, except the kinds in `keep`.
    Returns the same bytes object when there is nothing to drop. Raises NotJpeg."""
    pieces, mask = strip_pieces(data, keep)
    return Stripped(b"".join(pieces) if mask else data, mask)


def strip_pieces(data: bytes, keep: Collection[str] = ()) -> tuple[list[Buffer], int]:
    """What strip() returns, as the pieces that make it up (views into `data`, and a new
    JFIF header if one is cut short) without joining them: the export hashes them and writes
    them as they are, which spares two copies of each file. Just [data] when there is nothing
    to drop.

    The walk of segments() without a Segment per segment: an export strips every file it
    copies, and the walk is most of the cost of stripping one."""
    view = memoryview(data)
    mask = 0
    pieces: list[Buffer] = []
    copied = 0  # data[copied:start of the segment] is still to be copied
    past_end = end = len(data)
    for marker, i, stop in _walk(data):
        if marker == _EOI:
            past_end = stop
        elif marker >= _APP0:  # APPn, JPGn or COM: kind_of() tells the metadata among them
            kind = kind_of(marker, data[i + 4 : i + 40])
            if kind is None and marker == _APP0 and "other" not in keep:
                # JFIF itself stays, but not a thumbnail inside it (a small copy of the
                # picture, possibly from before an edit): its fixed fields are kept, the size
                # set to 0x0.
                if stop - i - 4 > 14:
                    mask |= BIT["other"]
                    pieces.append(view[copied:i])
                    pieces.append(b"\xff\xe0\x00\x10" + data[i + 4 : i + 16] + b"\x00\x00")
                    copied = stop
            elif kind is not None and kind not in keep:
                mask |= BIT[kind]
                pieces.append(view[copied:i])
                copied = stop
    if past_end < end and "trailing" not in keep:
        mask |= BIT["trailing"]
    else:
        past_end = end
    if not mask:
        return [data], 0
    pieces.append(view[copied:past_end])
    return pieces, mask


def header_kinds(data: bytes) -> int:
    """The kinds of metadata in the header of `data` (up to its first scan) as BIT flags: 0
    for what is not a JPEG; as far as it can be followed for a broken one."""
    if data[:2] != b"\xff\xd8":
        return 0
    mask = 0
    i, end = 2, len(data)
    while i + 4 <= end and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == _SOS or marker == _EOI:
            break
        if marker in _STANDALONE:
            i += 2
            continue
        kind = kind_of(marker, data[i + 4 : i + 40])
        if kind is not None:
            mask |= BIT[kind]
        i += 2 + (data[i + 2] << 8 | data[i + 3])
    return mask


def kinds(mask: int) -> list[str]:
    return [kind for kind in KINDS if mask & BIT[kind]]


# --- upright RGB JPEGs (what an export copies as it is) --------------------------------------


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _exif_orientation(segment: bytes) -> int | None:
    """The orientation tag (0x0112) of an APP1 Exif segment's first IFD, if any."""
    tiff = segment[6:]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    offset = int.from_bytes(tiff[4:8], order)
    if offset + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[offset : offset + 2], order)
    for n in range(count):
        entry = tiff[offset + 2 + 12 * n : offset + 14 + 12 * n]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return None


def jpeg_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is an 8-bit, 3-component (RGB) JPEG with no EXIF rotation,
    that is a file that decodes upright to RGB as it is; None otherwise or when unsure.

    Reads the markers up to the scan only: about 20 times cheaper than opening it with
    Pillow, which matters when most of an export is copying such files."""
    if data[:2] != b"\xff\xd8":
        return None
    size = None
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return size
        length = data[i + 2] << 8 | data[i + 3]
        # Only the two segments read are sliced out: the tables between them are skipped.
        if marker in _SOF_MARKERS:
            segment = data[i + 4 : i + 2 + length]
            if len(segment) < 6 or segment[0] != 8 or segment[5] != 3:
                return None
            size = (int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big"))
        elif marker == 0xE1 and data.startswith(b"Exif\x00\x00", i + 4):
            if _exif_orientation(data[i + 4 : i + 2 + length]) not in (None, 1):
                return None
        i += 2 + length
    return None
