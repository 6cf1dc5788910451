"""The copying side of an export: the worker processes (export_worker) that read, convert,
hash and write its images, a batch each."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, cast

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage

from annotate.services import ingest, ingest_worker
from annotate.services.export_worker import Copier, CopyConfig, ReadResult

# How long a worker process is given to end once its connection is closed.
WORKER_EXIT_SECONDS = 10


class CopyFailed(Exception):
    """A worker process failed or died: the export fails with its reason."""


def _copy_source(project_id: int) -> str | ingest_worker.StorageTarget:
    """Where the workers read stored images: the local folder of the default storage, or that
    storage as a worker process rebuilds it (as the import's workers do)."""
    if isinstance(default_storage, FileSystemStorage) or isinstance(
        getattr(default_storage, "_wrapped", None), FileSystemStorage
    ):
        return os.path.abspath(cast(FileSystemStorage, default_storage).location)
    return ingest.storage_target(project_id)


def _wait_for(process: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait until `process` ends, woken the moment it does (a pidfd). Popen.wait with a
    timeout polls, sleeping up to 50 ms at a time: with two workers that was 80 to 200 ms at
    the end of every export, a fixed cost larger than copying a thousand images."""
    try:
        fd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3 or later, or already reaped
        process.wait(seconds)
        return
    try:
        ended, _, _ = select.select([fd], [], [], seconds)
    finally:
        os.close(fd)
    if not ended:
        raise subprocess.TimeoutExpired(process.args, seconds)
    process.wait()


# A worker's entry point: `-c` rather than `-m`, which would import runpy and then the module
# twice (as __main__, and under its name for the configuration it unpickles).
_WORKER_CODE = "from annotate.services.export_worker import main; main()"


def _worker_command(fd: int) -> list[str]:
    return [sys.executable, "-c", _WORKER_CODE, str(fd), str(os.getpid())]


class _Copiers:
    """The copying side of one export: `processes` worker processes (annotate.services.
    export_worker), batch b going to worker b % processes; or, with none, a Copier in this
    process. read(b, names), then results(b), then write(b, start, members), in batch order;
    finish() returns once every batch is written."""

    def __init__(self, config: CopyConfig, processes: int):
        self.local = Copier(config) if processes <= 0 else None
        self.results_of: dict[int, list[ReadResult]] = {}
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.unwritten: list[int] = []
        environment = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [str(settings.BASE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        )
        try:
            for _ in range(max(processes, 0)):
                ours, theirs = socket.socketpair()
                with ours, theirs:
                    self.processes.append(
                        subprocess.Popen(
                            _worker_command(theirs.fileno()),
                            pass_fds=[theirs.fileno()],
                            env=environment,
                            stdin=subprocess.DEVNULL,
                        )
                    )
                    self.connections.append(Connection(ours.detach()))
                self.unwritten.append(0)
                self._send(len(self.connections) - 1, config)
        except BaseException:
            self.close()
            raise

    def _receive(self, worker: int) -> None:
        try:
            message = self.connections[worker].recv()
        except (EOFError, OSError):
            process = self.processes[worker]
            try:
                code = process.wait(WORKER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                code = None
            raise CopyFailed(
                f"export worker process {process.pid} ended unexpectedly (exit status {code})"
            ) from None
        if message[0] == "read":
            self.results_of[message[1]] = message[2]
        elif message[0] == "written":
            self.unwritten[worker] -= 1
        else:
            raise CopyFailed(f"export worker process {self.processes[worker].pid}: {message[2]}")

    def _send(self, worker: int, message: CopyConfig | tuple[Any, ...]) -> None:
        try:
            self.connections[worker].send(message)
        except OSError:  # the worker has ended: what it said last tells why
            while True:
                self._receive(worker)  # raises CopyFailed at its failure or at the end

    def read(self, batch: int, names: list[str]) -> None:
        if self.local is not None:
            self.results_of[batch] = self.local.read(batch, names)
        else:
            self._send(batch % len(self.connections), ("read", batch, names))

    def results(self, batch: int) -> list[ReadResult]:
        while batch not in self.results_of:
            self._receive(batch % len(self.connections))
        return self.results_of.pop(batch)

    def write(self, batch: int, start: int | None, members: list[Any]) -> None:
        if self.local is not None:
            self.local.write(batch, start, members)
        else:
            worker = batch % len(self.connections)
            self._send(worker, ("write", batch, start, members))
            self.unwritten[worker] += 1

    def finish(self) -> None:
        for worker, _ in enumerate(self.connections):
            while self.unwritten[worker]:
                self._receive(worker)

    def close(self) -> None:
        """End the workers (a closed connection ends a worker's loop) and wait for them: none
        may go on writing once the export is over, whether it succeeded or failed."""
        if self.local is not None:
            self.local.close()
        for connection_ in self.connections:
            connection_.close()
        for process in self.processes:
            try:
                _wait_for(process, WORKER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> _Copiers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
