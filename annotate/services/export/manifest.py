"""The small files of an export: its list files, meta.bin and the manifest written from its
parts."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any


class _ListFile:
    """One of the dataset's list files (train.txt, val.txt, ...), written line by line in the
    scratch folder as UTF-8 with \\n line ends; _file_sha256() hashes it once it is closed."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "w", encoding="utf-8", newline="\n")

    def write(self, text: str) -> None:
        self.file.write(text)

    def close(self) -> None:
        self.file.close()


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# --- building -------------------------------------------------------------------------------


def _class_names(name: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in name.split(",") if part.strip())
    return names or (name,)


def _manifest_entry(name: str, digest: str, size: int, image_id: int | None = None) -> str:
    """A file's entry in the manifest, `name` being its path as a JSON string: formatted by
    hand as json.dumps() writes it (json.dumps per file was a tenth of an export's time)."""
    image = f', "image": {image_id}' if image_id is not None else ""
    return f'\n  {name}: {{"sha256": "{digest}", "bytes": {size}{image}}}'


def _torch_save_bytes(obj: Any) -> bytes:
    import torch  # heavy; only exports need it

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_manifest(path: Path, summary: dict[str, Any], files_part: Path, left_part: Path) -> None:
    """manifest.json: the summary, then `files` ({path: {sha256, bytes, image?}}) and
    `left_out` ([{image, sha256, reason}]) copied from the parts written as the export went."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("{\n")
        for key, value in summary.items():
            out.write(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)},\n")
        out.write(' "files": {')
        out.flush()
        for part, closing in ((files_part, '\n },\n "left_out": ['), (left_part, "\n ]\n}\n")):
            with open(part, "rb") as entries:
                shutil.copyfileobj(entries, out.buffer, 1 << 20)
            out.write(closing)
            out.flush()
