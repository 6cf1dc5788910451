"""Faults with real services: Redis stopped while volunteers label; the database connection
dropped between and during requests."""

import contextlib
import io
import shutil
import subprocess
from unittest import mock

import psycopg
import pytest
import requests
from django.db import OperationalError, connection

from annotate import rows
from annotate.models import Export, QueuedJob, Vote
from annotate.services.ingest import images_upload
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory, image_bytes
from tests.processes import Process, free_port, wait_until, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that the test stops and restarts."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        self.process = None

    def start(self):
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for this test"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 10, "redis to start")

    def ping(self) -> bool:
        try:
            import redis

            return redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
        except Exception:
            return False

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.mark.celery
@pytest.mark.postgresql
def test_labeling_goes_on_while_redis_is_down_and_queued_work_completes_after(tmp_path):
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    project = ProjectFactory(min_votes=1, max_votes=1, agreement=1.0)
    label = LabelFactory(project=project)
    images_upload(
        project=project,
        files=[(f"{i}.png", io.BytesIO(image_bytes((10 * i, 2, 3), fmt="PNG"))) for i in range(4)],
    )
    volunteer = UserFactory()
    admin = UserFactory(role="admin")
    env = worker_env(
        DATABASE_URL=database_url(),
        REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        CELERY_QUEUE="celery",
        JOBS_FLUSH_SECONDS="1",
        LEASE_SWEEP_SECONDS="3600",
        REAGGREGATE_SECONDS="3600",
        DATA_DIR=str(tmp_path / "data"),
    )
    port = free_port()
    web = Process(["bin/web"], {**env, "PORT": str(port), "WEB_WORKERS": "1"}, tmp_path / "web.log")
    worker = Process(
        ["bin/worker", "--beat", "--without-mingle", "--without-gossip"],
        env,
        tmp_path / "worker.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(f"{base}/healthz"), 60, "the web server", log=web.log)
        wait_until(lambda: "ready." in worker.log(), 60, "the worker", log=worker.log)
        redis_server.stop()

        # Volunteers label with Redis down.
        token = _token(base, volunteer)
        for _ in range(4):
            lease = requests.post(
                f"{base}/api/projects/{project.pk}/assignments/", headers=token, timeout=10
            )
            assert lease.status_code == 201, lease.text
            vote = requests.post(
                f"{base}/api/assignments/{lease.json()['id']}/vote/",
                json={"label": label.pk},
                headers=token,
                timeout=10,
            )
            assert vote.status_code == 201, vote.text
        assert Vote.objects.filter(user=volunteer).count() == 4

        # An export asked for while Redis is down: recorded at once, its job waits in the outbox.
        started = requests.post(
            f"{base}/api/projects/{project.pk}/exports/",
            json={"val_fraction": 0.25},
            headers=_token(base, admin),
            timeout=30,
        )
        assert started.status_code == 202, started.text
        export_id = started.json()["id"]
        assert QueuedJob.objects.filter(task_name="annotate.export_run", args=[export_id]).exists()
        # Nothing can have started it with the broker down: the job waits in the outbox.
        assert Export.objects.get(pk=export_id).state == Export.State.PENDING

        # Redis returns: beat flushes the outbox and the worker does the work.
        redis_server.start()
        wait_until(
            lambda: Export.objects.get(pk=export_id).state == Export.State.DONE,
            90,
            "the queued export to complete",
            log=lambda: worker.log()[-3000:],
        )
        assert not QueuedJob.objects.exists()
    finally:
        web.stop()
        worker.stop()
        redis_server.stop()


def _ok(url) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _token(base, user) -> dict:
    from rest_framework.authtoken.models import Token

    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


@pytest.mark.postgresql
def test_a_dropped_database_connection_is_reopened_for_the_next_request(tmp_path):
    project = ProjectFactory()
    LabelFactory(project=project)
    ImageFactory(project=project)
    volunteer = UserFactory()
    port = free_port()
    env = worker_env(
        DATABASE_URL=database_url(),
        DEBUG="False",
        SECRET_KEY="fault-test",
        PORT=str(port),
        WEB_WORKERS="1",
        WEB_THREADS="1",
        DATA_DIR=str(tmp_path / "data"),
    )
    web = Process(["bin/web"], env, tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(f"{base}/healthz"), 60, "the web server", log=web.log)
        token = _token(base, volunteer)
        assert requests.get(f"{base}/api/projects/", headers=token, timeout=10).status_code == 200
        # The database ends the server's persistent connection (a failover or a restart would).
        mine = connection.cursor().connection.info.backend_pid
        db = connection.settings_dict
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
        ) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> %s",
                [db["NAME"], mine],
            ).fetchone()[0]
        assert ended >= 1
        # The next request checks its connection, opens a new one, and succeeds.
        response = requests.post(
            f"{base}/api/projects/{project.pk}/assignments/", headers=token, timeout=10
        )
        assert response.status_code == 201, response.text
    finally:
        web.stop()


@pytest.mark.parametrize("where", ["before COMMIT", "on the single write"])
def test_database_failure_mid_request_is_a_503_and_changes_nothing(client_for, where):
    project = ProjectFactory(min_votes=1, max_votes=1, agreement=1.0)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    client = client_for(UserFactory())
    assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
    lost = OperationalError("server closed the connection unexpectedly")
    if where == "before COMMIT":
        # The vote in a transaction (SQLite's, and PostgreSQL's when the rows changed since
        # they were read): the connection breaks after the vote's rows are written (with the
        # decision it makes and the voter's record), before the transaction commits.
        real_write = rows.write_together

        def written_then_lost(*args, **kwargs):
            real_write(*args, **kwargs)
            raise lost

        patches = [
            mock.patch("annotate.services.voting._vote_unless_changed", return_value=None),
            mock.patch("annotate.rows.write_together", side_effect=written_then_lost),
        ]
    else:
        # The vote as one write statement (PostgreSQL): the connection breaks on it.
        patches = [mock.patch("annotate.rows.write_together", side_effect=lost)]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        response = client.post(
            f"/api/assignments/{assignment['id']}/vote/", {"label": label.pk}, format="json"
        )
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "nothing was changed" in response.json()["detail"]
    assert not Vote.objects.exists()
    image.refresh_from_db()
    assert (image.votes_count, image.leases_count, image.state) == (0, 1, "open")
    retry = client.post(
        f"/api/assignments/{assignment['id']}/vote/", {"label": label.pk}, format="json"
    )
    assert retry.status_code == 201
