"""The volunteer loop under load, beside a floor measured in the same server and run.

Creates a PostgreSQL database of its own, seeds a project (100,000 images and about 300,000
votes by default, with their assignments and decisions, by COPY), starts gunicorn with the
production settings (DEBUG off, persistent connections, Redis), and drives simulated
volunteers with an async HTTP client:

1. closed loop: C volunteers (1, 8, 32) lease and vote with no pause, for --duration seconds;
   and the same C clients hit a minimal endpoint doing one indexed SELECT and one INSERT
   (the floor) as long, the two alternating in --rounds blocks each. Prints requests/s of
   both and their ratio, the ratio of each round, and latency percentiles per call.
2. open loop: labels started at a steady --rate per second (lease, then vote), each by the next
   idle one of --volunteers; by default 32 volunteers each labeling an image a second, a fast
   keyboard pace (the issue's "32 volunteers" at human speed, where the closed loop has them
   ask again the moment an answer comes). Prints p50/p95/p99 of each call.
3. EXPLAIN ANALYZE of the serving query, and the invariants: no duplicate vote, no image over
   max_votes, every counter equal to its rows.

With --scale it runs the open loop at 10,000 and at 1,000,000 images and prints the ratio.
With --many-labels N it seeds a second project like the first but with N labels (ILSVRC has
1,000) and adds its lease+vote loop to the closed loop's alternating blocks: requests/s at N
labels beside 10 labels in the same run, their ratio (target: within 10%), and the size of a
lease answer in each.
With --two-hosts it starts a second web server set (its own gunicorn, --workers processes,
DATA_DIR and port: what a second web host runs) against the same database and Redis, and adds
blocks in which the volunteers are split between the two sets (even ones to the first, odd
ones to the second, as a load balancer would) to the closed loop's alternation: requests/s with
two sets beside one, and their ratio. On one machine both sets share its cores and the
database shares them too, so the ratio shows what the second set's processes add there, not
what a second machine would.
With --verify it seeds a verify project (task "verify", grids of 24; --verify-labels labels, one
open candidate for each of --images images of its own, 40% of them right) and adds blocks of
grid lease+answer to the closed loop's alternation: each volunteer leases a grid, marks the
items it takes for right (as a volunteer of ACCURACY would) and answers it. Prints its
requests/s and items/s beside the single-image loop's labels/s, per round and overall, and
checks the candidates' counters after the run.

    python bench/volunteer_load.py [--images 100000] [--votes 300000] [--duration 20]
    python bench/volunteer_load.py --scale
    python bench/volunteer_load.py --many-labels 1000
With --through-proxy it also starts bin/proxy (nginx) in front of the same gunicorn and adds
blocks of lease+vote through it to the alternation: requests/s through nginx beside straight to
gunicorn, per round and overall (target: within 10%).

    python bench/volunteer_load.py --verify
    python bench/volunteer_load.py --two-hosts
    python bench/volunteer_load.py --through-proxy
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MIN_VOTES, MAX_VOTES = 3, 5
LABELS = 10
# Simulated volunteers give an image's true label with this probability, else one of the
# others at random: most images are then decided at their third vote, as with real crowds.
# (Until 2026-11-27 the bench voted a fixed label per volunteer, which decided few images.)
ACCURACY = 0.8
# The verify project: grids of the most items a project allows, over labels with many
# candidates each, of which this share shows its label (search results are worse, a model's
# top-k better).
GRID_SIZE = 24
VERIFY_LABELS = 100
RIGHT_SHARE = 0.4


def candidate_right(image_id: int) -> bool:
    """Whether the seeded candidate of a verify-project image shows its label."""
    return (image_id * 7919) % 100 < RIGHT_SHARE * 100


def true_label(labels: list[int], image_id: int) -> int:
    return labels[(image_id * 7919) % len(labels)]


def answer(labels: list[int], image_id: int, rng) -> int:
    """A simulated volunteer's vote on an image."""
    truth = true_label(labels, image_id)
    if rng.random() < ACCURACY:
        return truth
    return rng.choice([label for label in labels if label != truth])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- database ---------------------------------------------------------------------------------


def create_database() -> str:
    import psycopg

    name = f"bench_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def setup_django(name: str) -> None:
    os.environ["DATABASE_URL"] = database_url(name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    os.environ.setdefault("DATA_DIR", f"/tmp/{name}")
    import django

    django.setup()


def copy_rows(cursor, model, rows, overrides_fn) -> None:
    """COPY `rows` into `model`'s table; columns not given take the field's default, so a
    field added to a model later needs no change here."""
    fields = list(model._meta.concrete_fields)
    columns = ", ".join(f'"{f.column}"' for f in fields)
    with cursor.copy(f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            values = overrides_fn(row)
            copy.write_row(
                [values[f.attname] if f.attname in values else _default(f) for f in fields]
            )


def _default(field):
    if field.has_default():
        value = field.get_default()
        return value
    if field.null:
        return None
    if field.get_internal_type() in ("CharField", "TextField", "FileField"):
        return ""
    raise ValueError(f"no value for {field.model.__name__}.{field.attname}")


def seed(
    *,
    images: int,
    votes_target: int,
    volunteers: int,
    seed_users: int = 2000,
    labels: int = LABELS,
    name: str = "load",
) -> dict:
    """A project mid-way: images with 0-5 votes (decided at 3+), their votes, assignments and
    decisions; then `volunteers` fresh users with tokens for the load. Called again (another
    `name`), it seeds another project beside the first, with the same users."""
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotate.models import (
        AnnotatorStats,
        Assignment,
        Decision,
        Image,
        Label,
        Project,
        User,
        Vote,
    )
    from annotate.rows import names
    from annotate.services.reliability import estimated_accuracy
    from annotate.services.serving import image_capacity

    rng = np.random.default_rng(1)
    project = Project.objects.create(
        name=name, min_votes=MIN_VOTES, max_votes=MAX_VOTES, agreement=0.6
    )
    # Labels shaped like ILSVRC's: a wnid, names, synonyms and a gloss of typical lengths.
    created = Label.objects.bulk_create(
        Label(
            project=project,
            wnid=f"n{i:08d}",
            name=f"class {i}, another name of class {i}",
            synonyms=[f"synonym {i}"],
            gloss=f"the definition of class {i}, as long as a typical WordNet gloss is ({i})",
            parent_wnid=f"n{90_000_000 + i // 10:08d}",
            parent_name=f"parent {i // 10}",
            position=i,
        )
        for i in range(labels)
    )
    label_ids = [label.pk for label in created]
    first_project = not User.objects.filter(username="seed0").exists()
    # Ids go on from those of a project seeded before.
    with connection.cursor() as cursor:
        bases = {}
        for model in (Image, Assignment, Vote, Decision, AnnotatorStats):
            table = model._meta.db_table
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {names.quoted(table)}")
            bases[model._meta.model_name] = cursor.fetchone()[0]
    now = datetime.now(UTC)
    mean = votes_target / images
    # Votes per image: a spread around the target mean, capped at max_votes.
    per_image = np.clip(rng.poisson(mean, images), 0, MAX_VOTES)
    base_user = 1_000_000
    with connection.cursor() as django_cursor:
        cursor = django_cursor.connection.cursor()
        copy_rows(
            cursor,
            User,
            range(seed_users if first_project else 0),
            lambda i: {
                "id": base_user + i,
                "username": f"seed{i}",
                "password": "!",
                "role": "volunteer",
                "is_superuser": False,
                "is_staff": False,
                "is_active": True,
                "date_joined": now,
                "first_name": "",
                "last_name": "",
                "email": "",
                "votes_count": 0,
            },
        )

        def image_row(i):
            v = int(per_image[i])
            state = "consensus" if v >= MIN_VOTES else "open"
            free = (
                image_capacity(votes_count=v, min_votes=MIN_VOTES, max_votes=MAX_VOTES)
                if state == "open"
                else 0
            )
            return {
                "id": bases["image"] + i + 1,
                "created_at": now,
                "updated_at": now,
                "project_id": project.pk,
                "file": f"images/{name}/{i}.jpg",
                "original_name": f"{i}.jpg",
                "sha256": f"{i:064x}",
                "size_bytes": 1000,
                "format": "JPEG",
                "width": 500,
                "height": 375,
                "state": state,
                "votes_count": v,
                "leases_count": 0,
                "free_slots": free,
            }

        copy_rows(cursor, Image, range(images), image_row)
        voters = [rng.choice(seed_users, size=int(v), replace=False) for v in per_image]
        pairs = [(bases["image"] + i + 1, int(u)) for i, users in enumerate(voters) for u in users]
        # Each seeded vote as a simulated volunteer gives it (see answer()).
        pair_images = np.array([image for image, _ in pairs])
        truth = (pair_images * 7919) % labels
        wrong = rng.random(len(pairs)) >= ACCURACY
        picked = np.where(wrong, (truth + rng.integers(1, labels, len(pairs))) % labels, truth)
        answers = [label_ids[int(k)] for k in picked]
        copy_rows(
            cursor,
            Assignment,
            range(len(pairs)),
            lambda k: {
                "id": bases["assignment"] + k + 1,
                "created_at": now,
                "updated_at": now,
                "image_id": pairs[k][0],
                "user_id": base_user + pairs[k][1],
                "state": "voted",
                "expires_at": now,
            },
        )
        copy_rows(
            cursor,
            Vote,
            range(len(pairs)),
            lambda k: {
                "id": bases["vote"] + k + 1,
                "created_at": now,
                "updated_at": now,
                "image_id": pairs[k][0],
                "user_id": base_user + pairs[k][1],
                "assignment_id": bases["assignment"] + k + 1,
                "label_id": answers[k],
            },
        )
        # Images with MIN_VOTES or more are decided, for their most common answer; each seed
        # user's record (votes, votes on decided images, agreeing ones) follows from that.
        by_image: dict[int, list[int]] = {}
        for k, (image, _) in enumerate(pairs):
            by_image.setdefault(image, []).append(k)
        decision_of = {}
        for image, ks in by_image.items():
            if len(ks) >= MIN_VOTES:
                decision_of[image] = Counter(answers[k] for k in ks).most_common(1)[0]
        decided = sorted(decision_of)
        copy_rows(
            cursor,
            Decision,
            range(len(decided)),
            lambda k: {
                "id": bases["decision"] + k + 1,
                "created_at": now,
                "updated_at": now,
                "image_id": decided[k],
                "label_id": decision_of[decided[k]][0],
                "excluded": False,
                "rule": "majority",
                "confidence": decision_of[decided[k]][1] / len(by_image[decided[k]]),
                "votes_count": len(by_image[decided[k]]),
                "is_current": True,
            },
        )
        records = np.zeros((seed_users, 3), dtype=np.int64)  # votes, decided, agreed
        for k, (image, user) in enumerate(pairs):
            records[user, 0] += 1
            if image in decision_of:
                records[user, 1] += 1
                records[user, 2] += int(answers[k] == decision_of[image][0])
        copy_rows(
            cursor,
            AnnotatorStats,
            range(seed_users),
            lambda u: {
                "id": bases["annotatorstats"] + u + 1,
                "created_at": now,
                "updated_at": now,
                "project_id": project.pk,
                "user_id": base_user + u,
                "votes": int(records[u, 0]),
                "decided_votes": int(records[u, 1]),
                "agreed_votes": int(records[u, 2]),
                "gold_votes": 0,
                "gold_correct": 0,
                "estimated_accuracy": estimated_accuracy(
                    gold_votes=0,
                    gold_correct=0,
                    decided_votes=int(records[u, 1]),
                    agreed_votes=int(records[u, 2]),
                ),
            },
        )
        cursor.execute(
            names.sql(
                "UPDATE {User} u SET {User.votes_count} = (SELECT sum(s.{AnnotatorStats.votes})"
                " FROM {AnnotatorStats} s WHERE s.{AnnotatorStats.user} = u.{User.id})"
                " WHERE u.{User.username} LIKE 'seed%%'"
            )
        )
        for model in (User, Image, Assignment, Vote, Decision, AnnotatorStats):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'),"
                f" (SELECT max(id) FROM {names.quoted(model._meta.db_table)}))",
                [model._meta.db_table],
            )
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor"
            " (id bigserial PRIMARY KEY, image_id bigint, at timestamptz DEFAULT now())"
        )
    # Freshly copied rows: vacuum now (hint bits, visibility map, statistics), as a database in
    # steady state would be, or autovacuum does it in the middle of the measurement.
    import psycopg

    with psycopg.connect(database_url(connection.settings_dict["NAME"]), autocommit=True) as admin:
        admin.execute("VACUUM (ANALYZE, FREEZE)")
    tokens = []
    for i in range(volunteers):
        user, _ = User.objects.get_or_create(username=f"load{i}")
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return {
        "project": project.pk,
        "labels": label_ids,
        "tokens": tokens,
        "votes": len(pairs),
        "open": int((per_image < MIN_VOTES).sum()),
    }


def seed_verify(*, images: int, labels: int, tokens: list[str]) -> dict:
    """A verify project beside the classify ones: `images` open images of its own, held out of
    the classify queue, each with one open candidate label (`images / labels` per label), by
    COPY with ids going on from the rows already there. No votes yet (unlike the classify
    projects, seeded mid-way): no grids, items or candidate votes to seed consistently. The
    volunteers are those of seed()."""
    import psycopg
    from django.db import connection

    from annotate.models import Candidate, Image, Label, Project
    from annotate.rows import names

    project = Project.objects.create(
        name="load-verify",
        task=Project.Task.VERIFY,
        gold_rate=0.0,
        grid_size=GRID_SIZE,
        min_votes=MIN_VOTES,
        max_votes=MAX_VOTES,
    )
    created = Label.objects.bulk_create(
        Label(
            project=project,
            wnid=f"n{50_000_000 + i:08d}",
            name=f"synset {i}, another name of synset {i}",
            synonyms=[f"synonym {i}"],
            gloss=f"the definition of synset {i}, as long as a typical WordNet gloss is ({i})",
            position=i,
        )
        for i in range(labels)
    )
    label_ids = [label.pk for label in created]
    with connection.cursor() as django_cursor:
        cursor = django_cursor.connection.cursor()
        bases = {}
        for model in (Image, Candidate):
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {names.quoted(model._meta.db_table)}")
            bases[model._meta.model_name] = cursor.fetchone()[0]
        now = datetime.now(UTC)
        copy_rows(
            cursor,
            Image,
            range(images),
            lambda i: {
                "id": bases["image"] + i + 1,
                "created_at": now,
                "updated_at": now,
                "project_id": project.pk,
                "file": f"images/verify/{i}.jpg",
                "original_name": f"n{50_000_000 + i % labels:08d}/{i}.jpg",
                "sha256": f"{10**12 + i:064x}",
                "size_bytes": 1000,
                "format": "JPEG",
                "width": 500,
                "height": 375,
                "state": "open",
                "votes_count": 0,
                "leases_count": 0,
                "free_slots": 0,  # held for verification, as candidates_add does
            },
        )
        copy_rows(
            cursor,
            Candidate,
            range(images),
            lambda i: {
                "id": bases["candidate"] + i + 1,
                "created_at": now,
                "updated_at": now,
                "project_id": project.pk,
                "image_id": bases["image"] + i + 1,
                "label_id": label_ids[i % labels],
                "source": "import",
                "state": "open",
                "is_gold": False,
                "yes_count": 0,
                "no_count": 0,
                "leases_count": 0,
            },
        )
        for model in (Image, Candidate):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'),"
                f" (SELECT max(id) FROM {names.quoted(model._meta.db_table)}))",
                [model._meta.db_table],
            )
    with psycopg.connect(database_url(connection.settings_dict["NAME"]), autocommit=True) as admin:
        admin.execute("VACUUM (ANALYZE, FREEZE)")
    return {"project": project.pk, "labels": label_ids, "tokens": tokens, "candidates": images}


# --- server -----------------------------------------------------------------------------------


def start_server(name: str, port: int, workers: int, host: str = "") -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEBUG": "False",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(name),
        "REDIS_URL": REDIS_URL,
        "CELERY_QUEUE": f"bench-{name}",
        "BENCH_FLOOR_ENDPOINT": "True",
        "PORT": str(port),
        "WEB_WORKERS": str(workers),
        "WEB_THREADS": "1",
        "ACCESS_LOG": "off",
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": f"/tmp/{name}{host}",
    }
    server = subprocess.Popen([str(REPO / "bin" / "web")], env=env, start_new_session=True)
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                return server
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(name: str, port: int, upstream_port: int) -> subprocess.Popen:
    """bin/proxy's nginx on `port` in front of gunicorn on `upstream_port`."""
    env = {
        **os.environ,
        "PROXY_PORT": str(port),
        "PROXY_UPSTREAM": f"127.0.0.1:{upstream_port}",
        "PROXY_RUN_DIR": f"/tmp/{name}/proxy",
        "PROXY_WORKERS": "1",
        "ACCESS_LOG": "off",
        "DATA_DIR": f"/tmp/{name}",
    }
    proxy = subprocess.Popen([str(REPO / "bin" / "proxy")], env=env, start_new_session=True)
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                return proxy
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("nginx did not start")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


# --- load -------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.lease_bytes: list[int] = []  # size of each lease answer's body
        self.items_rates: list[float] = []  # grid items answered per second, each block
        self.exhausted = 0  # grid leases answered 204: nothing left for the volunteer

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def line(self, kind: str) -> str:
        values = sorted(self.latencies.get(kind, []))
        if not values:
            return f"{kind:6s} no samples"
        pct = lambda p: values[min(len(values) - 1, int(p * len(values)))] * 1000  # noqa: E731
        return (
            f"{kind:6s} n={len(values):6d}  p50 {pct(0.50):6.1f} ms  p95 {pct(0.95):6.1f} ms  "
            f"p99 {pct(0.99):6.1f} ms  max {values[-1] * 1000:6.1f} ms  "
            f"errors {self.errors.get(kind, 0)}"
        )


async def label_once(session, base, seeded, token, rng, recorder) -> bool:
    headers = {"Authorization": f"Token {token}"}
    start = time.perf_counter()
    async with session.post(
        f"{base}/api/projects/{seeded['project']}/assignments/", headers=headers
    ) as r:
        if r.status != 201:
            await r.read()
            recorder.error("lease")
            return False
        raw = await r.read()
        body = json.loads(raw)
    recorder.add("lease", time.perf_counter() - start)
    recorder.lease_bytes.append(len(raw))
    start = time.perf_counter()
    label = answer(seeded["labels"], body["image"]["id"], rng)
    async with session.post(
        f"{base}/api/assignments/{body['id']}/vote/", json={"label": label}, headers=headers
    ) as r:
        await r.read()
        if r.status != 201:
            recorder.error("vote")
            return False
    recorder.add("vote", time.perf_counter() - start)
    return True


async def grid_once(session, base, seeded, token, rng, recorder) -> int:
    """Lease a grid and answer it, marking yes the items a volunteer of ACCURACY takes for
    right; the number of items answered (0 on failure)."""
    headers = {"Authorization": f"Token {token}"}
    start = time.perf_counter()
    async with session.post(
        f"{base}/api/projects/{seeded['project']}/grids/", headers=headers
    ) as r:
        raw = await r.read()
        if r.status == 204:
            recorder.exhausted += 1
            return 0
        if r.status != 201:
            recorder.error("grid")
            return 0
        body = json.loads(raw)
    recorder.add("grid", time.perf_counter() - start)
    recorder.lease_bytes.append(len(raw))
    yes = [
        item["id"]
        for item in body["items"]
        if candidate_right(item["image"]["id"]) == (rng.random() < ACCURACY)
    ]
    start = time.perf_counter()
    async with session.post(
        f"{base}/api/grids/{body['id']}/answers/", json={"yes": yes}, headers=headers
    ) as r:
        await r.read()
        if r.status != 201:
            recorder.error("answer")
            return 0
    recorder.add("answer", time.perf_counter() - start)
    return len(body["items"])


async def closed_loop(
    base,
    seeded,
    concurrency,
    duration,
    floor: bool,
    recorder: Recorder | None = None,
    grids: bool = False,
    other_base: str | None = None,
) -> tuple[float, Recorder]:
    """Requests/s of `concurrency` volunteers asking with no pause: lease+vote, the floor, or
    (`grids`) grid lease+answer, whose items/s go to recorder.items_rates. With `other_base`
    the odd volunteers ask that server instead (a second web host behind a load balancer)."""
    import aiohttp

    recorder = recorder or Recorder()
    done = 0
    items = 0
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def volunteer(i):
            nonlocal done, items
            base_of_i = other_base if other_base is not None and i % 2 else base
            token = seeded["tokens"][i]
            rng = random.Random(i)
            while time.perf_counter() < deadline:
                if floor:
                    start = time.perf_counter()
                    async with session.post(
                        f"{base}/bench/floor/{1 + (done * 7919) % 10000}/"
                    ) as r:
                        await r.read()
                        ok = r.status == 201
                    if ok:
                        recorder.add("floor", time.perf_counter() - start)
                        done += 1
                    else:
                        recorder.error("floor")
                elif grids:
                    answered = await grid_once(session, base, seeded, token, rng, recorder)
                    if answered:
                        done += 2  # two requests: grid lease and answer
                        items += answered
                    else:
                        await asyncio.sleep(0.01)  # none left, or an error: no busy loop
                elif await label_once(session, base_of_i, seeded, token, rng, recorder):
                    done += 2  # two requests: lease and vote

        started = time.perf_counter()
        await asyncio.gather(*(volunteer(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    if grids:
        recorder.items_rates.append(items / elapsed)
    return done / elapsed, recorder


async def open_loop(base, seeded, rate, duration, volunteers) -> tuple[Recorder, float, int]:
    """Start a label every 1/rate s, each by the next idle volunteer; report call latencies
    and how late the generator started labels (it must keep up for the figures to count)."""
    import aiohttp

    recorder = Recorder()
    idle: asyncio.Queue[int] = asyncio.Queue()
    rngs = [random.Random(i) for i in range(volunteers)]
    for i in range(volunteers):
        idle.put_nowait(i)
    lateness = []
    tasks = []
    connector = aiohttp.TCPConnector(limit=volunteers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i):
            try:
                await label_once(session, base, seeded, seeded["tokens"][i], rngs[i], recorder)
            finally:
                idle.put_nowait(i)

        start = time.perf_counter()
        total = int(rate * duration)
        for n in range(total):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            i = await idle.get()
            lateness.append(time.perf_counter() - scheduled)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - start)
    return recorder, achieved, int(np.percentile(np.array(lateness) * 1000, 99))


# --- checks -----------------------------------------------------------------------------------


def explain_serving(seeded) -> str:
    from django.db import connection, transaction

    from annotate.models import Project, User
    from annotate.services.serving import serving_query

    project = Project.objects.get(pk=seeded["project"])
    user = User.objects.get(username="load0")
    sql, params = serving_query(project=project, user=user)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN ANALYZE " + sql, params)
        return "\n".join(line for (line,) in cursor.fetchall())


def invariants() -> list[str]:
    from django.db import connection

    from annotate.rows.names import sql

    problems = []
    checks = {
        "duplicate votes": sql(
            "SELECT count(*) FROM (SELECT {Vote.user}, {Vote.image} FROM {Vote}"
            " GROUP BY 1, 2 HAVING count(*) > 1) d"
        ),
        "images over max_votes": sql(
            "SELECT count(*) FROM {Image} WHERE {Image.votes_count} > {most}", most=MAX_VOTES
        ),
        "vote counters off": sql(
            "SELECT count(*) FROM {Image} i WHERE {Image.votes_count} <> (SELECT count(*)"
            " FROM {Vote} v WHERE v.{Vote.image} = i.{Image.id})"
        ),
        "lease counters off": sql(
            "SELECT count(*) FROM {Image} i WHERE {Image.leases_count} <> (SELECT count(*)"
            " FROM {Assignment} a WHERE a.{Assignment.image} = i.{Image.id}"
            " AND a.{Assignment.state} = 'active')"
        ),
    }
    with connection.cursor() as cursor:
        for name, sql in checks.items():
            cursor.execute(sql)
            count = cursor.fetchone()[0]
            problems.append(f"{name}: {count}")
    return problems


def verify_invariants(seeded) -> list[str]:
    """The verify project's candidates after the run: counters equal to their rows, none over
    max_votes, and how many are still open for grids."""
    from django.db.models import Count, F, Q

    from annotate.models import Candidate, CandidateVote

    candidates = Candidate.objects.filter(project_id=seeded["project"])
    votes = candidates.annotate(
        voted=Count("votes", distinct=True),
        leased=Count(
            "grid_items",
            filter=Q(grid_items__grid__answered_at__isnull=True, grid_items__grid__expired=False),
            distinct=True,
        ),
    )
    states = Counter(candidates.values_list("state", flat=True))
    return [
        "over max_votes: "
        + str(candidates.filter(yes_count__gt=MAX_VOTES - F("no_count")).count()),
        "yes/no counters off: " + str(votes.exclude(voted=F("yes_count") + F("no_count")).count()),
        "lease counters off: " + str(votes.exclude(leased=F("leases_count")).count()),
        f"votes {CandidateVote.objects.filter(candidate__project_id=seeded['project']).count()}",
        "candidates " + ", ".join(f"{state} {n}" for state, n in sorted(states.items())),
    ]


# --- main -------------------------------------------------------------------------------------


def run(args, images: int, votes: int, *, closed: bool) -> dict:
    name = create_database()
    server = second = None
    proxy: subprocess.Popen | None = None
    try:
        setup_django(name)
        from django.core.management import call_command

        log(f"database {name}: migrating")
        call_command("migrate", verbosity=0)
        log(f"seeding {images} images and ~{votes} votes")
        started = time.perf_counter()
        volunteers = max([args.volunteers, *args.concurrency])
        seeded = seed(images=images, votes_target=votes, volunteers=volunteers)
        log(
            f"seeded {seeded['votes']} votes, {seeded['open']} open images"
            f" in {time.perf_counter() - started:.0f}s"
        )
        many = None  # the project with --many-labels labels, the same otherwise
        if args.many_labels and closed:
            started = time.perf_counter()
            many = seed(
                images=images,
                votes_target=votes,
                volunteers=volunteers,
                labels=args.many_labels,
                name="load-many-labels",
            )
            seconds = time.perf_counter() - started
            log(f"seeded the {args.many_labels}-label project likewise in {seconds:.0f}s")
        verify = None  # the verify project, with --verify
        if args.verify and closed:
            started = time.perf_counter()
            verify = seed_verify(images=images, labels=args.verify_labels, tokens=seeded["tokens"])
            seconds = time.perf_counter() - started
            log(
                f"seeded the verify project: {images} candidates over {args.verify_labels}"
                f" labels, grids of {GRID_SIZE}, in {seconds:.0f}s"
            )
        server = start_server(name, args.port, args.workers)
        base = f"http://127.0.0.1:{args.port}"
        second_base = None  # with --two-hosts, the second web server set
        if args.two_hosts:
            second_port = free_port()
            second = start_server(name, second_port, args.workers, host="-b")
            second_base = f"http://127.0.0.1:{second_port}"
            asyncio.run(closed_loop(second_base, seeded, 8, args.warmup / 2, floor=False))
        proxy_base = None
        if args.through_proxy:
            proxy = start_proxy(name, args.proxy_port, args.port)
            proxy_base = f"http://127.0.0.1:{args.proxy_port}"
        result = {}
        # Warm up (not recorded): gunicorn's workers import the app and open their database
        # connections on their first requests; the figures are for the steady state.
        asyncio.run(closed_loop(base, seeded, 8, args.warmup, floor=False))
        asyncio.run(closed_loop(base, seeded, 8, args.warmup / 2, floor=True))
        if many is not None:
            asyncio.run(closed_loop(base, many, 8, args.warmup / 2, floor=False))
        if verify is not None:
            asyncio.run(closed_loop(base, verify, 8, args.warmup / 2, floor=False, grids=True))
        if proxy_base is not None:
            asyncio.run(closed_loop(proxy_base, seeded, 8, args.warmup / 2, floor=False))
        if closed and args.concurrency:
            for concurrency in args.concurrency:
                # Alternating blocks, the floor first in every other round (R F, F R, ...): the
                # machine's drift during the run (other tenants, CPU frequency) falls on both
                # alike, which one long window for each did not ensure. With --many-labels,
                # its project's blocks take turns with them (R F M, M F R, ...).
                # With --verify, the grid blocks join them likewise.
                real, floor, real_many, grid = Recorder(), Recorder(), Recorder(), Recorder()
                two = Recorder()
                proxied = Recorder()
                rates: dict[str, list[float]] = {
                    "real": [],
                    "floor": [],
                    "many": [],
                    "grid": [],
                    "two": [],
                    "proxy": [],
                }
                recorders = {
                    "real": real,
                    "floor": floor,
                    "many": real_many,
                    "grid": grid,
                    "two": two,
                    "proxy": proxied,
                }
                block = args.duration / args.rounds
                kinds = (
                    ["real", "floor"]
                    + (["many"] if many is not None else [])
                    + (["grid"] if verify is not None else [])
                    + (["two"] if second_base is not None else [])
                    + (["proxy"] if proxy_base is not None else [])
                )
                for round_number in range(args.rounds):
                    for kind in kinds if round_number % 2 == 0 else kinds[::-1]:
                        rate, _ = asyncio.run(
                            closed_loop(
                                proxy_base if kind == "proxy" and proxy_base else base,
                                {"many": many, "grid": verify}.get(kind, seeded),
                                concurrency,
                                block,
                                floor=kind == "floor",
                                recorder=recorders[kind],
                                grids=kind == "grid",
                                other_base=second_base if kind == "two" else None,
                            )
                        )
                        rates[kind].append(rate)
                real_rates, floor_rates, many_rates = rates["real"], rates["floor"], rates["many"]
                real_rps, floor_rps = float(np.mean(real_rates)), float(np.mean(floor_rates))
                print(
                    f"\nclosed loop, {concurrency} volunteers, {args.duration}s each"
                    f" in {args.rounds} alternating blocks:"
                )
                per_round = ", ".join(
                    f"{a / b:.2f}" for a, b in zip(real_rates, floor_rates, strict=False)
                )
                print(
                    f"  lease+vote {real_rps:7.1f} requests/s ({real_rps / 2:6.1f} labels/s)   "
                    f"floor (SELECT+INSERT) {floor_rps:7.1f} requests/s   "
                    f"ratio {real_rps / floor_rps:.2f}   (per round: {per_round})"
                )
                print("  " + real.line("lease"))
                print("  " + real.line("vote"))
                print("  " + floor.line("floor"))
                if proxy_base is not None:
                    proxy_rps = float(np.mean(rates["proxy"]))
                    ratio = proxy_rps / real_rps
                    per_round = ", ".join(
                        f"{a / b:.2f}" for a, b in zip(rates["proxy"], real_rates, strict=True)
                    )
                    print(
                        f"  through nginx: lease+vote {proxy_rps:7.1f} requests/s   ratio to"
                        f" gunicorn alone {ratio:.2f} (per round: {per_round}),"
                        f" target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'}"
                    )
                    print("  " + proxied.line("lease"))
                    print("  " + proxied.line("vote"))
                    result.setdefault("proxy_ratio", {})[concurrency] = ratio
                if many is not None:
                    many_rps = float(np.mean(many_rates))
                    ratio = many_rps / real_rps
                    per_round = ", ".join(
                        f"{a / b:.2f}" for a, b in zip(many_rates, real_rates, strict=True)
                    )
                    print(
                        f"  {args.many_labels} labels: lease+vote {many_rps:7.1f} requests/s"
                        f"   ratio to {LABELS} labels {ratio:.2f} (per round: {per_round}),"
                        f" target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'}"
                    )
                    print("  " + real_many.line("lease"))
                    print("  " + real_many.line("vote"))
                    print(
                        f"  lease answer: {max(real.lease_bytes, default=0)} bytes at {LABELS}"
                        f" labels, {max(real_many.lease_bytes, default=0)} bytes at"
                        f" {args.many_labels} (largest seen)"
                    )
                    result.setdefault("many_labels_ratio", {})[concurrency] = ratio
                if second_base is not None:
                    two_rps = float(np.mean(rates["two"]))
                    per_round = ", ".join(
                        f"{a / b:.2f}" for a, b in zip(rates["two"], real_rates, strict=True)
                    )
                    print(
                        f"  two web server sets: lease+vote {two_rps:7.1f} requests/s"
                        f"   one set {real_rps:7.1f}"
                        f"   ratio 2 sets / 1 set {two_rps / real_rps:.2f}"
                        f" (per round: {per_round}); both sets and PostgreSQL share"
                        f" this machine's {os.cpu_count()} cores"
                    )
                    print("  " + two.line("lease"))
                    print("  " + two.line("vote"))
                    result.setdefault("two_hosts_ratio", {})[concurrency] = two_rps / real_rps
                if verify is not None:
                    grid_rps = float(np.mean(rates["grid"]))
                    items_ps = float(np.mean(grid.items_rates))
                    labels_ps = real_rps / 2
                    per_round = ", ".join(
                        f"{items:.0f}/{labels / 2:.0f}"
                        for items, labels in zip(grid.items_rates, real_rates, strict=True)
                    )
                    print(
                        f"  grid lease+answer ({GRID_SIZE} items) {grid_rps:7.1f} requests/s"
                        f" ({items_ps:6.1f} items/s)   lease+vote {labels_ps:6.1f} labels/s"
                        f"   items/s per label/s {items_ps / labels_ps:.2f}"
                        f"   (per round, items/s / labels/s: {per_round})"
                    )
                    print("  " + grid.line("grid"))
                    print("  " + grid.line("answer"))
                    print(
                        f"  grid leases with nothing left (204): {grid.exhausted};"
                        f" grid answer: {max(grid.lease_bytes, default=0)} bytes (largest seen)"
                    )
                    result.setdefault("verify", {})[concurrency] = {
                        "grid_requests_per_s": grid_rps,
                        "items_per_s": items_ps,
                        "labels_per_s": labels_ps,
                    }
        recorder, achieved, late = asyncio.run(
            open_loop(base, seeded, args.rate, args.duration, args.volunteers)
        )
        print(
            f"\nopen loop, {args.rate} labels/s target ({achieved:.1f} achieved, "
            f"start lateness p99 {late} ms), "
            f"{images} images:"
        )
        print("  " + recorder.line("lease"))
        print("  " + recorder.line("vote"))
        result["p99"] = {k: float(np.percentile(v, 99)) for k, v in recorder.latencies.items()}
        result["p50"] = {k: float(np.percentile(v, 50)) for k, v in recorder.latencies.items()}
        stop_server(server)
        server = None
        if second is not None:
            stop_server(second)
            second = None
        if proxy is not None:
            stop_server(proxy)
            proxy = None
        print("\nserving query plan (EXPLAIN ANALYZE):")
        print("  " + explain_serving(seeded).replace("\n", "\n  "))
        print("invariants after the run: " + "; ".join(invariants()))
        if verify is not None:
            print("verify project after the run: " + "; ".join(verify_invariants(verify)))
        print("RESULT " + json.dumps(result))
        return result
    finally:
        for running in (server, second, proxy):
            if running is not None:
                stop_server(running)
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=300_000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 8, 32]
    )
    parser.add_argument(
        "--rate", type=float, default=32, help="open loop: labels started per second"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="closed loop: alternating blocks of lease+vote and floor per concurrency",
    )
    parser.add_argument("--warmup", type=float, default=5, help="seconds of unrecorded load first")
    parser.add_argument(
        "--volunteers", type=int, default=32, help="open loop: volunteers taking them"
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=8311)
    parser.add_argument(
        "--scale", action="store_true", help="open loop at 10,000 and 1,000,000 images"
    )
    parser.add_argument(
        "--many-labels",
        type=int,
        default=0,
        metavar="N",
        help="closed loop: also a project with N labels (e.g. 1000), its lease+vote beside "
        f"the {LABELS}-label one's in alternating blocks, and their ratio",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help=f"closed loop: also a verify project (grids of {GRID_SIZE}), its grid lease+answer "
        "in alternating blocks, items/s beside the single-image loop's labels/s",
    )
    parser.add_argument(
        "--verify-labels",
        type=int,
        default=VERIFY_LABELS,
        help="labels of the verify project; its candidates are --images, spread over them",
    )
    parser.add_argument(
        "--two-hosts",
        action="store_true",
        help="closed loop: also blocks served by two web server sets (a second gunicorn of "
        "--workers processes, its own DATA_DIR and port) against the same database",
    )
    parser.add_argument(
        "--through-proxy",
        action="store_true",
        help="closed loop: also lease+vote through bin/proxy (nginx) in front of the same server",
    )
    parser.add_argument("--proxy-port", type=int, default=8312)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    print(
        f"volunteer load: {os.cpu_count()} cores, gunicorn {args.workers} workers,"
        " PostgreSQL + Redis on loopback"
    )
    if not args.scale:
        run(args, args.images, args.votes, closed=True)
        return
    # Django can be set up once per process: run each size in a child process.
    figures = {}
    for images in (10_000, 1_000_000):
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--images",
                str(images),
                "--votes",
                str(3 * images),
                "--duration",
                str(args.duration),
                "--rate",
                str(args.rate),
                "--concurrency",
                "",
                "--port",
                str(args.port),
                "--workers",
                str(args.workers),
                "--warmup",
                str(args.warmup),
            ],
            capture_output=True,
            text=True,
        )
        print(child.stdout, child.stderr[-2000:] if child.returncode else "")
        line = next(out for out in child.stdout.splitlines() if out.startswith("RESULT "))
        figures[images] = json.loads(line[len("RESULT ") :])
    print("\nscale: open-loop latency at 1,000,000 images / at 10,000 images (target <= 1.5)")
    for kind in ("lease", "vote"):
        for stat in ("p50", "p99"):
            small, large = figures[10_000][stat][kind], figures[1_000_000][stat][kind]
            print(
                f"  {kind:5s} {stat}: {small * 1000:6.1f} ms -> {large * 1000:6.1f} ms"
                f"  ratio {large / small:.2f}"
            )


if __name__ == "__main__":
    main()
