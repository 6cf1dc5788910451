"""Exports strip metadata by default and blur faces on request (issue 17)."""

import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from skimage import data as skimage_data

from annotate.services import export as export_service
from annotate.services import faces
from tests.annotate.services.test_jpeg_metadata import gps_exif, jpeg_with_everything, srgb_icc
from tests.export_helpers import add_image, decide, decided_images
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"


def export_folder(project, tmp_path: Path, **options) -> tuple[Path, dict]:
    export = export_service.export_create(project=project, enqueue=False, **options)
    out = tmp_path / f"dataset-{export.pk}"
    outcome = export_service.export_run(export_id=export.pk, run_token="t", destination=out)
    assert outcome == "done"
    return out, json.loads((out / "manifest.json").read_text())


def file_of(manifest: dict, image_id: int) -> tuple[str, dict]:
    ((path, entry),) = ((p, e) for p, e in manifest["files"].items() if e.get("image") == image_id)
    return path, entry


def pixels(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def jpeg(img: PIL.Image.Image, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95, **save)
    return out.getvalue()


@pytest.fixture
def private_project(db):
    """Two classes; one image carries EXIF with GPS and a serial number, XMP, IPTC, an ICC
    profile, a comment and a trailer; another only an ICC profile."""
    project = ProjectFactory()
    cat = LabelFactory(project=project, wnid="n02123045", name="cat")
    dog = LabelFactory(project=project, wnid="n02084071", name="dog")
    rng = random.Random(4)
    decided_images(project, cat, 3, rng)
    decided_images(project, dog, 4, rng)
    everything = decide(add_image(project, jpeg_with_everything(), "gps.jpg"), cat)
    icc_only = decide(
        add_image(project, jpeg(PIL.Image.new("RGB", (40, 30), "teal"), icc_profile=srgb_icc())),
        dog,
    )
    return project, everything, icc_only


def test_exports_strip_gps_exif_and_all_metadata_by_default_keeping_the_pixels(
    private_project, tmp_path
):
    project, everything, icc_only = private_project
    source = Path(everything.file.path).read_bytes()
    assert b"SN-123456" in source and b"Exif" in source
    out, manifest = export_folder(project, tmp_path)
    path, entry = file_of(manifest, everything.pk)
    written = (out / path).read_bytes()
    assert b"Exif" not in written and b"SN-123456" not in written and b"ICC_PROFILE" not in written
    with PIL.Image.open(out / path) as img:
        assert not img.getexif() and "icc_profile" not in img.info and "xmp" not in img.info
    assert np.array_equal(pixels(written), pixels(source))  # the image data was not re-encoded
    assert entry["stripped"] == ["exif", "xmp", "iptc", "icc", "comment", "other", "trailing"]
    icc_path, icc_entry = file_of(manifest, icc_only.pk)
    assert icc_entry["stripped"] == ["icc"]
    assert b"ICC_PROFILE" not in (out / icc_path).read_bytes()
    plain = [e for e in manifest["files"].values() if "image" in e and "stripped" not in e]
    assert len(plain) == 7 and "faces" not in entry  # no face search asked for
    assert manifest["metadata"] == {
        "kept": [],
        "images_stripped": 2,
        "images_by_kind": {
            "comment": 1,
            "exif": 1,
            "icc": 2,
            "iptc": 1,
            "other": 1,
            "trailing": 1,
            "xmp": 1,
        },
    }
    assert manifest["faces"]["blurred"] is False


def test_the_icc_profile_is_kept_only_when_the_setting_says_so(private_project, tmp_path, settings):
    project, everything, icc_only = private_project
    settings.EXPORT_KEEP_METADATA = ["icc"]
    out, manifest = export_folder(project, tmp_path)
    path, entry = file_of(manifest, everything.pk)
    with PIL.Image.open(out / path) as img, PIL.Image.open(everything.file.path) as source:
        assert img.info["icc_profile"] == source.info["icc_profile"] and not img.getexif()
    assert "icc" not in entry["stripped"] and "exif" in entry["stripped"]
    icc_path, icc_entry = file_of(manifest, icc_only.pk)
    assert "stripped" not in icc_entry
    assert (out / icc_path).read_bytes() == Path(icc_only.file.path).read_bytes()
    assert manifest["metadata"]["kept"] == ["icc"]


def test_a_converted_file_carries_no_metadata_either(db, tmp_path):
    # An EXIF-rotated JPEG is re-encoded upright: its EXIF (GPS included) does not follow.
    project = ProjectFactory()
    label = LabelFactory(project=project, wnid="n02123045")
    rng = random.Random(2)
    decided_images(project, label, 2, rng)
    exif = PIL.Image.Exif()
    exif.load(gps_exif())
    exif[0x0112] = 6  # rotated
    rotated = decide(add_image(project, jpeg(PIL.Image.new("RGB", (40, 30)), exif=exif)), label)
    out, manifest = export_folder(project, tmp_path)
    path, entry = file_of(manifest, rotated.pk)
    with PIL.Image.open(out / path) as img:
        assert img.size == (30, 40) and not img.getexif()
    assert entry["stripped"] == ["exif"]


@pytest.fixture
def astronaut_project(db):
    """A real photo with a face (scikit-image's astronaut) among noise images without one."""
    project = ProjectFactory()
    label = LabelFactory(project=project, wnid="n10000000", name="person")
    rng = random.Random(5)
    others = decided_images(project, label, 4, rng, size=(96, 80))
    photo = jpeg(PIL.Image.fromarray(skimage_data.astronaut()), exif=gps_exif())
    astronaut = decide(add_image(project, photo, "astronaut.jpg"), label)
    return project, astronaut, others


def test_blur_faces_blurs_the_face_and_leaves_the_rest_and_other_files_alone(
    astronaut_project, tmp_path
):
    project, astronaut, others = astronaut_project
    source = Path(astronaut.file.path).read_bytes()
    before = pixels(source)
    boxes = faces.find_faces(PIL.Image.open(io.BytesIO(source)).convert("RGB"))
    assert len(boxes) == 1  # the detector ships with OpenCV and finds her face
    out, manifest = export_folder(project, tmp_path, blur_faces=True)
    path, entry = file_of(manifest, astronaut.pk)
    assert entry["faces"] == 1 and "exif" in entry["stripped"]
    after = pixels((out / path).read_bytes())
    assert after.shape == before.shape
    left, top, right, bottom = boxes[0]
    face = np.zeros(before.shape[:2], bool)
    face[top:bottom, left:right] = True
    # The face: changed a lot (features smoothed away), well beyond JPEG noise.
    assert np.abs(after[face] - before[face]).mean() > 8
    blurred = after[top:bottom, left:right].astype(float)
    original = before[top:bottom, left:right].astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.4 * np.abs(np.diff(original, axis=1)).mean()
    # The rest, away from the box's edge (8 px: JPEG blocks straddling it): only the loss of
    # encoding once more at quality 95.
    margin = np.zeros_like(face)
    margin[max(0, top - 8) : bottom + 8, max(0, left - 8) : right + 8] = True
    rest = ~margin
    assert np.abs(after[rest] - before[rest]).mean() < 1.5
    # Files without a face are copied byte for byte, with a count of 0.
    for image in others:
        other_path, other_entry = file_of(manifest, image.pk)
        assert other_entry["faces"] == 0
        assert (out / other_path).read_bytes() == Path(image.file.path).read_bytes()
    assert manifest["faces"] == {
        "blurred": True,
        "detector": "OpenCV Haar cascade haarcascade_frontalface_default",
        "faces": 1,
        "images_with_faces": 1,
    }
    assert manifest["blur_faces"] is True


def test_blur_faces_is_an_option_of_the_command(astronaut_project, tmp_path):
    from django.core.management import call_command

    from annotate.models import Export

    project, astronaut, _ = astronaut_project
    out = tmp_path / "cmd"
    call_command("export_dataset", str(project.pk), str(out), "--blur-faces")
    manifest = json.loads((out / "manifest.json").read_text())
    assert file_of(manifest, astronaut.pk)[1]["faces"] == 1
    assert Export.objects.get().blur_faces is True


@pytest.mark.parametrize("processes", [0, 2])
def test_a_stripped_file_in_the_tar_is_the_stripped_bytes_and_hashed_as_written(
    private_project, settings, processes
):
    # The worker hashes and writes a stripped file as the pieces it is cut into (views of the
    # stored file and a new JFIF header), never joined: the tar member and the manifest's
    # SHA-256 must still be those of strip()'s bytes.
    import hashlib

    from annotate.models import Export
    from annotate.services import jpeg_metadata

    settings.EXPORT_PROCESSES = processes
    project, everything, _ = private_project
    source = Path(everything.file.path).read_bytes()
    expected = jpeg_metadata.strip(source).data
    assert len(jpeg_metadata.strip_pieces(source)[0]) > 2  # cut in several places
    export = export_service.export_create(project=project, enqueue=False)
    assert export_service.export_run(export_id=export.pk, run_token="t") == "done"
    export.refresh_from_db()
    assert export.state == Export.State.DONE
    with tarfile.open(export.location) as tar:
        manifest = json.loads(member_bytes(tar, f"{export.name}/manifest.json"))
        path, entry = file_of(manifest, everything.pk)
        written = member_bytes(tar, f"{export.name}/{path}")
        members = {m.name: member_bytes(tar, m) for m in tar.getmembers() if m.isfile()}
    assert written == expected
    assert entry["sha256"] == hashlib.sha256(expected).hexdigest()
    assert entry["bytes"] == len(expected)
    for relpath, file_entry in manifest["files"].items():  # every file, as the manifest says
        if relpath != "manifest.json":
            data = members[f"{export.name}/{relpath}"]
            assert hashlib.sha256(data).hexdigest() == file_entry["sha256"], relpath


def member_bytes(tar: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    assert extracted is not None, member  # a regular file
    return extracted.read()
