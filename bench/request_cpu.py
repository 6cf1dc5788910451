"""CPU per request of lease+vote beside the floor, in one process: where the load ratio goes.

Seeds a project like bench/volunteer_load.py (20,000 images by default) and drives Django's test
client in this process, with no HTTP server: per request, the CPU time of this process plus that
of its PostgreSQL backend (read from /proc), for the floor endpoint (one indexed SELECT and one
INSERT) and for lease+vote, in five alternating blocks. Prints the medians, PostgreSQL's share,
and the ratio floor / lease+vote.

    python bench/request_cpu.py [--images 20000] [--requests 500]
"""

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import volunteer_load


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=500, help="lease+vote cycles, in 5 blocks")
    args = parser.parse_args()
    os.environ.update(
        DEBUG="False",
        SECRET_KEY="bench-request-cpu-" + "x" * 40,
        ALLOWED_HOSTS="testserver",
        BENCH_FLOOR_ENDPOINT="True",
        LOG_LEVEL="WARNING",
    )
    name = volunteer_load.create_database()
    try:
        volunteer_load.setup_django(name)
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        call_command("migrate", verbosity=0)
        seeded = volunteer_load.seed(
            images=args.images, votes_target=3 * args.images, volunteers=50
        )
        client = Client()
        rng = random.Random(1)

        def cycle(i: int) -> None:
            auth = {"HTTP_AUTHORIZATION": f"Token {seeded['tokens'][i % 50]}"}
            lease = client.post(f"/api/projects/{seeded['project']}/assignments/", **auth)
            assert lease.status_code == 201, lease.content
            vote = client.post(
                f"/api/assignments/{lease.json()['id']}/vote/",
                {
                    "label": volunteer_load.answer(
                        seeded["labels"], lease.json()["image"]["id"], rng
                    )
                },
                content_type="application/json",
                **auth,
            )
            assert vote.status_code == 201, vote.content

        def floor(i: int) -> None:
            assert client.post(f"/bench/floor/{1 + i % args.images}/").status_code == 201

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]

        def postgres_cpu() -> float:
            fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        for i in range(50):  # warm up: connections, prepared statements, first votes
            cycle(i)
            floor(i)
        block = max(1, args.requests // 5)
        floors, loops, floor_pg, loop_pg = [], [], [], []
        done = 50
        for _ in range(5):
            start, pg = time.process_time() + postgres_cpu(), postgres_cpu()
            for i in range(block):
                floor(i)
            floors.append((time.process_time() + postgres_cpu() - start) / block)
            floor_pg.append((postgres_cpu() - pg) / block)
            start, pg = time.process_time() + postgres_cpu(), postgres_cpu()
            for _ in range(block):
                cycle(done)
                done += 1
            loops.append((time.process_time() + postgres_cpu() - start) / block / 2)  # 2 requests
            loop_pg.append((postgres_cpu() - pg) / block / 2)
        f, c = statistics.median(floors), statistics.median(loops)
        print(f"CPU per request (Django + its PostgreSQL backend), medians of 5 blocks of {block}:")
        print(
            f"  floor (SELECT+INSERT) {f * 1000:.2f} ms  (PostgreSQL {statistics.median(floor_pg) * 1000:.2f} ms)"
        )
        print(
            f"  lease+vote            {c * 1000:.2f} ms  (PostgreSQL {statistics.median(loop_pg) * 1000:.2f} ms)"
        )
        print(
            f"  ratio {f / c:.2f}  (blocks: {', '.join(f'{a / b:.2f}' for a, b in zip(floors, loops, strict=False))})"
        )
    finally:
        from django.db import connections

        connections.close_all()
        volunteer_load.drop_database(name)


if __name__ == "__main__":
    main()
