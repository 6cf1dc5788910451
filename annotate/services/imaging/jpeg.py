"""A JPEG without its metadata, its compressed picture data kept as it is (no re-encoding),
for the display copy: annotate.services.jpeg_metadata walks the segments and drops APP, COM and
what follows the end of the image (the same walk the export uses); this adds what a display
copy needs besides: a plain 8-bit, 3-component, Huffman-coded picture that every browser shows.
"""

from annotate.services import jpeg_metadata

# Baseline, extended sequential and progressive Huffman-coded frames: what every browser shows.
_PLAIN_FRAMES = {0xC0, 0xC1, 0xC2}
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_without_metadata(data: bytes) -> bytes | None:
    """`data` (a JPEG) without APP and COM segments (JFIF without its thumbnail and Adobe's
    APP14 stay) and without anything after its end, or None when it is not a plain 8-bit,
    3-component, Huffman-coded JPEG this can vouch for (the caller then decodes and re-encodes
    it)."""
    try:
        found, _ = jpeg_metadata.segments(data)
    except jpeg_metadata.NotJpeg:
        return None
    frames = [s for s in found if s.marker in _PLAIN_FRAMES or s.marker in _OTHER_FRAMES]
    if len(frames) != 1 or frames[0].marker in _OTHER_FRAMES:
        return None
    # The frame header: length, precision, height, width, components.
    header = data[frames[0].start + 4 : frames[0].end]
    if len(header) < 6 or header[0] != 8 or header[5] != 3:
        return None
    return jpeg_metadata.strip(data).data
