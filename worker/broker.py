"""A broker that needs no server: kombu's file-system transport, made safe for a burst.

kombu's own transport writes each message in place, so a consumer polling the folder can
pick up a file that is still empty or half written and crash decoding it. Here a message is
written in a staging folder and renamed into the queue folder (a rename is atomic within one
file system), and a consumer claims a message by renaming it out of the queue folder, so
two consumers can never read the same one.
"""

import os
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

    def _get(self, queue: str) -> dict[str, Any]:
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if not name.endswith(suffix) or name.partition(".")[2] != suffix[1:]:
                continue
            claimed = Path(self.claimed_folder) / name
            try:
                os.replace(Path(self.data_folder_in) / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            payload = claimed.read_bytes()
            claimed.unlink()
            return loads(bytes_to_str(payload))
        raise Empty()


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
