"""Exports and imports with the local file storage and with a real S3 server (moto, over HTTP):
with S3 the finished tar and manifest go to the bucket under a key of their attempt and are
downloaded by a short-lived signed URL, or streamed from the bucket by the web server."""

import gzip
import io
import random
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from annotate.models import Export
from annotate.services import export as export_service
from annotate.services import ingest
from annotate.services.export import stored
from tests.export_helpers import decided_images, unique_image
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.EXPORT_DIR


@pytest.fixture
def small_project(db):
    rng = random.Random(7)
    project = ProjectFactory()
    for i in range(2):
        decided_images(project, LabelFactory(project=project, wnid=f"n0000000{i}"), 4, rng)
    return project


def stored_keys(prefix: str) -> list[str]:
    folders, files = default_storage.listdir(prefix)
    return [f"{prefix}/{name}" for name in files] + [
        key for folder in folders for key in stored_keys(f"{prefix}/{folder}")
    ]


def key_of(export: Export) -> str:
    key = stored.stored_key(export.location)
    assert key is not None, export.location
    return key


def finished(project) -> Export:
    export = export_service.export_create(project=project, enqueue=False)
    assert export_service.export_run(export_id=export.pk, run_token="job") == "done"
    export.refresh_from_db()
    return export


def test_imported_and_uploaded_images_land_in_the_storage(storage, project, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = random.Random(3)
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(unique_image(rng))
    imported = ingest.images_import(project=project, path=folder)
    uploaded = ingest.images_upload(
        project=project, files=[("u.jpg", io.BytesIO(unique_image(rng)))]
    )
    assert (len(imported.created), len(uploaded.created)) == (3, 1)
    keys = stored_keys("images") + stored_keys("preprocessed")
    assert len(keys) == 8
    for image in project.images.all():
        with default_storage.open(image.preprocessed.name, "rb") as f:
            assert f.read(2) == b"\xff\xd8"  # the CNN's JPEG copy
    on_disk = [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert len(on_disk) == (8 if storage == "local" else 0)


def test_an_export_goes_where_the_images_are_and_downloads_from_there(
    storage, small_project, client_for, admin_user, export_dir
):
    export = finished(small_project)
    client = client_for(admin_user)
    response = client.get(reverse("api:export-download", args=[export.pk]))
    if storage == "local":
        assert export.location == str(export_dir / str(export.pk) / f"{export.name}.tar")
        assert response.status_code == 200
        data = b"".join(response.streaming_content)
    else:
        # The attempt's own key; nothing is left on the worker's disk.
        key = stored.stored_key(export.location)
        assert key is not None and key.startswith(f"exports/{export.pk}/")
        assert key.endswith(f"/{export.name}.tar")
        assert sorted(stored_keys(f"exports/{export.pk}")) == sorted(
            [key, key.rpartition("/")[0] + "/manifest.json"]
        )
        assert not any(p.is_file() for p in export_dir.rglob("*"))
        # A redirect to a signed URL of the bucket, valid a short while.
        assert response.status_code == 302
        signed = response["Location"]
        assert "Signature=" in signed and "Expires=" in signed
        fetched = requests.get(signed, timeout=30)
        assert fetched.status_code == 200, fetched.text
        assert f'filename="{export.name}.tar"' in fetched.headers["Content-Disposition"]
        data = fetched.content
        assert requests.get(signed.split("?")[0], timeout=30).status_code == 403  # private
    assert len(data) == export.size_bytes
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    assert len([n for n in names if n.endswith(".JPEG")]) == 8
    gz = client.get(reverse("api:export-download", args=[export.pk]), {"compress": "gzip"})
    assert gz.status_code == 200 and gzip.decompress(b"".join(gz.streaming_content)) == data
    manifest = client.get(reverse("api:export-manifest", args=[export.pk]))
    assert manifest.status_code == 200 and b'"files"' in b"".join(manifest.streaming_content)


def test_without_redirects_the_web_server_streams_it_from_the_bucket(
    s3_bucket, small_project, client_for, admin_user, settings
):
    settings.EXPORT_DOWNLOAD_REDIRECT = False
    export = finished(small_project)
    response = client_for(admin_user).get(reverse("api:export-download", args=[export.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/x-tar"
    data = b"".join(response.streaming_content)
    assert len(data) == int(response["Content-Length"]) == export.size_bytes
    with default_storage.open(key_of(export), "rb") as f:
        assert f.read() == data


def test_a_large_tar_goes_up_in_parts(s3_server, s3_bucket, tmp_path):
    tar_path, manifest = tmp_path / "big.tar", tmp_path / "manifest.json"
    tar_path.write_bytes(random.Random(1).randbytes(9 << 20))  # over boto3's 8 MB threshold
    manifest.write_text("{}")
    beats = []
    location = stored.export_upload(
        export_id=41, tar_path=tar_path, manifest_path=manifest, keep_alive=lambda: beats.append(1)
    )
    key = stored.stored_key(location)
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] == 9 << 20
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload's ETag: 2 parts


def test_an_upload_abandoned_by_a_lost_claim_leaves_nothing(s3_bucket, tmp_path, settings):
    settings.EXPORT_PROGRESS_SECONDS = 0.001
    tar_path, manifest = tmp_path / "x.tar", tmp_path / "manifest.json"
    tar_path.write_bytes(random.Random(2).randbytes(9 << 20))
    manifest.write_text("{}")
    beats = []

    def claim_lost_after_the_upload_began():
        beats.append(1)
        if len(beats) > 1:
            raise export_service.ExportAborted("taken over")

    with pytest.raises(export_service.ExportAborted):
        stored.export_upload(
            export_id=42,
            tar_path=tar_path,
            manifest_path=manifest,
            keep_alive=claim_lost_after_the_upload_began,
        )
    assert len(beats) == 2 and stored_keys("exports") == []


def test_cleanup_expires_stored_exports_and_removes_attempts_nobody_owns(
    s3_bucket, small_project, settings
):
    old, kept = finished(small_project), finished(small_project)
    Export.objects.filter(pk=old.pk).update(
        finished_at=timezone.now() - timedelta(hours=settings.EXPORT_TTL_HOURS + 1)
    )
    running = export_service.export_create(project=small_project, enqueue=False)
    Export.objects.filter(pk=running.pk).update(
        state=Export.State.RUNNING, run_token="live", heartbeat_at=timezone.now()
    )
    # An attempt of a done export killed after its upload, and one of the running export.
    for key in (f"exports/{kept.pk}/deadbeef/x.tar", f"exports/{running.pk}/cafe/x.tar"):
        default_storage.save(key, io.BytesIO(b"half"))

    result = export_service.exports_cleanup()

    assert result.expired == 1 and result.removed_temporary == 1
    assert Export.objects.get(pk=old.pk).state == Export.State.EXPIRED
    assert stored_keys(f"exports/{old.pk}") == []
    kept_key = key_of(kept)
    assert sorted(stored_keys(f"exports/{kept.pk}")) == sorted(
        [kept_key, kept_key.rpartition("/")[0] + "/manifest.json"]
    )
    assert stored_keys(f"exports/{running.pk}") == [f"exports/{running.pk}/cafe/x.tar"]


def test_a_stored_export_whose_object_vanished_is_gone(s3_bucket, small_project):
    export = finished(small_project)
    default_storage.delete(key_of(export))
    with pytest.raises(export_service.Gone):
        export_service.export_download(export=export)


def test_the_export_directory_of_the_worker_stays_as_before_with_local_files(
    small_project, export_dir
):
    export = finished(small_project)
    assert Path(export.location).is_file() and not export.location.startswith("storage:")
