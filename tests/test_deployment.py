"""docker-compose runs the same process commands that `make run` and the tests run."""

import os
import re

import yaml

from tests.processes import REPO


def test_compose_services_use_the_repo_process_commands():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name, script in [("web", "bin/web"), ("worker", "bin/worker"), ("beat", "bin/beat")]:
        command = services[name]["command"]
        assert command[0] == script
        assert os.access(REPO / script, os.X_OK), script
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://")
        assert env["DEBUG"] == "False"
    makefile = (REPO / "Makefile").read_text()
    for target, script in [("web", "bin/web"), ("worker", "bin/worker"), ("beat", "bin/beat")]:
        assert re.search(rf"^{target}:.*\n\t{script}$", makefile, re.M), target
    assert re.search(r"^\tbin/run$", makefile, re.M)
    run_script = (REPO / "bin" / "run").read_text()
    assert "bin/worker" in run_script and "bin/web" in run_script
