"""The JPEG segment walker that strips metadata from exported files (jpeg_metadata)."""

import io

import numpy as np
import PIL.Image
import pytest
from PIL import ExifTags, ImageCms

from annotate.services import jpeg_metadata
from annotate.services.jpeg_metadata import BIT, NotJpeg, strip

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def picture(size=(64, 48), seed=0) -> PIL.Image.Image:
    """Smooth colours plus noise: every decoder difference would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1) % 256
    noise = rng.integers(0, 40, (*base.shape,))
    return PIL.Image.fromarray(((base + noise) % 256).astype(np.uint8))


def gps_exif() -> bytes:
    exif = PIL.Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.BodySerialNumber] = "SN-123456"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    return exif.tobytes()


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def jpeg_with_everything(**save) -> bytes:
    """A JPEG with EXIF (GPS, serial number), XMP, an ICC profile, a comment, IPTC, an unknown
    APP segment, and a video-like trailer after its end."""
    out = io.BytesIO()
    picture().save(
        out,
        "JPEG",
        quality=90,
        exif=gps_exif(),
        xmp=XMP,
        icc_profile=srgb_icc(),
        comment=b"taken at home",
        **save,
    )
    iptc = segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x05\x1c\x02x\x00\x01A")
    return after_soi(out.getvalue(), iptc, segment(0xE5, b"Vendor\x00secret")) + b"ftypmp42 video"


def pixels(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def scan_data(data: bytes) -> bytes:
    """From the first start-of-scan to the end of the image: what must be kept byte for byte."""
    found, past_end = jpeg_metadata.segments(data)
    first_scan = next(s for s in found if s.marker == 0xDA)
    return data[first_scan.start : past_end]


@pytest.mark.parametrize(
    "save",
    [{}, {"progressive": True}, {"restart_marker_blocks": 2}, {"subsampling": 0}],
    ids=["baseline", "progressive", "restart-markers", "4:4:4"],
)
def test_strip_drops_every_kind_and_keeps_the_image_data_byte_for_byte(save):
    data = jpeg_with_everything(**save)
    with PIL.Image.open(io.BytesIO(data)) as img:
        assert img.getexif() and "icc_profile" in img.info and "xmp" in img.info
    stripped = strip(data)
    assert set(jpeg_metadata.kinds(stripped.mask)) == {
        "exif",
        "xmp",
        "icc",
        "comment",
        "iptc",
        "other",
        "trailing",
    }
    out = stripped.data
    for marker in (b"Exif", b"http://ns.adobe.com", b"ICC_PROFILE", b"Photoshop", b"SN-123456"):
        assert marker not in out
    assert b"taken at home" not in out and b"ftypmp42" not in out and b"Vendor" not in out
    assert out.endswith(b"\xff\xd9")
    assert scan_data(out) == scan_data(data)
    assert np.array_equal(pixels(out), pixels(data))
    with PIL.Image.open(io.BytesIO(out)) as img:
        assert not img.getexif() and "icc_profile" not in img.info and "jfif" in img.info
    # Stripping again finds nothing and returns the very same bytes.
    again = strip(out)
    assert again.mask == 0 and again.data is out


def test_kinds_named_in_keep_stay():
    data = jpeg_with_everything()
    kept = strip(data, keep=("icc",))
    assert not kept.mask & BIT["icc"] and kept.mask & BIT["exif"]
    with PIL.Image.open(io.BytesIO(kept.data)) as img:
        assert img.info["icc_profile"] == srgb_icc() and not img.getexif()
    everything = strip(data, keep=jpeg_metadata.KINDS)
    assert everything.mask == 0 and everything.data is data


def test_adobe_app14_and_jfif_app0_stay():
    # Pillow writes an Adobe segment into CMYK JPEGs; its transform flag says how to read the
    # channels, so it is kept.
    out = io.BytesIO()
    PIL.Image.new("CMYK", (16, 16), (10, 200, 30, 0)).save(out, "JPEG", exif=gps_exif())
    data = out.getvalue()
    stripped = strip(data)
    assert stripped.mask == BIT["exif"]
    assert b"Adobe" in stripped.data
    assert np.array_equal(pixels(stripped.data), pixels(data))
    jfif = io.BytesIO()
    picture().save(jfif, "JPEG")
    plain = jfif.getvalue()
    assert plain.startswith(b"\xff\xd8\xff\xe0\x00\x10JFIF") and strip(plain).data is plain


def test_a_jfxx_thumbnail_goes_and_jfif_stays():
    out = io.BytesIO()
    picture().save(out, "JPEG")
    data = out.getvalue()
    jfxx = segment(0xE0, b"JFXX\x00\x10" + b"\xff\xd8thumbnail of the uncropped photo")
    stripped = strip(data[:20] + jfxx + data[20:])  # after the JFIF segment (20 bytes)
    assert stripped.mask == BIT["other"] and stripped.data == data


def test_fill_bytes_before_a_marker_are_followed():
    out = io.BytesIO()
    picture().save(out, "JPEG")
    data = out.getvalue()
    # Fill bytes (FF FF ...) may precede any marker.
    filled = data[:2] + b"\xff\xff" + after_soi(data, segment(0xE1, b"Exif\x00\x00junk"))[2:]
    stripped = strip(filled)
    assert stripped.mask == BIT["exif"] and np.array_equal(pixels(stripped.data), pixels(data))


@pytest.mark.parametrize(
    "broken",
    [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe1\xff\xff",  # a length past the end
        b"\xff\xd8\xff\xe1\x00\x01",  # a length shorter than itself
    ],
)
def test_what_is_not_a_whole_jpeg_is_refused(broken):
    with pytest.raises(NotJpeg):
        strip(broken)


def test_a_truncated_jpeg_is_refused():
    data = jpeg_with_everything()
    end = data.index(b"\xff\xd9", len(data) - 40)
    with pytest.raises(NotJpeg):
        strip(data[: end - 100])
