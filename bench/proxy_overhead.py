"""Throughput through bin/proxy's nginx vs gunicorn (bin/web) directly, same load, same run.

Starts bin/web (production settings, SQLite under a temporary DATA_DIR) and bin/proxy in front
of it on free ports, then has --clients threads, each with a keep-alive session, request one
path for --duration seconds straight from gunicorn and then through nginx, alternating --rounds
times. /healthz (one SELECT 1) is the worst case for the proxy's share; the sign-in page
(a template) is closer to a real page. Prints requests per second and the proxy's cost.

    .venv/bin/python bench/proxy_overhead.py --clients 8 --duration 5 --rounds 2
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.processes import Process, free_port, wait_until


def _rate(url: str, clients: int, duration: float) -> float:
    done = [0] * clients
    stop = time.monotonic() + duration

    def client(i: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                if session.get(url, timeout=10).ok:
                    done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--paths", default="/healthz,/accounts/login/")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    web_port, proxy_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DEBUG": "False",
        "SECRET_KEY": "bench",
        "DATA_DIR": str(tmp / "data"),
        "ACCESS_LOG": "off",
        "PORT": str(web_port),
        "TRUSTED_PROXY_COUNT": "1",
    }
    web = Process(["bin/web"], env, tmp / "web.log")
    proxy = Process(
        ["bin/proxy"], env | {"PROXY_PORT": str(proxy_port), "PROXY_WORKERS": "1"}, tmp / "p.log"
    )
    try:
        wait_until(lambda: _ok(f"http://127.0.0.1:{web_port}/healthz"), 60, "gunicorn")
        wait_until(lambda: _ok(f"http://127.0.0.1:{proxy_port}/healthz"), 30, "nginx")
        for path in args.paths.split(","):
            direct, proxied = [], []
            _rate(f"http://127.0.0.1:{web_port}{path}", args.clients, 1)  # warm up
            for _ in range(args.rounds):
                direct.append(
                    _rate(f"http://127.0.0.1:{web_port}{path}", args.clients, args.duration)
                )
                proxied.append(
                    _rate(f"http://127.0.0.1:{proxy_port}{path}", args.clients, args.duration)
                )
            d, p = sum(direct) / len(direct), sum(proxied) / len(proxied)
            print(
                f"{path}: gunicorn {d:.0f} req/s, through nginx {p:.0f} req/s "
                f"({100 * (p - d) / d:+.1f}%)  rounds: {[round(x) for x in direct]} vs "
                f"{[round(x) for x in proxied]}"
            )
    finally:
        proxy.stop()
        web.stop()


if __name__ == "__main__":
    main()
