"""Beyond one machine: two web hosts and two worker hosts that share no folder, only PostgreSQL,
Redis and an S3 server (moto's, tests/s3.py). Each process has a DATA_DIR of its own, so any
file one of them needed from another's disk would fail here.

Web A takes the upload; worker B (WORKER_QUEUES=ml, as on a GPU host) trains and suggests; web
B shows the suggestion and serves the image; worker A builds an export that web B hands out by
a signed URL of the bucket; then worker A is killed mid-export and worker B finishes the job
(Redis gives the unacknowledged task to another worker once CELERY_VISIBILITY_TIMEOUT passed).
"""

import io
import random
import signal
import subprocess
import sys
import tarfile
import uuid

import pytest
import requests
from rest_framework.authtoken.models import Token

from annotate.models import Export, Image, Label, Suggestion, TrainingRun, User
from tests.factories import ProjectFactory, UserFactory
from tests.ml_data import COLOURS, colour_image
from tests.processes import REPO, Process, free_port, wait_until, worker_env
from tests.test_faults import PrivateRedis
from tests.worker.test_worker import database_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]

# A small quick model on one thread (the test machine is shared).
ML_ENV = {
    "ML_IMAGE_SIZE": "32",
    "ML_EPOCHS": "2",
    "ML_BATCH_SIZE": "8",
    "ML_THREADS": "1",
    "ML_PRETRAINED": "false",
    "ML_MIN_STEPS": "0",
}
VISIBILITY_SECONDS = 15


def token(user: User) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


class Hosts:
    """The processes of the test, each with its own DATA_DIR."""

    def __init__(self, tmp_path, shared: dict[str, str]):
        self.tmp_path = tmp_path
        self.shared = shared
        self.started: list[Process] = []

    def env(self, host: str, **more: str) -> dict[str, str]:
        data_dir = self.tmp_path / host
        data_dir.mkdir(exist_ok=True)
        return worker_env(**self.shared, DATA_DIR=str(data_dir), **more)

    def web(self, host: str) -> str:
        port = free_port()
        env = self.env(host, PORT=str(port), WEB_WORKERS="1", WEB_THREADS="2", ACCESS_LOG="off")
        process = Process(["bin/web"], env, self.tmp_path / f"{host}.log")
        self.started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(base), 90, f"{host} to answer", log=process.log)
        return base

    def worker(self, host: str, queues: str) -> Process:
        process = Process(
            [
                "bin/worker",
                "--hostname",
                f"{host}@multi-host-test",
                "--without-gossip",
                "--without-mingle",
            ],
            self.env(host, WORKER_QUEUES=queues, WORKER_CONCURRENCY="1"),
            self.tmp_path / f"{host}.log",
        )
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.stop(group=True)


def test_web_and_workers_on_separate_hosts_share_only_the_database_redis_and_s3(
    tmp_path, s3_server
):
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    bucket = s3_server.new_bucket()
    queue = f"multi-{uuid.uuid4().hex[:8]}"
    shared = {
        "DATABASE_URL": database_url(),
        "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "CELERY_QUEUE": queue,
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_SECONDS),
        "CELERY_RESTORE_SECONDS": "1",
        "EXPORT_PROCESSES": "1",
        **s3_server.environment(bucket),
        **ML_ENV,
    }
    hosts = Hosts(tmp_path, shared)
    try:
        worker_a = hosts.worker("worker-a", queue)
        worker_b = hosts.worker("worker-b", f"{queue}-ml")
        web_a, web_b = hosts.web("web-a"), hosts.web("web-b")
        for worker in (worker_a, worker_b):
            wait_until(lambda w=worker: "ready." in w.log(), 90, "a worker", log=worker.log)

        # suggestion_threshold 0: a tiny model's suggestion is shown whatever its confidence.
        project = ProjectFactory(min_votes=1, max_votes=1, suggestion_threshold=0.0)
        labels = [
            Label.objects.create(project=project, wnid=c, name=c, position=i)
            for i, c in enumerate(COLOURS)
        ]
        admin = token(UserFactory(role=User.Role.ADMIN))

        # Upload through web A: gold (verified) images of each colour, and two open ones each.
        rng = random.Random(3)
        for label in labels:
            files = [
                ("files", (f"{label.wnid}-{i}.jpg", colour_image(label.wnid, rng)))
                for i in range(8)
            ]
            response = requests.post(
                f"{web_a}/api/projects/{project.pk}/images/",
                data={"gold_label": label.wnid},
                files=files,
                headers=admin,
                timeout=60,
            )
            assert response.status_code == 201, response.text
            files = [
                ("files", (f"{label.wnid}-open-{i}.jpg", colour_image(label.wnid, rng)))
                for i in range(2)
            ]
            response = requests.post(
                f"{web_a}/api/projects/{project.pk}/images/", files=files, headers=admin, timeout=60
            )
            assert response.status_code == 201, response.text
        assert Image.objects.filter(project=project).count() == 30
        assert len(s3_server.keys(bucket, "preprocessed/")) == 30
        assert not any((tmp_path / "web-a").rglob("*.jpg"))  # nothing on web A's disk

        # A training on worker B, the ML host, which reads the images from the bucket.
        response = requests.post(
            f"{web_b}/api/projects/{project.pk}/models/train/", json={}, headers=admin, timeout=30
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        wait_until(
            lambda: TrainingRun.objects.get(pk=run_id).status in ("succeeded", "failed"),
            150,
            "the training on worker B",
            interval=0.5,
            log=lambda: worker_b.log()[-4000:],
        )
        run = TrainingRun.objects.get(pk=run_id)
        assert (run.status, run.promoted, run.error) == ("succeeded", True, "")
        # The cache's account of the run is logged as the task ends, just after the run is
        # marked succeeded.
        wait_until(
            lambda: "image cache, training run" in worker_b.log(),
            30,
            "worker B to log the training's image cache figures",
            log=lambda: worker_b.log()[-4000:],
        )
        assert f"models/project-{project.pk}/run-{run_id}.pt" in s3_server.keys(bucket, "models/")

        # Suggestions for the open images, computed on worker B, visible through web B.
        open_ids = set(
            Image.objects.filter(project=project, state=Image.State.OPEN).values_list(
                "pk", flat=True
            )
        )
        wait_until(
            lambda: Suggestion.objects.filter(image_id__in=open_ids).count() == len(open_ids),
            60,
            "suggestions for the open images",
            interval=0.5,
            log=lambda: worker_b.log()[-4000:],
        )
        volunteer = token(UserFactory())
        lease = requests.post(
            f"{web_b}/api/projects/{project.pk}/assignments/", headers=volunteer, timeout=30
        )
        assert lease.status_code == 201, lease.text
        assert lease.json()["image"]["id"] in open_ids
        assert lease.json()["suggestion"]["label"] in {label.pk for label in labels}
        image_file = requests.get(
            f"{web_b}/api/images/{lease.json()['image']['id']}/file/", headers=volunteer, timeout=30
        )
        assert image_file.status_code == 200 and image_file.content[:2] == b"\xff\xd8"

        # An export built by worker A (the only one on the default queue), downloaded through
        # web B: a redirect to a signed URL of the bucket.
        options = {"include_gold": True, "val_fraction": 0.25}
        response = requests.post(
            f"{web_a}/api/projects/{project.pk}/exports/", json=options, headers=admin, timeout=30
        )
        assert response.status_code == 202, response.text
        first = response.json()["id"]
        wait_until(
            lambda: Export.objects.get(pk=first).state in ("done", "failed"),
            90,
            "the export on worker A",
            interval=0.3,
            log=lambda: worker_a.log()[-4000:],
        )
        export = Export.objects.get(pk=first)
        assert (export.state, export.error) == ("done", "")
        assert export.location.startswith(f"storage:exports/{first}/")
        download = requests.get(f"{web_b}/api/exports/{first}/download/", headers=admin, timeout=60)
        assert download.status_code == 200 and download.history[0].status_code == 302
        assert download.url.startswith(s3_server.endpoint)
        with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
            jpegs = [m for m in tar.getmembers() if m.name.endswith(".JPEG")]
        assert len(jpegs) == 24

        # Worker A dies mid-export: worker B (given the default queue too) finishes the job.
        response = requests.post(
            f"{web_b}/api/projects/{project.pk}/exports/", json=options, headers=admin, timeout=30
        )
        second = response.json()["id"]
        wait_until(
            lambda: Export.objects.get(pk=second).state != Export.State.PENDING,
            60,
            "worker A to take the second export",
            interval=0.01,
        )
        worker_a.signal_group(signal.SIGSTOP)  # frozen at once, then killed with its children
        assert Export.objects.get(pk=second).state == Export.State.RUNNING
        worker_a.stop(signal.SIGKILL, group=True)
        added = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery",
                "control",
                "add_consumer",
                queue,
                "-d",
                "worker-b@multi-host-test",
                "--timeout",
                "30",  # a loaded machine may answer late; no reply would fail the test
            ],
            cwd=REPO,
            env=hosts.env("control"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "add consumer" in (added.stdout + added.stderr).lower(), added.stdout + added.stderr
        wait_until(
            lambda: Export.objects.get(pk=second).state in ("done", "failed"),
            VISIBILITY_SECONDS + 90,
            "worker B to finish the export worker A left",
            interval=0.5,
            log=lambda: worker_b.log()[-4000:],
        )
        export = Export.objects.get(pk=second)
        assert (export.state, export.attempts, export.error) == ("done", 2, "")
        assert "Task annotate.export_run[" in worker_b.log()
        download = requests.get(
            f"{web_a}/api/exports/{second}/download/", headers=admin, timeout=60
        )
        assert download.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
            assert len([m for m in tar.getmembers() if m.name.endswith(".JPEG")]) == 24
        # Only the finished attempt is in the bucket (the killed one never uploaded).
        assert {key.split("/")[2] for key in s3_server.keys(bucket, f"exports/{second}/")} == {
            export.location.split("/")[2]
        }
    finally:
        hosts.stop()
        redis_server.stop()
