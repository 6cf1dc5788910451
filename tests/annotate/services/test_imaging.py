"""The one conversion (annotate.services.imaging) on awkward inputs: each copy it makes (the
CNN's, the display copy, the export's) compared with the pixels expected, and the bounds on
what a file may cost."""

import io
import json
import subprocess
import sys
import textwrap

import PIL.Image
import pytest

from annotate.services import export_worker, imaging

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
CYAN, YELLOW = (0, 255, 255), (255, 255, 0)
LIMITS = imaging.Limits(
    max_bytes=10 * 1024 * 1024,
    max_pixels=64_000_000,
    short_side=16,
    max_aspect_ratio=50,
    display_max_side=1024,
)


def encoded(img: PIL.Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def halves(size, mode, left, right, *, vertical=False) -> PIL.Image.Image:
    """An image of two flat halves: left and right (or top and bottom)."""
    img = PIL.Image.new(mode, size, left)
    w, h = size
    img.paste(right, (0, h // 2, w, h) if vertical else (w // 2, 0, w, h))
    return img


def copies(data: bytes) -> dict[str, PIL.Image.Image]:
    """The three copies made of `data`: the CNN's and the display copy (ingest), the export's."""
    inspected = imaging.inspect(io.BytesIO(data), LIMITS)
    assert isinstance(inspected, imaging.Inspected)
    made = {
        "cnn": inspected.preprocessed,
        "display": inspected.display,
        "export": export_worker.jpeg_for_export(data, resize=None, quality=95),
    }
    out: dict[str, PIL.Image.Image] = {}
    for name, jpeg in made.items():
        img = PIL.Image.open(io.BytesIO(jpeg))
        img.load()
        assert (img.format, img.mode) == ("JPEG", "RGB"), name
        out[name] = img
    return out


def near(actual, expected, tolerance=12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def assert_halves(images: dict[str, PIL.Image.Image], first, second, *, vertical=False):
    """Every copy shows `first` in its left (top) half and `second` in the other."""
    for name, img in images.items():
        w, h = img.size
        a, b = (
            ((w // 2, h // 4), (w // 2, 3 * h // 4))
            if vertical
            else ((w // 4, h // 2), (3 * w // 4, h // 2))
        )
        assert near(img.getpixel(a), first), (name, img.getpixel(a), first)
        assert near(img.getpixel(b), second), (name, img.getpixel(b), second)


def test_16_bit_grey_is_scaled_not_clipped():
    grey = halves((64, 32), "I;16", 1000, 60000)
    data = encoded(grey, "PNG")
    with PIL.Image.open(io.BytesIO(data)) as opened:
        assert opened.mode.startswith("I")
    # The lowest value becomes black, the highest white; convert("RGB") would clip both white.
    assert_halves(copies(data), BLACK, WHITE)


def test_cmyk_jpeg_is_converted_to_rgb():
    data = encoded(halves((64, 32), "CMYK", (255, 0, 0, 0), (0, 0, 255, 0)), "JPEG", quality=95)
    with PIL.Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "CMYK"
    made = copies(data)
    assert_halves(made, CYAN, YELLOW)
    assert made["display"].size == (64, 32)


def test_a_palette_with_transparency_is_white_where_transparent():
    img = PIL.Image.new("P", (64, 32), 0)
    img.putpalette([*RED, *BLUE] + [0] * 762)
    img.paste(1, (32, 0, 64, 32))
    data = encoded(img, "PNG", transparency=1)
    with PIL.Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "P" and "transparency" in opened.info
    assert_halves(copies(data), RED, WHITE)


def test_an_exif_rotated_jpeg_is_made_upright():
    stored = halves((64, 32), "RGB", RED, BLUE)  # stored on its side: red left, blue right
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: the left half on top
    data = encoded(stored, "JPEG", quality=95, exif=exif)
    inspected = imaging.inspect(io.BytesIO(data), LIMITS)
    assert isinstance(inspected, imaging.Inspected)
    assert (inspected.width, inspected.height) == (32, 64)
    made = copies(data)
    assert made["display"].size == (32, 64) and made["export"].size == (32, 64)
    assert made["cnn"].size == (16, 32)
    assert_halves(made, RED, BLUE, vertical=True)
    assert not made["display"].getexif()  # and the orientation tag is gone with the rest


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_an_animation_gives_its_first_frame(fmt):
    first, second = halves((64, 32), "RGB", RED, BLUE), PIL.Image.new("RGB", (64, 32), YELLOW)
    data = encoded(first, fmt, save_all=True, append_images=[second], duration=100, loop=0)
    with PIL.Image.open(io.BytesIO(data)) as opened:
        assert getattr(opened, "n_frames", 1) == 2
    assert_halves(copies(data), RED, BLUE)


def test_a_thin_image_within_the_aspect_cap_keeps_its_shape():
    data = encoded(halves((2, 100), "RGB", RED, BLUE, vertical=True), "PNG")
    made = copies(data)
    assert made["cnn"].size == (16, 800)
    assert made["display"].size == (2, 100)
    # Only the middle column is compared: JPEG's chroma halving blurs a 2-pixel-wide image.
    for name, img in made.items():
        x = img.width // 2
        assert near(img.getpixel((x, img.height // 4)), RED, 40), name
        assert near(img.getpixel((x, 3 * img.height // 4)), BLUE, 40), name


def test_a_large_image_is_displayed_at_the_capped_size_without_metadata():
    big = halves((2000, 1000), "RGB", RED, BLUE)
    exif = PIL.Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 0.0)}  # GPSInfo: a latitude
    exif[0xA431] = "SERIAL-1234"  # BodySerialNumber
    data = encoded(
        big, "JPEG", quality=90, exif=exif, icc_profile=b"fake-icc" * 8, comment=b"SERIAL-1234"
    )
    made = copies(data)
    assert made["display"].size == (1024, 512)
    assert_halves({"display": made["display"]}, RED, BLUE)
    inspected = imaging.inspect(io.BytesIO(data), LIMITS)
    assert isinstance(inspected, imaging.Inspected)
    assert_no_metadata(inspected.display)


def assert_no_metadata(jpeg: bytes) -> None:
    for marker in (b"Exif\x00\x00", b"ICC_PROFILE", b"http://ns.adobe.com/xap/", b"SERIAL-1234"):
        assert marker not in jpeg, marker
    with PIL.Image.open(io.BytesIO(jpeg)) as img:
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(img.info), img.info


def test_a_small_upright_jpeg_is_displayed_as_its_own_picture_data_without_metadata():
    picture = PIL.Image.effect_noise((320, 240), 60).convert("RGB")
    exif = PIL.Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 0.0)}
    exif[0xA431] = "SERIAL-1234"
    data = encoded(
        picture,
        "JPEG",
        quality=85,
        exif=exif,
        icc_profile=b"fake-icc" * 8,
        comment=b"SERIAL-1234",
        xmp=b"<x:xmpmeta xmlns:x='http://ns.adobe.com/xap/1.0/'/>",
    )
    inspected = imaging.inspect(io.BytesIO(data), LIMITS)
    assert isinstance(inspected, imaging.Inspected)
    assert_no_metadata(inspected.display)
    # Not re-encoded: the same pixels, bit for bit, in fewer bytes.
    assert len(inspected.display) < len(data)
    with (
        PIL.Image.open(io.BytesIO(data)) as original,
        PIL.Image.open(io.BytesIO(inspected.display)) as shown,
    ):
        assert original.tobytes() == shown.tobytes()


def test_jpeg_without_metadata_drops_what_follows_the_end_of_the_image():
    data = encoded(PIL.Image.new("RGB", (16, 16), RED), "JPEG")
    trailer = encoded(PIL.Image.new("RGB", (8, 8), BLUE), "JPEG", exif=PIL.Image.Exif())
    stripped = imaging.jpeg_without_metadata(data + trailer)
    assert stripped is not None and stripped.endswith(b"\xff\xd9")
    assert stripped.count(b"\xff\xd8") == 1
    # What it cannot vouch for is left to a re-encode: truncated data, a grey JPEG.
    assert imaging.jpeg_without_metadata(data[:-40]) is None
    assert imaging.jpeg_without_metadata(encoded(PIL.Image.new("L", (8, 8)), "JPEG")) is None


@pytest.mark.parametrize(
    ("size", "refused"),
    [((51, 1), True), ((1, 51), True), ((12000, 1), True), ((50, 1), False), ((1, 50), False)],
)
def test_the_aspect_ratio_cap_is_checked_on_the_header(size, refused):
    data = encoded(PIL.Image.new("RGB", size, RED), "PNG")
    if refused:
        with pytest.raises(imaging.ImageRejected, match="aspect ratio .* over the limit of 50:1"):
            imaging.inspect(io.BytesIO(data), LIMITS)
    else:
        assert isinstance(imaging.inspect(io.BytesIO(data), LIMITS), imaging.Inspected)


_MEMORY_PROBE = textwrap.dedent(
    """
    import io, json, resource, sys
    import PIL.Image
    from annotate.services import imaging

    data = sys.stdin.buffer.read()
    limits = imaging.Limits(max_bytes=1 << 26, max_pixels=64_000_000, short_side=160)
    imaging.inspect_source(imaging.StreamSource(io.BytesIO(b"warm up")), limits)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reason = imaging.inspect_source(imaging.StreamSource(io.BytesIO(data)), limits)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"reason": reason, "grew_kib": after - before, "size": len(data)}))
    """
)


@pytest.mark.parametrize("size", [(12000, 1), (30000, 1)])
def test_a_tiny_thin_png_costs_no_memory(size):
    # A 12000x1 PNG of about a hundred bytes once grew the process by 1.4 GB: its CNN copy,
    # shorter side 160, would be 1.9 million pixels wide. The peak memory of a fresh process
    # (ru_maxrss, which only grows) is read before and after.
    data = encoded(PIL.Image.new("RGB", size, RED), "PNG", optimize=True)
    assert len(data) < 200
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], input=data, capture_output=True, check=True
    )
    measured = json.loads(run.stdout)
    assert "aspect ratio" in measured["reason"]
    assert measured["grew_kib"] < 20 * 1024, measured


def test_the_perceptual_hash_is_imagehash_phash_of_the_box_thumbnail():
    # Ingest computes the DCT itself (no SciPy to import); stored hashes were imagehash's, and
    # near duplicates are found by comparing new hashes with those.
    import imagehash

    from tests.ingest_files import noise_image

    images: list[PIL.Image.Image] = [
        PIL.Image.open(io.BytesIO(noise_image(seed, size=(90, 60)))) for seed in range(60)
    ]
    images += [PIL.Image.new("RGB", (40, 30), (seed, 90, 200 - seed)) for seed in range(5)]
    for box in [(0, 0, 32, 64), (0, 0, 64, 32), (16, 16, 48, 48)]:  # symmetric: zeros in the DCT
        shape = PIL.Image.new("RGB", (64, 64), BLACK)
        shape.paste(WHITE, box)
        images.append(shape)
    for img in images:
        thumbnail = img.convert("L").resize((32, 32), PIL.Image.Resampling.BOX)
        assert imaging.perceptual_hash(img) == str(imagehash.phash(thumbnail))
