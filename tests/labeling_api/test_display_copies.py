"""What volunteers and reviewers are shown: the display copy (upright, RGB, no metadata,
longer side capped), never the original, which admins alone can fetch."""

import io
from typing import cast

import PIL.Image
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.models.fields.files import FieldFile

from annotate.models import Image
from annotate.services import ingest
from tests.api_errors import assert_error_shape
from tests.ingest_files import png_header_only

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def private_photo(size=(1600, 1200)) -> bytes:
    """A JPEG stored on its side (EXIF orientation 6) carrying a GPS position and a camera
    serial number: red on the left as stored, so red on top as shown."""
    img = PIL.Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {2: (48.0, 51.0, 0.0), 4: (2.0, 17.0, 0.0)}
    exif[0xA431] = "SERIAL-1234"
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, exif=exif, comment=b"SERIAL-1234")
    return buffer.getvalue()


def upload(client, project, *files: tuple[str, bytes]):
    return client.post(
        f"/api/projects/{project.pk}/images/",
        {"files": [SimpleUploadedFile(name, data) for name, data in files]},
    )


def rgb(img: PIL.Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return cast(tuple[int, int, int], img.convert("RGB").getpixel(xy))


def stored(field: FieldFile) -> str:
    """The stored name of a file field that has one."""
    assert field.name, "no file"
    return field.name


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_volunteers_and_reviewers_see_the_display_copy_admins_may_fetch_the_original(
    client_for, admin_user, volunteer, reviewer, project, settings
):
    settings.DISPLAY_MAX_SIDE = 800
    original = private_photo()
    assert upload(client_for(admin_user), project, ("me.jpg", original)).status_code == 201
    image = Image.objects.get()
    assert stored(image.display).startswith(f"display/{project.pk}/")
    lease = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/").json()
    assert lease["image"]["url"] == f"/api/images/{image.pk}/file/"
    for user in (volunteer, reviewer, admin_user):
        response = client_for(user).get(lease["image"]["url"])
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        shown = body(response)
        assert b"SERIAL-1234" not in shown and b"Exif\x00\x00" not in shown
        with PIL.Image.open(io.BytesIO(shown)) as img:
            assert img.size == (600, 800)  # upright, the longer side capped
            top, bottom = rgb(img, (300, 100)), rgb(img, (300, 700))
            assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
            assert not img.getexif()
    # The original, metadata and all, for admins only.
    url = f"/api/images/{image.pk}/original/"
    for user in (volunteer, reviewer):
        assert_error_shape(client_for(user).get(url), status=403, code="permission_denied")
    response = client_for(admin_user).get(url)
    assert response.status_code == 200 and body(response) == original


def test_stored_files_are_not_served_by_their_media_path(client_for, admin_user, project):
    upload(client_for(admin_user), project, ("me.jpg", private_photo()))
    image = Image.objects.get()
    for name in (image.file.name, image.display.name, image.preprocessed.name):
        for prefix in ("/media/", "/"):
            assert client_for(admin_user).get(f"{prefix}{name}").status_code == 404


def test_an_image_stored_before_display_copies_gets_one_on_first_view(
    client_for, admin_user, volunteer, project
):
    upload(client_for(admin_user), project, ("me.jpg", private_photo()))
    image = Image.objects.get()
    default_storage.delete(stored(image.display))
    Image.objects.update(display="")  # as ingest left it before this change
    client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/")
    response = client_for(volunteer).get(f"/api/images/{image.pk}/file/")
    assert response.status_code == 200 and b"SERIAL-1234" not in body(response)
    image.refresh_from_db()
    assert default_storage.exists(stored(image.display))


def test_the_display_copies_command_backfills_old_images(client_for, admin_user, project):
    upload(
        client_for(admin_user),
        project,
        ("a.jpg", private_photo()),
        ("b.jpg", private_photo((90, 60))),
    )
    names = dict(Image.objects.values_list("pk", "display"))
    for name in names.values():
        default_storage.delete(name)
    Image.objects.update(display="")
    broken = Image.objects.order_by("pk").last()
    assert broken is not None
    default_storage.delete(stored(broken.file))  # an original lost from storage
    out, err = io.StringIO(), io.StringIO()
    call_command("display_copies", str(project.pk), stdout=out, stderr=err)
    assert "1 display copies made, 1 images without one." in out.getvalue()
    assert f"image {broken.pk}: " in err.getvalue()
    made = Image.objects.exclude(pk=broken.pk).get()
    with made.display.open("rb") as copy, PIL.Image.open(copy) as img:
        assert img.size == (768, 1024) and not img.getexif()
    again = io.StringIO()
    call_command("display_copies", stdout=again, stderr=io.StringIO())
    assert "0 display copies made, 1 images without one." in again.getvalue()


def test_orphaned_display_copies_are_found(client_for, admin_user, project):
    from datetime import timedelta

    upload(client_for(admin_user), project, ("a.jpg", private_photo()))
    image = Image.objects.get()
    name = image.display.name
    Image.objects.update(display="")
    assert name in ingest.storage_orphans(min_age=timedelta(0))


def test_a_thin_strip_is_rejected_and_the_good_file_beside_it_stored(
    client_for, admin_user, project
):
    response = upload(
        client_for(admin_user),
        project,
        ("strip.png", png_header_only(64_000_000, 1)),
        ("me.jpg", private_photo()),
    )
    assert response.status_code == 201
    answer = response.json()
    assert answer["created"] == 1
    [rejected] = answer["rejected"]
    assert rejected["name"] == "strip.png" and "aspect ratio" in rejected["reason"]
    assert Image.objects.get().original_name == "me.jpg"


def test_a_decoder_failure_costs_only_its_file(client_for, admin_user, project, monkeypatch):
    from annotate.services.imaging import convert

    real = convert.preprocessed_copy

    def failing(img, side):
        if img.size == (60, 90):
            raise RuntimeError("an unforeseen decoder error")
        return real(img, side)

    monkeypatch.setattr(convert, "preprocessed_copy", failing)
    response = upload(
        client_for(admin_user),
        project,
        ("odd.jpg", private_photo((60, 90))),
        ("me.jpg", private_photo()),
    )
    assert response.status_code == 201
    answer = response.json()
    assert answer["created"] == 1
    assert answer["rejected"] == [
        {"name": "odd.jpg", "reason": "cannot process this image: RuntimeError"}
    ]


def test_a_jpeg_with_nothing_to_drop_is_its_own_display_copy(
    client_for, admin_user, volunteer, project
):
    clean = io.BytesIO()
    PIL.Image.new("RGB", (120, 80), (10, 200, 30)).save(clean, "JPEG")  # JFIF header only
    tagged = io.BytesIO()
    PIL.Image.new("RGB", (120, 80), (200, 10, 30)).save(tagged, "JPEG", comment=b"SERIAL-1234")
    upload(client_for(admin_user), project, ("clean.jpg", clean.getvalue()))
    upload(client_for(admin_user), project, ("tagged.jpg", tagged.getvalue()))
    own, copied = Image.objects.order_by("pk")
    assert own.display.name == own.file.name  # no second file for the same bytes
    assert stored(copied.display).startswith("display/")
    for _ in (own, copied):
        client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/")
    own_body = body(client_for(volunteer).get(f"/api/images/{own.pk}/file/"))
    assert own_body == clean.getvalue()
    copied_body = body(client_for(volunteer).get(f"/api/images/{copied.pk}/file/"))
    assert b"SERIAL-1234" not in copied_body and len(copied_body) < len(tagged.getvalue())
    # Backfilled, the same rule: the clean original is named, nothing written or deleted.
    Image.objects.update(display="")
    call_command("display_copies", stdout=io.StringIO())
    own.refresh_from_db()
    assert own.display.name == own.file.name and default_storage.exists(stored(own.file))
