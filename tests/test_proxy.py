"""bin/proxy's nginx in front of bin/web's gunicorn, both real processes on free ports: idle
connections and slow request bodies (slowloris) hold nginx connections, never gunicorn's
threads, so /healthz keeps answering at once. The same attack on gunicorn alone is measured
too, to show what the proxy is for (issue 19: eight idle sockets stalled the site)."""

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.processes import Process, free_port, wait_until

pytestmark = [pytest.mark.slow]

IDLE_CONNECTIONS = 200
SLOW_BODIES = 50


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DEBUG": "False",
        "SECRET_KEY": "proxy-test-secret",
        "DATA_DIR": str(tmp_path / "data"),
        "ACCESS_LOG": "off",
        **extra,
    }


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(gunicorn's URL, nginx's URL, nginx's static folder), gunicorn with bin/web's default
    two workers of four threads: eight requests in flight at most."""
    web_port, proxy_port = free_port(), free_port()
    # Readable by every user: nginx started as root serves files from workers that are not.
    static_root = Path(tempfile.mkdtemp(prefix="proxy-static-"))
    static_root.chmod(0o755)
    web = Process(
        ["bin/web"],
        _env(tmp_path, PORT=str(web_port), TRUSTED_PROXY_COUNT="1"),
        tmp_path / "web.log",
    )
    proxy = Process(
        ["bin/proxy"],
        _env(
            tmp_path,
            PORT=str(web_port),
            PROXY_PORT=str(proxy_port),
            PROXY_WORKERS="1",
            STATIC_ROOT=str(static_root),
        ),
        tmp_path / "proxy.log",
    )
    direct, proxied = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{proxy_port}"
    try:
        wait_until(lambda: _ok(f"{direct}/healthz"), 60, "gunicorn", log=web.log)
        wait_until(lambda: _ok(f"{proxied}/healthz"), 30, "nginx", log=proxy.log)
        yield direct, proxied, static_root
    finally:
        proxy.stop()
        web.stop()
        shutil.rmtree(static_root, ignore_errors=True)


def _attack(port: int) -> list[socket.socket]:
    """Open IDLE_CONNECTIONS sockets that send half a request's headers, and SLOW_BODIES that
    send whole headers and the first byte of a 100 kB body; none sends more."""
    sockets = []
    for _ in range(IDLE_CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sockets.append(s)
    for _ in range(SLOW_BODIES):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
        sockets.append(s)
    time.sleep(0.5)  # let the servers take them all in
    return sockets


def _healthz_times(base: str, count: int, timeout: float) -> list[float]:
    """Seconds each of `count` /healthz requests took (new connection each); `timeout` for one
    that got no answer."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        try:
            answered = requests.get(f"{base}/healthz", timeout=timeout).ok
        except requests.RequestException:
            answered = False
        times.append(time.perf_counter() - started if answered else timeout)
    return times


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def test_idle_connections_and_slow_bodies_do_not_stall_the_site_behind_the_proxy(
    servers: tuple[str, str, Path],
) -> None:
    direct, proxied, _ = servers
    proxy_port = int(proxied.rsplit(":", 1)[1])
    _healthz_times(proxied, 3, 2)  # warm both processes up
    sockets = _attack(proxy_port)
    try:
        times = _healthz_times(proxied, 20, 2)
    finally:
        for s in sockets:
            s.close()
    p95_ms, max_ms = _p95(times) * 1000, max(times) * 1000
    print(f"through nginx under attack: p95 {p95_ms:.1f} ms, max {max_ms:.1f} ms")
    assert _p95(times) < 0.1, [round(t * 1000, 1) for t in times]

    # The same attack on gunicorn alone, for comparison (not asserted: it is what the proxy
    # is for). Its eight threads sit reading the attackers' requests.
    sockets = _attack(int(direct.rsplit(":", 1)[1]))
    try:
        bare = _healthz_times(direct, 3, 1)
    finally:
        for s in sockets:
            s.close()
    print(f"gunicorn alone under attack: {[round(t * 1000) for t in bare]} ms (1000: no answer)")


def test_the_proxy_serves_static_files_and_limits_bodies_as_the_app_does(
    servers: tuple[str, str, Path], tmp_path: Path
) -> None:
    _, proxied, static_root = servers
    (static_root / "probe.txt").write_text("from nginx")
    answer = requests.get(f"{proxied}/static/probe.txt", timeout=5)
    assert answer.status_code == 200 and answer.text == "from nginx"
    assert answer.headers["Server"] == "nginx"
    # Not in the folder: asked of the app (whose whitenoise serves what it finds), so the 404
    # is the app's page, not nginx's.
    missing = requests.get(f"{proxied}/static/not-there.css", timeout=5)
    assert missing.status_code == 404 and "<center>nginx</center>" not in missing.text

    conf = (tmp_path / "data" / "proxy" / "nginx.conf").read_text()
    limit = re.search(r"client_max_body_size (\d+);", conf)
    assert limit and int(limit.group(1)) == settings.UPLOAD_MAX_REQUEST_BYTES
    assert re.search(r"client_header_timeout \d+s;", conf)
    assert re.search(r"client_body_timeout \d+s;", conf)
