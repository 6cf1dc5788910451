"""`make run` on the embedded defaults (SQLite, local media, file-system broker): it serves the
demo, its worker processes Celery tasks, and Ctrl-C stops everything it started."""

import io
import signal
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from tests.factories import image_bytes
from tests.processes import Process, free_port, wait_until, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.celery]

PASSWORD = "smoke-test-password"
# How long other web processes may serve a project's settings they read before (annotate.recent).
READ_CACHE_SECONDS = 1


@pytest.fixture
def make_run(tmp_path):
    port = free_port()
    env = worker_env(
        DATABASE_URL=None,
        REDIS_URL=None,
        CELERY_QUEUE=None,
        TEST_DATABASE_NAME=None,
        DATA_DIR=str(tmp_path / "data"),
        PORT=str(port),
        DEMO_PASSWORD=PASSWORD,
        READ_CACHE_SECONDS=str(READ_CACHE_SECONDS),
    )
    venv = Path(sys.executable).parent.parent
    process = Process(["make", "run", f"VENV={venv}"], env, tmp_path / "make-run.log")
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/healthz", timeout=2).ok
        except requests.RequestException:  # refused, or too busy to answer yet
            return False

    try:
        wait_until(healthy, 180, "make run to serve", interval=0.5, log=process.log)
        yield base, process
    finally:
        if process.group_alive():
            process.stop(signal.SIGKILL, group=True, timeout=5)


def _images(base: str, project_id: int, headers: dict, ids: list[int]) -> list[dict]:
    """The listed images' rows from the images API (for a failure's message)."""
    rows, url = [], f"{base}/api/projects/{project_id}/images/?page_size=500"
    while url:
        page = requests.get(url, headers=headers).json()
        rows += [row for row in page["results"] if row["id"] in ids]
        url = page.get("next")
    return rows


def test_make_run_serves_the_demo_and_processes_tasks(make_run):
    base, process = make_run
    output = process.log()
    assert f"http://127.0.0.1:{base.rsplit(':', 1)[1]}/" in output
    assert PASSWORD in output  # it tells people how to sign in

    token = requests.post(
        f"{base}/api/auth/token/", json={"username": "admin", "password": PASSWORD}
    ).json()["token"]
    admin = {"Authorization": f"Token {token}"}
    projects = requests.get(f"{base}/api/projects/", headers=admin).json()["results"]
    demo = next(p for p in projects if p["name"] == "Demo: shapes")
    assert len(demo["labels"]) == 4 and demo["progress"]["open"] == 60

    # An upload is checked, stored and given its CNN copy.
    upload = requests.post(
        f"{base}/api/projects/{demo['id']}/images/",
        files=[
            ("files", ("new.png", io.BytesIO(image_bytes((9, 99, 199), fmt="PNG")), "image/png"))
        ],
        headers=admin,
    )
    assert upload.status_code == 201 and upload.json()["created"] == 1

    # The volunteer loop over HTTP: two users agree on 12 images, which decides them. Gold
    # checks (gold_rate) would make the two see different images: off for this count.
    assert requests.patch(
        f"{base}/api/projects/{demo['id']}/", json={"gold_rate": 0}, headers=admin
    ).ok
    # Until every web process reads the change, a lease there may still be a gold check (CI
    # once saw 171 decided: the volunteer's 12 leases held one gold image).
    time.sleep(READ_CACHE_SECONDS + 0.5)
    vtoken = requests.post(
        f"{base}/api/auth/token/", json={"username": "volunteer", "password": PASSWORD}
    ).json()["token"]
    volunteer = {"Authorization": f"Token {vtoken}"}
    labels = [label["id"] for label in demo["labels"]]
    leased: dict[str, list[int]] = {"volunteer": [], "admin": []}
    for who, headers in (("volunteer", volunteer), ("admin", admin)):
        for _ in range(12):
            lease = requests.post(f"{base}/api/projects/{demo['id']}/assignments/", headers=headers)
            assert lease.status_code == 201
            body = lease.json()
            leased[who].append(body["image"]["id"])
            if headers is volunteer:
                image = requests.get(base + body["image"]["url"], headers=volunteer)
                assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"
            label = labels[body["image"]["id"] % len(labels)]
            vote = requests.post(
                f"{base}/api/assignments/{body['id']}/vote/", json={"label": label}, headers=headers
            )
            assert vote.status_code == 201
    decided = requests.get(f"{base}/api/projects/{demo['id']}/", headers=admin).json()["progress"][
        "consensus"
    ]
    # Closest-to-a-decision first: the admin is served the very images the volunteer voted on.
    assert sorted(leased["admin"]) == sorted(leased["volunteer"]), (leased, process.log()[-4000:])
    assert decided == 12 + 160, (leased, _images(base, demo["id"], admin, leased["admin"]))

    # The embedded worker runs a real job: an export of the decided images, downloaded as a tar.
    started = requests.post(
        f"{base}/api/projects/{demo['id']}/exports/", json={"val_fraction": 0.3}, headers=admin
    )
    assert started.status_code == 202, started.text
    export_url = f"{base}/api/exports/{started.json()['id']}/"
    done = wait_until(
        lambda: (lambda e: e if e["state"] in ("done", "failed") else None)(
            requests.get(export_url, headers=admin).json()
        ),
        120,
        "the worker to run the export",
        log=process.log,
    )
    assert done["state"] == "done", done
    download = requests.get(export_url + "download/", headers=admin)
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        jpegs = [name for name in tar.getnames() if name.endswith(".JPEG")]
    assert len(jpegs) == 12

    page = requests.get(f"{base}/accounts/login/")
    assert page.status_code == 200 and "Sign in" in page.text
    static = requests.get(f"{base}/static/annotate/label.js")
    assert static.status_code == 200 and "assignments" in static.text

    # Ctrl-C in the terminal: SIGINT to the whole foreground process group.
    process.stop(signal.SIGINT, group=True, timeout=30)
    assert not process.group_alive(), "make run left processes behind"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)
    assert "Stopped." in process.log()
