"""Start the project's real processes (bin/web, bin/worker, bin/beat) for tests, and stop them."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        full_env = {**env, "PYTHON": sys.executable}
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30, group: bool = False) -> None:
        """Signal the process (or, like a terminal's Ctrl-C, its whole group) and wait for the
        group to end; SIGKILL whatever is left after `timeout`."""
        if group:
            self.signal_group(sig)
        elif self.alive():
            self.popen.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.group_alive() and time.monotonic() < deadline:
            self.popen.poll()  # reap the leader, or the group never looks empty
            time.sleep(0.2)
        if self.group_alive():
            self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f"\n{log()}" if log else "")
    )


def worker_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ.items())
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}
