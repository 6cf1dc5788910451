"""The export API: who may use it, bad input, the job it starts, the streamed tar."""

import io
import random
import tarfile

import pytest
from django.urls import reverse

from annotate.models import Export
from annotate.services import export as export_service
from tests.api_errors import assert_error_shape
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"


@pytest.fixture
def small_project(db):
    rng = random.Random(5)
    project = ProjectFactory()
    for i in range(2):
        decided_images(project, LabelFactory(project=project, wnid=f"n0000000{i}"), 4, rng)
    return project


def url(name, *args):
    return reverse(f"api:{name}", args=args)


def test_admin_starts_an_export_and_its_job_is_queued_after_commit(
    client_for, admin_user, small_project, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        "annotate.services.jobs.publish", lambda name, *args: sent.append((name, args))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(
            url("exports", small_project.pk),
            {
                "val_fraction": 0.25,
                "seed": 9,
                "val_layout": "flat",
                "resize": 64,
                "blur_faces": True,
            },
            format="json",
        )
    assert response.status_code == 202
    body = response.json()
    export = Export.objects.get(pk=body["id"])
    assert body["state"] == "pending" and export.created_by == admin_user
    assert body["blur_faces"] is True
    assert (
        export.val_fraction,
        export.seed,
        export.val_layout,
        export.resize,
        export.blur_faces,
    ) == (0.25, 9, "flat", 64, True)
    assert sent == [("annotate.export_run", (export.pk,))]


def test_status_progress_and_download_after_the_job(client_for, admin_user, small_project):
    export = export_service.export_create(project=small_project, enqueue=False)
    client = client_for(admin_user)
    assert client.get(url("export-detail", export.pk)).json()["progress"]["fraction"] == 0.0
    download = client.get(url("export-download", export.pk))
    assert download.status_code == 409 and "pending" in download.json()["detail"]

    export_service.export_run(export_id=export.pk, run_token="t")
    body = client.get(url("export-detail", export.pk)).json()
    assert body["state"] == "done" and body["progress"] == {"done": 8, "total": 8, "fraction": 1.0}
    assert body["counts"]["counts"] == {"train": 6, "val": 2, "classes": 2, "unreadable": 0}
    assert "files" not in body["counts"]

    response = client.get(body["urls"]["download"])
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="{export.name}.tar"'
    assert response["Content-Type"] == "application/x-tar"
    data = b"".join(response.streaming_content)
    assert len(data) == int(response["Content-Length"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        assert tar.extractfile(f"{export.name}/LOC_synset_mapping.txt").read() == (
            b"n00000000 label "
            + LabelOrder.name(small_project, 0)
            + b"\n"
            + b"n00000001 label "
            + LabelOrder.name(small_project, 1)
            + b"\n"
        )
    assert len([n for n in names if n.endswith(".JPEG")]) == 8
    assert f"{export.name}/meta.bin" in names and f"{export.name}/manifest.json" in names

    gz = client.get(body["urls"]["download_gzip"])
    assert gz.status_code == 200 and gz["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(b"".join(gz.streaming_content)), mode="r:gz") as tar:
        assert {m.name for m in tar.getmembers() if m.isfile()} == names

    manifest = client.get(body["urls"]["manifest"])
    assert manifest.status_code == 200
    assert len(b"".join(manifest.streaming_content)) > 100


class LabelOrder:
    @staticmethod
    def name(project, index) -> bytes:
        label = project.labels.get(wnid=f"n0000000{index}")
        return label.name.removeprefix("label ").encode()


@pytest.mark.parametrize("role", ["volunteer", "reviewer", None])
def test_only_admins_reach_exports(client_for, request, role, small_project):
    user = request.getfixturevalue(role) if role else None
    export = export_service.export_create(project=small_project, enqueue=False)
    export_service.export_run(export_id=export.pk, run_token="t")
    client = client_for(user)
    expected = 403 if user else 401
    for method, path in [
        ("post", url("exports", small_project.pk)),
        ("get", url("exports", small_project.pk)),
        ("get", url("export-detail", export.pk)),
        ("get", url("export-download", export.pk)),
        ("get", url("export-manifest", export.pk)),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code in (expected, 403), (path, response.status_code)
        assert_error_shape(response)
    assert Export.objects.count() == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"val_fraction": 0},
        {"val_fraction": 1.5},
        {"val_fraction": "many"},
        {"val_fraction": None},
        {"seed": -3},
        {"seed": "x"},
        {"seed": 2**70},
        {"val_layout": "spiral"},
        {"resize": 0},
        {"resize": "big"},
        {"min_per_class": 1},
        {"include_gold": "perhaps"},
        {"blur_faces": "perhaps"},
        [1, 2],
    ],
)
def test_bad_input_is_a_400_with_a_message_and_creates_nothing(
    client_for, admin_user, small_project, payload
):
    response = client_for(admin_user).post(url("exports", small_project.pk), payload, format="json")
    body = assert_error_shape(response, 400, "invalid")
    if isinstance(payload, dict):  # the field at fault is named
        assert list(body["fields"]) == list(payload), body
    assert not Export.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        '{"val_fraction": NaN}',
        '{"val_fraction": "nan"}',
        '{"val_fraction": "Infinity"}',
        '{"seed": 1',
        "\u0000",
    ],
)
def test_nan_and_broken_json_are_a_400(client_for, admin_user, small_project, body):
    response = client_for(admin_user).post(
        url("exports", small_project.pk), body, content_type="application/json"
    )
    assert assert_error_shape(response, 400)["code"] in ("parse_error", "invalid")
    assert not Export.objects.exists()


def test_missing_things_are_404_with_a_message(client_for, admin_user):
    client = client_for(admin_user)
    for method, path in [
        ("post", url("exports", 999)),
        ("get", url("export-detail", 999)),
        ("get", url("export-download", 999)),
    ]:
        response = getattr(client, method)(path)
        assert "does not exist" in assert_error_shape(response, 404, "not_found")["detail"]


def test_exporting_a_project_with_nothing_decided_is_a_400(client_for, admin_user):
    project = ProjectFactory()
    response = client_for(admin_user).post(url("exports", project.pk), {}, format="json")
    assert response.status_code == 400 and "no decided images" in response.json()["detail"]


def test_bad_compress_value_is_a_400(client_for, admin_user, small_project):
    export = export_service.export_create(project=small_project, enqueue=False)
    response = client_for(admin_user).get(url("export-download", export.pk) + "?compress=zip")
    assert response.status_code == 400 and "gzip" in response.json()["detail"]


def test_listing_a_projects_exports(client_for, admin_user, small_project):
    first = export_service.export_create(project=small_project, enqueue=False)
    second = export_service.export_create(project=small_project, enqueue=False, seed=4)
    body = client_for(admin_user).get(url("exports", small_project.pk)).json()
    assert [row["id"] for row in body["results"]] == [second.pk, first.pk]
