"""The upload endpoint under bad input, and the near-duplicate list."""

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from annotate.models import Image
from tests.api_errors import assert_error_shape
from tests.ingest_files import noise_image, png_header_only, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_every_rejection_class_through_the_api(client_for, admin_user, project, media):
    archive = zip_bytes(
        {
            "ok/1.jpg": noise_image(1),
            "../up.png": noise_image(2, fmt="PNG"),
            "/abs.png": noise_image(3, fmt="PNG"),
        },
        symlinks={"link.png": "../../etc/passwd"},
    )
    files = [
        upload("text.jpg", b"plain text pretending to be a JPEG"),
        upload("cut.png", noise_image(4, size=(300, 200), fmt="PNG")[:500]),
        upload("bomb.png", png_header_only(30000, 30000)),
        upload("set.zip", archive),
    ]
    response = client_for(admin_user).post(f"/api/projects/{project.pk}/images/", {"files": files})
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["duplicates"], body["near_duplicates"]) == (1, 0, [])
    reasons = {r["name"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {
        "text.jpg",
        "cut.png",
        "bomb.png",
        "set.zip/../up.png",
        "set.zip//abs.png",
        "set.zip/link.png",
    }
    assert reasons["bomb.png"].startswith("decompression bomb refused")
    assert reasons["set.zip/link.png"] == "symbolic link in the archive"
    assert list(Image.objects.values_list("original_name", flat=True)) == ["set.zip/ok/1.jpg"]
    assert len(files_under(media)) == 2  # the original (its own display copy) and its CNN copy


def test_a_request_over_the_size_limit_is_a_413(client_for, admin_user, project, media, settings):
    settings.UPLOAD_MAX_REQUEST_BYTES = 2000
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/images/",
        {"files": [upload("a.bmp", noise_image(5, fmt="BMP"))]},
    )
    assert "at most 2000 bytes" in assert_error_shape(response, 413, "too_large")["detail"]
    assert not Image.objects.exists() and files_under(media) == []


def test_too_many_files_is_a_400_with_a_message(client_for, admin_user, project, media, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [upload(f"{i}.jpg", noise_image(i)) for i in range(3)]
    response = client_for(admin_user).post(f"/api/projects/{project.pk}/images/", {"files": files})
    body = assert_error_shape(response, 400, "invalid")
    assert "upload was refused" in body["detail"] and list(body["fields"]) == ["files"]
    assert not Image.objects.exists() and files_under(media) == []


def test_gold_from_folders_through_the_api(client_for, admin_user, project, labels, media):
    archive = zip_bytes({f"train/{labels[1].wnid}/x.jpg": noise_image(6)})
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/images/",
        {"files": [upload("gold.zip", archive)], "gold_from_folders": "true"},
    )
    assert response.status_code == 201 and response.json()["created"] == 1
    image = Image.objects.get()
    assert (image.is_gold, image.gold_label) == (True, labels[1])


def test_near_duplicates_are_listed_for_admins(client_for, admin_user, reviewer, project, media):
    original = noise_image(7, size=(320, 240))
    copy = io.BytesIO()
    PILImage.open(io.BytesIO(original)).save(copy, "PNG")
    url = f"/api/projects/{project.pk}/images/"
    client = client_for(admin_user)
    client.post(url, {"files": [upload("a.jpg", original)]})
    response = client.post(url, {"files": [upload("a.png", copy.getvalue())]})
    first, second = Image.objects.order_by("id")
    near = response.json()["near_duplicates"]
    assert near == [
        {
            "name": "a.png",
            "id": second.pk,
            "near_duplicate_of": first.pk,
            "distance": second.near_duplicate_distance,
        }
    ]
    listing = client.get(f"/api/projects/{project.pk}/images/near-duplicates/")
    assert listing.status_code == 200
    [row] = listing.json()["results"]
    assert (row["id"], row["original_name"], row["near_duplicate_of"]["id"]) == (
        second.pk,
        "a.png",
        first.pk,
    )
    assert row["near_duplicate_of"]["url"] == f"/api/images/{first.pk}/file/"
    assert (
        client_for(reviewer).get(f"/api/projects/{project.pk}/images/near-duplicates/").status_code
        == 403
    )
    assert client.get("/api/projects/999999/images/near-duplicates/").status_code == 404


def test_labels_with_html_are_escaped_on_the_labeling_page(
    client, admin_user, volunteer, project, client_for
):
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/labels/import/",
        {"text": "n01440764 <script>alert(1)</script> tench\n"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["created"] == 1
    client.force_login(volunteer)
    page = client.get(f"/projects/{project.pk}/label/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; tench" in page


def test_one_gold_label_and_gold_from_folders_are_exclusive(
    client_for, admin_user, project, labels, media
):
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/images/",
        {
            "files": [upload("a.jpg", noise_image(8))],
            "gold_label": labels[0].wnid,
            "gold_from_folders": "true",
        },
    )
    assert response.status_code == 400 and "not both" in response.json()["detail"]
    assert not Image.objects.exists() and files_under(media) == []
