"""The embedded broker acknowledges after the task ran (issue 19): a claimed message stays on
disk until it is acknowledged, and one whose consumer was killed first goes back to the queue
when a consumer starts, instead of being lost."""

import signal
import subprocess
import sys
from pathlib import Path

from kombu import Connection

from tests.processes import REPO

CLAIM_AND_DIE = """
import os, signal, sys
from kombu import Connection
options = dict(zip(("data_folder_in", "data_folder_out", "staging_folder", "claimed_folder",
                    "control_folder"), sys.argv[1:6]))
with Connection(transport="worker.broker:Transport", transport_options=options) as conn:
    message = conn.SimpleQueue(sys.argv[6], no_ack=False).get(timeout=5)
    print("claimed", message.payload, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # before acknowledging, as a killed worker would
"""


def _options(root: Path) -> dict[str, str]:
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "staging_folder": str(root / "staging"),
        "claimed_folder": str(root / "claimed"),
        "control_folder": str(root / "control"),
    }


def _connection(root: Path) -> Connection:
    return Connection(transport="worker.broker:Transport", transport_options=_options(root))


def _claimed_files(root: Path) -> list[Path]:
    return list((root / "claimed").rglob("*.msg"))


def test_a_message_stays_claimed_until_acknowledged(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("acked", no_ack=False)
        queue.put({"job": 1})
        message = queue.get(timeout=5)
        assert message.payload == {"job": 1}
        assert len(_claimed_files(tmp_path)) == 1  # taken from the queue, not yet gone
        assert not list((tmp_path / "queue").glob("*.msg"))
        message.ack()
        assert _claimed_files(tmp_path) == []
        queue.close()


def test_a_message_whose_consumer_was_killed_is_delivered_again(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        conn.SimpleQueue("orphaned", no_ack=False).put({"job": 2})
    options = _options(tmp_path)
    killed = subprocess.run(
        [sys.executable, "-c", CLAIM_AND_DIE, *options.values(), "orphaned"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "claimed {'job': 2}" in killed.stdout
    assert len(_claimed_files(tmp_path)) == 1  # claimed by a process that is gone

    with _connection(tmp_path) as conn:  # a consumer starts: the orphan goes back
        queue = conn.SimpleQueue("orphaned", no_ack=False)
        message = queue.get(timeout=5)
        assert message.payload == {"job": 2}
        message.ack()
        queue.close()
    assert _claimed_files(tmp_path) == []
    assert not list((tmp_path / "queue").glob("*.msg"))
