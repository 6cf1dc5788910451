"""A JPEG without its metadata, its compressed picture data kept as it is (no re-encoding).

A JPEG file is a series of marker segments (JPEG standard, ITU-T T.81 annex B): the tables and
frame header the decoder needs, application segments (APP0 to APP15: JFIF, EXIF, XMP, ICC
profiles, maker notes, thumbnails) and comments (COM), then the entropy-coded scans. Dropping
the APP and COM segments leaves the pixels exactly as they were. Kept: the JFIF header without
its thumbnail, and Adobe's APP14, which says how the three components are coded (YCbCr or
RGB) and so is part of the picture, not metadata. Anything after the end-of-image marker
(phones append depth maps and second images there, each with its own EXIF) is dropped too.
"""

import re

SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
APP0, APP14, APP15 = 0xE0, 0xEE, 0xEF
# Baseline, extended sequential and progressive Huffman-coded frames: what every browser shows.
_PLAIN_FRAMES = {0xC0, 0xC1, 0xC2}
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers that stand alone, without a length: restart markers and TEM.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _jfif_without_thumbnail(payload: bytes) -> bytes | None:
    """A JFIF APP0 payload cut to its fixed fields, the thumbnail size set to 0x0; None for
    any other APP0 (JFXX thumbnails among them)."""
    if not payload.startswith(b"JFIF\x00") or len(payload) < 14:
        return None
    return payload[:12] + b"\x00\x00"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def jpeg_without_metadata(data: bytes) -> bytes | None:
    """`data` (a JPEG) without APP and COM segments and without anything after its end, or
    None when it is not a plain 8-bit, 3-component, Huffman-coded JPEG this can vouch for
    (the caller then decodes and re-encodes it)."""
    if data[:2] != b"\xff\xd8":
        return None
    out = [b"\xff\xd8"]
    i, end = 2, len(data)
    frame_seen = False
    while i + 2 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            out.append(data[i : i + 2])
            i += 2
            continue
        if marker == EOI:
            out.append(b"\xff\xd9")
            return b"".join(out) if frame_seen else None
        if i + 4 > end:
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > end:
            return None
        payload = data[i + 4 : i + 2 + length]
        if marker in _OTHER_FRAMES:
            return None
        if marker in _PLAIN_FRAMES:
            # precision, height, width, components
            if len(payload) < 6 or payload[0] != 8 or payload[5] != 3:
                return None
            frame_seen = True
        if marker == APP0:
            jfif = _jfif_without_thumbnail(payload)
            if jfif is not None:
                out.append(_segment(APP0, jfif))
        elif marker == APP14:
            if payload.startswith(b"Adobe"):
                out.append(data[i : i + 2 + length])
        elif not (APP0 < marker <= APP15 or marker == COM):
            out.append(data[i : i + 2 + length])
        i += 2 + length
        if marker == SOS:
            scan_end = _scan_end(data, i)
            if scan_end is None:
                return None
            out.append(data[i:scan_end])
            i = scan_end
    return None


# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a restart marker or, before
# a marker, more 0xFF fill bytes; the first 0xFF followed by anything else is the next marker.
_MARKER_AFTER_SCAN = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def _scan_end(data: bytes, start: int) -> int | None:
    """Where the entropy-coded data from `start` ends: the next marker that is neither a
    stuffed 0xFF00 nor a restart marker."""
    found = _MARKER_AFTER_SCAN.search(data, start)
    return None if found is None else found.start()
