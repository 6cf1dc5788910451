"""A broker that needs no server: kombu's file-system transport, made safe for a burst.

kombu's own transport writes each message in place, so a consumer polling the folder can
pick up a file that is still empty or half written and crash decoding it. Here a message is
written in a staging folder and renamed into the queue folder (a rename is atomic within one
file system), and a consumer claims a message by renaming it out of the queue folder, so
two consumers can never read the same one.

A claimed message stays on disk, in a folder of the claiming process, until it is acknowledged
(after its task ran: CELERY_TASK_ACKS_LATE) or handed back; a consumer that starts moves the
messages of claimants that are gone (a worker killed with SIGKILL) back into the queue, so a
killed worker loses nothing (issue 19).
"""

import os
import socket
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    @property
    def staging_folder(self) -> str:
        return self.transport_options.get("staging_folder", "staging")

    @property
    def claimed_folder(self) -> str:
        return self.transport_options.get("claimed_folder", "claimed")

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:
        # Zero-padded milliseconds keep names in time order when listed and sorted.
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        staged = Path(self.staging_folder) / name
        with open(staged, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, Path(self.data_folder_out) / name)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # delivery tag -> the claimed file, deleted when the message is acknowledged.
        self._claimed: dict[str, Path] = {}
        self._mine = Path(self.claimed_folder) / f"{socket.gethostname()}-{os.getpid()}"
        self._mine.mkdir(parents=True, exist_ok=True)
        self._requeue_orphans()

    def _requeue_orphans(self) -> None:
        """Messages claimed by processes of this host that no longer run go back to the queue
        (a worker killed before acknowledging them)."""
        host = socket.gethostname()
        for folder in Path(self.claimed_folder).iterdir():
            owner, _, pid = folder.name.rpartition("-")
            if owner != host or not pid.isdigit() or _alive(int(pid)):
                continue
            for claimed in folder.iterdir():
                try:
                    os.replace(claimed, Path(self.data_folder_in) / claimed.name)
                except FileNotFoundError:
                    continue  # another starting consumer moved it first
            try:
                folder.rmdir()
            except OSError:
                pass

    def _get(self, queue: str) -> dict[str, Any]:
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if not name.endswith(suffix) or name.partition(".")[2] != suffix[1:]:
                continue
            claimed = self._mine / name
            try:
                os.replace(Path(self.data_folder_in) / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            payload = loads(bytes_to_str(claimed.read_bytes()))
            tag = payload.get("properties", {}).get("delivery_tag")
            if tag is None:
                claimed.unlink()
            else:
                self._claimed[tag] = claimed
            return payload
        raise Empty()

    def _settled(self, delivery_tag: Any) -> None:
        claimed = self._claimed.pop(delivery_tag, None)
        if claimed is not None:
            claimed.unlink(missing_ok=True)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._settled(delivery_tag)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)  # a requeue writes a new copy first
        self._settled(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)  # unacknowledged at close: a new copy in the queue
        self._settled(message.delivery_tag)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client, **kwargs):
        options = client.transport_options
        for key in (
            "data_folder_in",
            "data_folder_out",
            "staging_folder",
            "claimed_folder",
            "control_folder",
        ):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)
        super().__init__(client, **kwargs)
