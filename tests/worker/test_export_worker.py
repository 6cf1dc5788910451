"""Exports on a real Celery worker (Redis): started from the API, and killed mid-way."""

import io
import os
import random
import signal
import tarfile
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from torchvision.datasets import ImageFolder, ImageNet

from annotate.models import Export, Image
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory, UserFactory
from tests.processes import Process, wait_until, worker_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def export_worker(tmp_path, settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "run with REDIS_URL (make test)"
    settings.EXPORT_DIR = tmp_path / "exports"
    worker = Process(
        ["bin/worker", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        worker_env(
            DATABASE_URL=database_url(),
            WORKER_CONCURRENCY="1",
            EXPORT_DIR=str(settings.EXPORT_DIR),
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            EXPORT_PROGRESS_SECONDS="0",  # progress after every batch
            EXPORT_PROCESSES="2",
        ),
        tmp_path / "worker.log",
    )
    wait_until(lambda: "ready." in worker.log(), 60, "the worker to start", log=worker.log)
    yield worker
    worker.stop()


@pytest.fixture
def admin_client(client):
    from annotate.models import User

    client.force_login(UserFactory(role=User.Role.ADMIN))
    return client


def make_project(per_class: int) -> tuple:
    rng = random.Random(21)
    project = ProjectFactory()
    images = []
    for i in range(3):
        label = LabelFactory(project=project, wnid=f"n0200000{i}", name=f"thing {i}, item {i}")
        images += decided_images(project, label, per_class, rng)
    return project, images


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (an orphan may stay a zombie a while)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def state_of(export_id: int) -> str:
    return Export.objects.get(pk=export_id).state


def test_an_export_started_from_the_api_runs_on_the_worker_and_downloads(
    export_worker, admin_client, tmp_path
):
    project, _ = make_project(per_class=6)
    response = admin_client.post(
        f"/api/projects/{project.pk}/exports/",
        {"val_fraction": 0.34, "seed": 2},
        content_type="application/json",
    )
    assert response.status_code == 202
    export_id = response.json()["id"]
    wait_until(
        lambda: state_of(export_id) in ("done", "failed"),
        60,
        "the export job",
        log=export_worker.log,
    )
    body = admin_client.get(f"/api/exports/{export_id}/").json()
    assert body["state"] == "done", body
    assert body["progress"] == {"done": 18, "total": 18, "fraction": 1.0}

    download = admin_client.get(body["urls"]["download"])
    with tarfile.open(fileobj=io.BytesIO(b"".join(download.streaming_content))) as tar:
        tar.extractall(tmp_path / "got", filter="data")
    root = tmp_path / "got" / body["name"]
    val = ImageNet(str(root), split="val")
    assert len(val) == 6 and val.wnids == ["n02000000", "n02000001", "n02000002"]
    assert val.classes[0] == ("thing 0", "item 0")
    assert len(ImageFolder(root / "train")) == 12
    assert "annotate.export_run" in export_worker.log()


def test_a_worker_killed_mid_export_leaves_no_dataset_and_the_export_is_redone(
    export_worker, tmp_path
):
    from annotate.services import export as export_service

    project, images = make_project(per_class=10)
    # The last image's file becomes a named pipe: opening it blocks, so the job stops there
    # with part of the dataset written, as if it were slow, until the test kills it.
    stuck = images[-1]
    path = Path(stuck.file.path)
    original = path.read_bytes()
    path.unlink()
    os.mkfifo(path)

    export = export_service.export_create(project=project, user=None)
    tmp = Path(settings.EXPORT_DIR) / export_service.TMP_FOLDER

    def progress() -> int:
        return Export.objects.get(pk=export.pk).progress_done

    # The job stops at the 30th image, after the first batches (4, 8 and 16 images).
    wait_until(
        lambda: progress() >= 10 and list(tmp.glob(f"{export.pk}-*/out/*.tar")),
        60,
        "the job to write part of the dataset",
        log=export_worker.log,
    )
    assert state_of(export.pk) == "running"
    assert not (Path(settings.EXPORT_DIR) / str(export.pk)).exists()

    path.unlink()  # the blocked open keeps the pipe; the next attempt reads the real file
    path.write_bytes(original)
    children = Path(f"/proc/{export_worker.popen.pid}/task/{export_worker.popen.pid}/children")
    pool = [int(pid) for pid in children.read_text().split()]
    assert len(pool) == 1
    # Its export worker processes, one of them blocked opening the pipe, end with it.
    copiers = [
        int(pid) for pid in Path(f"/proc/{pool[0]}/task/{pool[0]}/children").read_text().split()
    ]
    assert len(copiers) == 2
    os.kill(pool[0], signal.SIGKILL)
    wait_until(lambda: not any(map(running, copiers)), 10, "the export's worker processes to end")

    # The pool process died with the job unacknowledged: the worker hands it back, the same
    # job runs again, takes its export over and finishes it.
    wait_until(
        lambda: state_of(export.pk) in ("done", "failed"),
        90,
        "the export to be redone",
        log=export_worker.log,
    )
    export.refresh_from_db()
    assert (export.state, export.attempts) == ("done", 2), export.error
    with tarfile.open(export.location) as tar:
        tar.extractall(tmp_path / "got", filter="data")
    root = tmp_path / "got" / export.name
    assert len(ImageFolder(root / "train")) + len(ImageFolder(root / "val")) == 30
    assert list(tmp.iterdir()) == []
    assert Image.objects.filter(pk=stuck.pk).exists()
