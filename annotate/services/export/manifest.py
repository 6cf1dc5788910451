"""The small files of an export: its list files, meta.bin and the manifest written from its
parts."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from annotate.models import Export, SplitAssignment
from annotate.services import jpeg_metadata
from annotate.services.export.split import SplitPlan


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


def _manifest_entry(
    name: str, digest: str, size: int, image_id: int | None = None, extra: str = ""
) -> str:
    """A file's entry in the manifest, `name` being its path as a JSON string: formatted by
    hand as json.dumps() writes it (json.dumps per file was a tenth of an export's time).
    `extra` is more of its fields, as PrivacyCounts.count() writes them."""
    image = f', "image": {image_id}' if image_id is not None else ""
    return f'\n  {name}: {{"sha256": "{digest}", "bytes": {size}{image}{extra}}}'


class PrivacyCounts:
    """What an export took out of its images: the metadata kinds dropped (jpeg_metadata) and
    the faces blurred, per image (in its manifest entry) and in all (in the summary)."""

    def __init__(self) -> None:
        self.images_by_kind: Counter[str] = Counter()
        self.images_stripped = 0
        self.faces = 0
        self.images_with_faces = 0
        self._extra: dict[tuple[int, int], str] = {}

    def count(self, stripped: int, faces: int, *, blurring: bool) -> str:
        """Count one image's; return its manifest entry's fields for them."""
        if stripped:
            self.images_stripped += 1
            for kind in jpeg_metadata.kinds(stripped):
                self.images_by_kind[kind] += 1
        if faces:
            self.images_with_faces += 1
            self.faces += faces
        key = (stripped, faces if blurring else -1)
        extra = self._extra.get(key)
        if extra is None:  # a few different ones per export: made once each
            extra = f', "stripped": {json.dumps(jpeg_metadata.kinds(stripped))}' if stripped else ""
            if blurring:
                extra += f', "faces": {faces}'
            self._extra[key] = extra
        return extra

    def summary(self, *, blurring: bool) -> dict[str, Any]:
        return {
            "metadata": {
                "kept": list(settings.EXPORT_KEEP_METADATA),
                "images_stripped": self.images_stripped,
                "images_by_kind": dict(sorted(self.images_by_kind.items())),
            },
            "faces": {
                "blurred": blurring,
                "detector": "OpenCV Haar cascade haarcascade_frontalface_default"
                if blurring
                else None,
                "faces": self.faces,
                "images_with_faces": self.images_with_faces,
            },
        }


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


def export_summary(
    *,
    export: Export,
    plan: SplitPlan,
    written: Counter[tuple[int, str]],
    unreadable: int,
    privacy: PrivacyCounts,
) -> dict[str, Any]:
    """The manifest less its files and left_out entries: `written` counts the images per
    (label id, side), `unreadable` those left out as such."""
    per_class: dict[str, dict[str, Any]] = {
        c.wnid: {
            "index": i,
            "folder": c.folder,
            "name": c.name,
            "train": written[c.label_id, SplitAssignment.Side.TRAIN],
            "val": written[c.label_id, SplitAssignment.Side.VAL],
            "val_target": c.target,
        }
        for i, c in enumerate(plan.classes)
    }
    off_target = sorted(
        wnid
        for wnid, row in per_class.items()
        if abs(row["val"] - export.val_fraction * (row["train"] + row["val"])) > 1
    )
    return {
        "format": "imagenet-style/1",
        "project": {"id": export.project_id, "name": export.project.name},
        "export_id": export.pk,
        "name": export.name,
        "created": timezone.now().isoformat(),
        "policy": {
            "mode": export.project.mode,
            "min_votes": export.project.min_votes,
            "max_votes": export.project.max_votes,
            "agreement": export.project.agreement,
            "target_confidence": export.project.target_confidence,
        },
        "seed": export.seed,
        "val_fraction": export.val_fraction,
        "val_layout": export.val_layout,
        "resize": export.resize,
        "include_gold": export.include_gold,
        "blur_faces": export.blur_faces,
        "min_per_class": export.min_per_class,
        "jpeg_quality": settings.EXPORT_JPEG_QUALITY,
        "counts": {
            "train": sum(r["train"] for r in per_class.values()),
            "val": sum(r["val"] for r in per_class.values()),
            "classes": len(per_class),
            "unreadable": unreadable,
        },
        "classes": per_class,
        "classes_too_small": plan.too_small,
        "classes_off_target": off_target,
        "near_duplicates": {
            "clusters": plan.clusters.clusters,
            "images": plan.clusters.images,
            "spanning_classes": plan.clusters.spanning,
        },
        **privacy.summary(blurring=export.blur_faces),
    }
