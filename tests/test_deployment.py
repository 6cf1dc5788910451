"""docker-compose.yml without Docker: every app service's command, run with that service's own
environment (hosts pointed at this machine's PostgreSQL and Redis), starts and does its job.
So a compose file that names a missing script, drops a variable the app needs or sets one the
app cannot start with fails here, not on an operator's first `docker compose up`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings
from django.db import connection

from tests.processes import REPO, Process, free_port, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]

# What an operator sets in .env (docker-compose.yml refuses to start without SECRET_KEY).
OPERATOR_ENV = {"SECRET_KEY": "compose-test-secret"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} substitution."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def service_env(service: dict, **on_this_machine: str) -> dict[str, str]:
    """The service's environment as compose would give it, then the Docker host names (postgres,
    redis) and the volume swapped for this machine's, after checking they are what we swap."""
    env = {k: interpolate(str(v), OPERATOR_ENV) for k, v in service["environment"].items()}
    assert re.fullmatch(r"postgres://\w+:\w+@postgres:5432/\w+", env["DATABASE_URL"]), env
    assert re.fullmatch(r"redis://redis:6379/\d+", env["REDIS_URL"]), env
    assert env["DEBUG"] == "False", "compose runs production settings"
    db = connection.settings_dict
    env |= {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "PATH": "/usr/bin:/bin",
        "PYTHON": sys.executable,
        **on_this_machine,
    }
    return env


def command_of(service: dict) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "exec form, so signals reach the process"
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    assert (REPO / command[0]).is_file(), f"{command[0]} is not in the repo"
    return command


def test_compose_app_services_start_with_their_own_environment(tmp_path: Path) -> None:
    services = compose_services()
    assert {"postgres", "redis", "migrate", "web", "worker", "beat"} <= set(services)
    for name in ("migrate", "web", "worker", "beat"):
        assert services[name]["build"] == ".", f"{name} runs the repo's image"

    migrate = subprocess.run(
        command_of(services["migrate"]),
        cwd=REPO,
        env=service_env(services["migrate"], DATA_DIR=str(tmp_path / "migrate")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    port, proxy_port = free_port(), free_port()
    # Only the proxy is published; web is reached through it.
    assert "ports" not in services["web"], "gunicorn must not face clients itself"
    assert services["web"]["environment"]["TRUSTED_PROXY_COUNT"] == "1"
    proxy_service = services["proxy"]
    assert services["proxy"]["build"] == "."
    host_port, container_port = proxy_service["ports"][0].split(":")
    assert container_port == proxy_service["environment"]["PROXY_PORT"]
    assert proxy_service["environment"]["PROXY_UPSTREAM"] == (
        f"web:{services['web']['environment']['PORT']}"
    )
    # One body limit for both, so nginx never refuses what the app would take, nor passes on
    # what it would refuse unread.
    assert (
        proxy_service["environment"]["UPLOAD_MAX_REQUEST_BYTES"]
        == services["web"]["environment"]["UPLOAD_MAX_REQUEST_BYTES"]
    )
    proxy_env = {
        k: interpolate(str(v), OPERATOR_ENV) for k, v in proxy_service["environment"].items()
    } | {
        "PATH": "/usr/bin:/bin",
        "PROXY_BIND": "127.0.0.1",
        "PROXY_PORT": str(proxy_port),
        "PROXY_UPSTREAM": f"127.0.0.1:{port}",
        "PROXY_RUN_DIR": str(tmp_path / "proxy"),
        "PROXY_WORKERS": "1",
        # The image's ENV (Dockerfile) sets these two.
        "DATA_DIR": str(tmp_path / "proxy-data"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    started = {
        "web": Process(
            command_of(services["web"]),
            service_env(
                services["web"], DATA_DIR=str(tmp_path / "web"), BIND="127.0.0.1", PORT=str(port)
            ),
            tmp_path / "web.log",
        ),
        "worker": Process(
            command_of(services["worker"]),
            service_env(services["worker"], DATA_DIR=str(tmp_path / "worker")),
            tmp_path / "worker.log",
        ),
        "beat": Process(
            command_of(services["beat"]),
            service_env(services["beat"], DATA_DIR=str(tmp_path / "beat")),
            tmp_path / "beat.log",
        ),
        "proxy": Process(command_of(proxy_service), proxy_env, tmp_path / "proxy.log"),
    }
    try:
        web = started["web"]

        def healthy(at: int) -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{at}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(lambda: healthy(port), 60, "web to answer /healthz", log=web.log)
        wait_until(
            lambda: healthy(proxy_port),
            30,
            "the proxy to pass /healthz to web",
            log=started["proxy"].log,
        )
        wait_until(
            lambda: "ready." in started["worker"].log(),
            60,
            "the worker",
            log=started["worker"].log,
        )
        wait_until(
            lambda: "beat: Starting" in started["beat"].log(),
            60,
            "beat",
            log=started["beat"].log,
        )
        for name, process in started.items():
            assert process.alive(), f"{name} exited:\n{process.log()}"
    finally:
        for process in started.values():
            process.stop()


def test_make_targets_and_the_image_run_the_same_scripts() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target, script in [("web", "bin/web"), ("worker", "bin/worker"), ("beat", "bin/beat")]:
        assert re.search(rf"^{target}:.*\n\t{script}$", makefile, re.M), target
    assert re.search(r"^\tbin/run$", makefile, re.M)
    run_script = (REPO / "bin" / "run").read_text()
    assert "bin/worker" in run_script and "bin/web" in run_script
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'CMD ["bin/web"]' in dockerfile
