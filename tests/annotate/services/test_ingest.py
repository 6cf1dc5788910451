"""Ingest: validation, zip rules, duplicates, near duplicates, gold, all-or-nothing storage."""

import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotate import selectors
from annotate.models import Decision, Image, ImageHashBand
from annotate.services import imaging, ingest
from annotate.services.ingest import store as ingest_store
from tests.ingest_files import noise_image, png_header_only, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(media: Path) -> list[str]:
    if not media.exists():
        return []
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def upload(project, *files, **kwargs) -> ingest.UploadResult:
    return ingest.images_upload(
        project=project, files=[(name, io.BytesIO(data)) for name, data in files], **kwargs
    )


def assert_nothing_stored(project, media):
    assert Image.objects.filter(project=project).count() == 0
    assert ImageHashBand.objects.count() == 0
    assert stored_files(media) == []


# --- what is refused --------------------------------------------------------------------------


def truncated_png() -> bytes:
    data = noise_image(1, size=(300, 200), fmt="PNG")
    return data[: len(data) // 2]


def truncated_big_jpeg() -> bytes:
    # Big enough that the JPEG is decoded at a reduced DCT scale: truncation must still fail.
    data = noise_image(1, size=(1200, 900), quality=95)
    return data[: len(data) * 2 // 3]


def ico_file() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16), (1, 2, 3)).save(buffer, "ICO")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("cat.jpg", b"this is a text file, not a JPEG\n", "not an image in an accepted format"),
        ("empty.jpg", b"", "empty file"),
        ("cut.png", truncated_png(), "damaged or truncated image"),
        ("cut.jpg", truncated_big_jpeg(), "damaged or truncated image"),
        ("bomb.png", png_header_only(30000, 30000), "decompression bomb refused"),
        ("icon.ico", ico_file(), "not an image in an accepted format"),
    ],
)
def test_bad_files_are_rejected_and_nothing_is_stored(project, media, name, data, reason):
    result = upload(project, (name, data))
    assert result.created == [] and result.duplicates == 0
    assert len(result.rejected) == 1
    assert result.rejected[0]["name"] == name
    assert reason in result.rejected[0]["reason"]
    assert_nothing_stored(project, media)


def test_pixel_cap_refuses_below_pillows_own_limit(project, media, settings):
    settings.IMAGE_MAX_PIXELS = 10_000
    result = upload(project, ("big.png", png_header_only(200, 100)))
    assert result.rejected == [
        {
            "name": "big.png",
            "reason": (
                "decompression bomb refused: 200x100 is 20000 pixels, over the limit of 10000"
            ),
        }
    ]
    assert_nothing_stored(project, media)


def test_byte_cap(project, media, settings):
    data = noise_image(2)
    settings.IMAGE_MAX_BYTES = len(data) - 1
    result = upload(project, ("a.jpg", data))
    assert result.rejected == [
        {"name": "a.jpg", "reason": f"file is larger than the limit of {len(data) - 1} bytes"}
    ]
    assert_nothing_stored(project, media)


# --- what is accepted, and the CNN's copy -------------------------------------------------------


def rgba_png():
    buffer = io.BytesIO()
    PILImage.new("RGBA", (40, 30), (255, 0, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def palette_with_transparency():
    img = PILImage.new("P", (40, 30), 0)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    buffer = io.BytesIO()
    img.save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


def sixteen_bit_png():
    img = PILImage.new("I;16", (40, 30))
    img.putdata([i * 50 for i in range(1200)])
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def animated_gif():
    frames = [PILImage.new("RGB", (40, 30), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, fmt, centre",
    [
        ("a.webp", noise_image(3, fmt="WEBP"), "WEBP", None),
        ("a.bmp", noise_image(4, fmt="BMP"), "BMP", None),
        ("a.tiff", noise_image(5, fmt="TIFF"), "TIFF", None),
        ("cmyk.jpg", noise_image(6, mode="CMYK"), "JPEG", None),
        ("clear.png", rgba_png(), "PNG", (255, 255, 255)),  # alpha over white
        ("palette.png", palette_with_transparency(), "PNG", (255, 255, 255)),
        ("deep.png", sixteen_bit_png(), "PNG", None),
        ("anim.gif", animated_gif(), "GIF", (255, 0, 0)),  # the first frame
    ],
)
def test_accepted_formats_and_modes_get_an_rgb_copy(project, media, name, data, fmt, centre):
    result = upload(project, (name, data))
    assert result.rejected == [] and len(result.created) == 1
    image = Image.objects.get()
    assert image.format == fmt and len(image.phash) == 16
    with default_storage.open(image.preprocessed.name) as f, PILImage.open(f) as copy:
        assert copy.format == "JPEG" and copy.mode == "RGB" and min(copy.size) == 160
        if centre is not None:
            pixel = copy.getpixel((copy.width // 2, copy.height // 2))
            assert all(abs(a - b) < 12 for a, b in zip(pixel, centre, strict=False))
    with image.file.open("rb") as f:
        assert f.read() == data  # the original, as uploaded


def test_exif_orientation_is_respected(project, media):
    img = PILImage.open(io.BytesIO(noise_image(7, size=(120, 60))))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", exif=exif)
    upload(project, ("turned.jpg", buffer.getvalue()))
    image = Image.objects.get()
    assert (image.width, image.height) == (60, 120)
    with default_storage.open(image.preprocessed.name) as f, PILImage.open(f) as copy:
        assert copy.size == (160, 320)


# --- zip archives -------------------------------------------------------------------------------


def test_zip_members_are_checked_one_by_one(project, media, tmp_path):
    archive = zip_bytes(
        {
            "cats/deep/ok.jpg": noise_image(10),
            "../escape.png": noise_image(11, fmt="PNG"),
            "/etc/absolute.png": noise_image(12, fmt="PNG"),
            "C:/windows.png": noise_image(13, fmt="PNG"),
            "notes.txt": b"not an image",
        },
        symlinks={"link.jpg": "/etc/passwd"},
    )
    result = upload(project, ("batch.zip", archive))
    assert len(result.created) == 1
    assert sorted((r["name"], r["reason"]) for r in result.rejected) == [
        ("batch.zip/../escape.png", "path with '..' in the archive"),
        ("batch.zip//etc/absolute.png", "absolute path in the archive"),
        ("batch.zip/C:/windows.png", "absolute path in the archive"),
        ("batch.zip/link.jpg", "symbolic link in the archive"),
        (
            "batch.zip/notes.txt",
            "not an image in an accepted format (JPEG, PNG, WebP, GIF, BMP, TIFF)",
        ),
    ]
    image = Image.objects.get()
    assert image.original_name == "batch.zip/cats/deep/ok.jpg"
    assert not (tmp_path / "escape.png").exists()
    assert not any(p.name == "escape.png" for p in tmp_path.rglob("*"))
    assert len(stored_files(media)) == 2  # the original (its own display copy) and its CNN copy


def test_zip_bomb_is_refused_whole(project, media, settings):
    settings.ZIP_MAX_TOTAL_BYTES = 1024 * 1024
    archive = zip_bytes(
        {f"zeros{i}.png": b"\0" * 400_000 for i in range(3)} | {"ok.jpg": noise_image(1)}
    )
    assert len(archive) < 10_000  # 1.2 MB of members in a few kB
    result = upload(project, ("bomb.zip", archive))
    assert result.created == []
    assert len(result.rejected) == 1 and result.rejected[0]["name"] == "bomb.zip"
    assert "over the limit of 1048576 (zip bomb refused)" in result.rejected[0]["reason"]
    assert_nothing_stored(project, media)


def test_a_member_over_the_byte_cap_is_refused(project, media, settings):
    settings.IMAGE_MAX_BYTES = 1000
    result = upload(project, ("big.zip", zip_bytes({"big.png": b"\0" * 5000})))
    assert result.rejected == [
        {"name": "big.zip/big.png", "reason": "file is larger than the limit of 1000 bytes"}
    ]
    assert_nothing_stored(project, media)


def test_a_broken_zip_is_rejected(project, media):
    result = upload(project, ("broken.zip", b"PK\x03\x04 and then nothing useful"))
    assert [r["name"] for r in result.rejected] == ["broken.zip"]
    assert result.rejected[0]["reason"].startswith("not a valid zip archive")
    assert_nothing_stored(project, media)


# --- duplicates and near duplicates -------------------------------------------------------------


def test_exact_duplicates_are_counted_not_stored(project, media):
    data = noise_image(20)
    first = upload(project, ("a.jpg", data), ("a-again.jpg", data))
    assert (len(first.created), first.duplicates) == (1, 1)
    again = upload(project, ("zipped.zip", zip_bytes({"x/a.jpg": data})))
    assert (again.created, again.duplicates) == ([], 1)
    assert Image.objects.count() == 1 and len(stored_files(media)) == 2


def test_near_duplicates_are_stored_flagged_and_listed(project, media):
    original = noise_image(30, size=(400, 300))
    smaller = io.BytesIO()
    PILImage.open(io.BytesIO(original)).resize((200, 150)).save(smaller, "JPEG", quality=60)
    result = upload(
        project,
        ("orig.jpg", original),
        ("other.jpg", noise_image(31, size=(400, 300))),
        ("small.jpg", smaller.getvalue()),
    )
    assert len(result.created) == 3 and result.rejected == []
    first, other, small = Image.objects.order_by("id")
    assert result.near_duplicates == [
        {
            "name": "small.jpg",
            "id": small.pk,
            "near_duplicate_of": first.pk,
            "distance": small.near_duplicate_distance,
        }
    ]
    assert small.near_duplicate_of == first and small.near_duplicate_distance <= 3
    assert first.near_duplicate_of is None and other.near_duplicate_of is None
    assert imaging.hamming(first.phash, other.phash) > 10
    assert list(selectors.near_duplicates_for_review(project=project)) == [small]


def test_near_duplicates_are_per_project(project, media):
    from tests.factories import ProjectFactory

    data = noise_image(40)
    upload(project, ("a.jpg", data))
    elsewhere = ProjectFactory()
    result = upload(elsewhere, ("a.jpg", data))
    assert len(result.created) == 1 and result.near_duplicates == []


# --- all or nothing -----------------------------------------------------------------------------


def test_a_failure_between_the_files_and_the_row_leaves_nothing(project, media, monkeypatch):
    upload(project, ("kept.jpg", noise_image(50)))
    kept_files = stored_files(media)
    original = ingest_store._image_rows_create

    def fail_after_row(**kwargs):
        original(**kwargs)  # the row and its bands are written, then something breaks
        raise RuntimeError("injected failure")

    monkeypatch.setattr(ingest_store, "_image_rows_create", fail_after_row)
    with pytest.raises(RuntimeError, match="injected"):
        upload(project, ("b.jpg", noise_image(51)), ("c.jpg", noise_image(52)))
    assert list(Image.objects.values_list("original_name", flat=True)) == ["kept.jpg"]
    assert ImageHashBand.objects.count() == 4
    assert stored_files(media) == kept_files


def tagged(seed: int) -> bytes:
    """A JPEG with a comment, which its display copy drops: three files are written for it."""
    return noise_image(seed, comment=b"taken by someone")


def test_a_storage_failure_rejects_that_file_only(project, media, monkeypatch):
    from annotate.services import ingest_worker

    real_save = ingest_worker.file_save
    calls = {"n": 0}

    def save_failing_second_copy(storage, name, data):
        if name.startswith("display/"):  # the last file written: the other two must go
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return real_save(storage, name, data)

    monkeypatch.setattr(ingest_worker, "file_save", save_failing_second_copy)
    result = upload(project, ("a.jpg", tagged(60)), ("b.jpg", tagged(61)), ("c.jpg", tagged(62)))
    assert len(result.created) == 2
    assert result.rejected == [
        {"name": "b.jpg", "reason": "could not store the file: [Errno 28] No space left on device"}
    ]
    names = sorted(Image.objects.values_list("original_name", flat=True))
    assert names == ["a.jpg", "c.jpg"]
    files = stored_files(media)
    assert len(files) == 6 and not any(f.endswith("b.jpg") for f in files)
    b_sha = hashlib.sha256(tagged(61)).hexdigest()
    assert not any(b_sha in f for f in files)


def test_gold_upload_records_a_gold_decision(project, media, labels):
    result = upload(project, ("g.jpg", noise_image(70)), gold_label=labels[2])
    image = Image.objects.get(pk=result.created[0])
    assert (image.is_gold, image.state, image.free_slots) == (True, Image.State.CONSENSUS, 0)
    decision = Decision.objects.get(image=image)
    assert (decision.label, decision.rule) == (labels[2], Decision.Rule.GOLD)


def test_gold_from_folders_in_a_zip(project, media, labels):
    archive = zip_bytes(
        {
            f"train/{labels[0].wnid}/a.jpg": noise_image(80),
            f"{labels[1].wnid}/sub/b.jpg": noise_image(81),
            "n99999999/c.jpg": noise_image(82),
            "d.jpg": noise_image(83),
        }
    )
    result = upload(project, ("set.zip", archive), gold_from_folders=True)
    assert sorted(r["reason"] for r in result.rejected) == [
        "folder 'n99999999' is not a label of this project",
        "not inside a label folder (<wnid>/...)",
    ]
    gold = dict(Image.objects.values_list("original_name", "gold_label__wnid"))
    assert gold == {
        f"set.zip/train/{labels[0].wnid}/a.jpg": labels[0].wnid,
        f"set.zip/{labels[1].wnid}/sub/b.jpg": labels[1].wnid,
    }


def test_a_concurrent_upload_of_the_same_bytes_is_a_duplicate(project, media, monkeypatch):
    from tests.factories import ImageFactory

    first, second = noise_image(90), noise_image(91)
    real_write = ingest_store._files_write

    def write_while_another_upload_wins(image, candidate, inspected):
        if candidate.name == "second.jpg":  # meanwhile, another request stores these bytes
            ImageFactory(project=project, sha256=inspected.sha256, phash="")
        return real_write(image, candidate, inspected)

    monkeypatch.setattr(ingest_store, "_files_write", write_while_another_upload_wins)
    result = upload(project, ("first.jpg", first), ("second.jpg", second))
    assert (len(result.created), result.duplicates, result.rejected) == (1, 1, [])
    assert Image.objects.get(pk=result.created[0]).original_name == "first.jpg"
    files = stored_files(media)
    assert len(files) == 2 and not any("second" in f for f in files)


def test_a_rerun_of_an_import_does_not_decode_again(project, media, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(noise_image(100 + i))
    first = ingest.images_import(project=project, path=folder)
    assert (len(first.created), first.duplicates) == (3, 0)
    (folder / "new.jpg").write_bytes(noise_image(110))
    decoded = []
    real = imaging.preprocessed_copy
    monkeypatch.setattr(
        imaging.convert, "preprocessed_copy", lambda img, side: decoded.append(1) or real(img, side)
    )
    again = ingest.images_import(project=project, path=folder)
    assert (len(again.created), again.duplicates, again.rejected) == (1, 3, [])
    assert decoded == [1]  # only the new file was decoded


def test_workers_store_originals_where_the_model_would(project):
    from annotate.models import image_upload_to
    from annotate.services import ingest_worker

    image = Image(project=project, sha256="ab" * 32)
    assert ingest_worker.original_name(
        project_id=project.pk, sha256=image.sha256, filename="x.jpg"
    ) == image_upload_to(image, "x.jpg")
