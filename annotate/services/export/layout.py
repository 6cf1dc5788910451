"""Lays an export's dataset out: each image's path (class folders, or the flat val folder),
its lines in the lists and LOC_* files, its place in the sink, its manifest entry."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from annotate.models import Decision, Export, SplitAssignment
from annotate.services.export.copiers import _Copiers, _copy_source
from annotate.services.export.manifest import (
    _class_names,
    _file_sha256,
    _ListFile,
    _manifest_entry,
    _torch_save_bytes,
    _write_manifest,
)
from annotate.services.export.sinks import DirectorySink, TarSink
from annotate.services.export.split import _assigned, _left_out_rows, split_assign
from annotate.services.export_worker import (
    CopyConfig,
)

# Images go to the worker processes in batches of at most COPY_BATCH images and about
# COPY_BATCH_BYTES (as recorded at upload), and at most COPY_AHEAD batches per worker are read
# ahead of the one being laid out: what the workers hold stays within a few such batches.
COPY_BATCH = 64
# The first batches are smaller, doubling up to COPY_BATCH, so that the workers all start soon
# and a small export shows progress.
COPY_FIRST_BATCH = 4
COPY_BATCH_BYTES = 8 << 20
COPY_AHEAD = 3


class ExportEmpty(Exception):
    """No class has enough decided images to export."""


@dataclass
class BuildResult:
    summary: dict[str, Any]
    files: int
    bytes: int


def export_build(
    *,
    export: Export,
    sink: DirectorySink | TarSink,
    scratch: Path,
    heartbeat: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Write the whole dataset of `export` into `sink`, using `scratch` for its lists.

    Raises ExportEmpty when no class qualifies. `heartbeat(done, total)` is called every
    EXPORT_PROGRESS_SECONDS and at the end; it may raise ExportAborted to stop the build.
    The worker processes start first: they get ready while the split is assigned."""
    config = CopyConfig(
        source=_copy_source(export.project_id),
        tar_path=os.fspath(sink.path) if isinstance(sink, TarSink) else None,
        tar_prefix=sink.prefix if isinstance(sink, TarSink) else "",
        tar_mtime=sink.mtime if isinstance(sink, TarSink) else 0,
        resize=export.resize,
        quality=settings.EXPORT_JPEG_QUALITY,
    )
    with _Copiers(config, settings.EXPORT_PROCESSES) as copiers:
        return _build(
            export=export, sink=sink, scratch=scratch, heartbeat=heartbeat, copiers=copiers
        )


def _build(
    *,
    export: Export,
    sink: DirectorySink | TarSink,
    scratch: Path,
    heartbeat: Callable[[int, int], None] | None,
    copiers: _Copiers,
) -> BuildResult:
    plan = split_assign(export=export)
    if not plan.classes:
        raise ExportEmpty(
            f"No class has at least {export.min_per_class} decided images"
            + (f" (too small: {', '.join(sorted(plan.too_small))})." if plan.too_small else ".")
        )
    if heartbeat is not None:
        heartbeat(0, plan.total)
    index = {c.label_id: i for i, c in enumerate(plan.classes)}
    wnid_of = {c.label_id: c.wnid for c in plan.classes}
    total = plan.total
    flat = export.val_layout == Export.ValLayout.FLAT
    quality = settings.EXPORT_JPEG_QUALITY

    scratch.mkdir(parents=True, exist_ok=True)
    # The manifest's "files" and "left_out" entries, each written once in its final text as
    # the export goes: the manifest is the summary with these copied in.
    files_log = open(scratch / "files.part", "w", encoding="utf-8")
    left_log = open(scratch / "left_out.part", "w", encoding="utf-8")
    lists = {
        "train.txt": _ListFile(scratch / "train.txt"),
        "val.txt": _ListFile(scratch / "val.txt"),
    }
    if flat:
        lists["val_ground_truth.txt"] = _ListFile(scratch / "val_ground_truth.txt")
        lists["LOC_val_solution.csv"] = _ListFile(scratch / "LOC_val_solution.csv")
        lists["LOC_val_solution.csv"].write("ImageId,PredictionString\n")

    side_list: dict[str, str] = {
        SplitAssignment.Side.TRAIN: "train.txt",
        SplitAssignment.Side.VAL: "val.txt",
    }
    written: Counter[tuple[int, str]] = Counter()  # (label id, side) -> images written
    unreadable = 0
    flat_val_wnids: list[str] = []  # one shared str per class: 8 bytes per val image
    done = 0
    total_bytes = 0
    files_logged = left_logged = 0
    last_beat = time.monotonic()

    def log_files(entries: str, count: int, size: int) -> None:
        """Log `count` files of the dataset, `size` bytes in all: their manifest entries."""
        nonlocal total_bytes, files_logged
        total_bytes += size
        files_log.write(f",{entries}" if files_logged else entries)
        files_logged += count

    def log_file(name: str, data: bytes) -> None:
        log_files(_manifest_entry(name, hashlib.sha256(data).hexdigest(), len(data)), 1, len(data))

    def log_left(image_id: int, sha: str | None, reason: str) -> None:
        nonlocal left_logged
        entry = {"image": image_id, "sha256": sha, "reason": reason}
        left_log.write(f"{',' if left_logged else ''}\n  {json.dumps(entry)}")
        left_logged += 1

    def side_rows(
        side: str, *order: str
    ) -> tuple[str, QuerySet[Decision, tuple[int, str, int | None, int]]]:
        rows = _assigned(export=export, sides=[side], label_id__in=list(index))
        return side, rows.values_list(
            "image_id", "image__file", "image__size_bytes", "label_id"
        ).order_by(*order)

    passes = [
        side_rows(SplitAssignment.Side.TRAIN, "label_id", "image_id"),
        side_rows(
            SplitAssignment.Side.VAL,
            *(("image__split_assignments__key", "image_id") if flat else ("label_id", "image_id")),
        ),
    ]
    progress_seconds = settings.EXPORT_PROGRESS_SECONDS

    # Per class and side: the start of its images' paths, the same as a JSON string (less
    # its closing quote), how to write a line of its list, and the end of those lines. Made
    # once, not per image.
    folders: dict[tuple[int, str], tuple[str, str, Callable[[str], Any], str]] = {}

    def folder(label_id: int, side: str) -> tuple[str, str, Callable[[str], Any], str]:
        wnid = wnid_of[label_id]
        start = f"{side}/{wnid}/{wnid}_"
        folders[label_id, side] = made = (
            start,
            json.dumps(start)[:-1],
            lists[side_list[side]].write,
            f" {index[label_id]}\n",
        )
        return made

    def lay_out(
        image_id: int, label_id: int, side: str, size: int
    ) -> tuple[str, tuple[None, str] | tuple[int, tuple[bytes, bytes | None]]]:
        """Give one image its place in the sink and its lines in the lists; returns its path
        as a JSON string and its place."""
        if side == SplitAssignment.Side.VAL and flat:
            wnid = wnid_of[label_id]
            number = len(flat_val_wnids) + 1
            relpath = f"val/ILSVRC_val_{number:08d}.JPEG"
            name = f'"{relpath}"'
            flat_val_wnids.append(wnid)
            lists["val_ground_truth.txt"].write(f"{index[label_id] + 1}\n")
            lists["LOC_val_solution.csv"].write(f"ILSVRC_val_{number:08d},{wnid}\n")
            lists["val.txt"].write(f"{relpath} {index[label_id]}\n")
        else:
            start, quoted, write_line, line_end = folders.get((label_id, side)) or folder(
                label_id, side
            )
            relpath = f"{start}{image_id}.JPEG"
            name = f'{quoted}{image_id}.JPEG"'
            write_line(relpath + line_end)
        written[label_id, side] += 1
        return name, sink.place(relpath, size)

    try:
        # Per image, the time goes to reading the file, hashing it and writing it; laying it
        # out (its path, its lines in the lists, its place in the tar, its manifest entry)
        # costs less, but is Python. So this process lays the images out, in query order,
        # and the worker processes (export_worker) read, convert, hash and write them, a
        # batch at a time, up to COPY_AHEAD batches per worker ahead of the one being laid
        # out. The output is the same whatever the workers' timing.
        in_flight: deque[tuple[int, list[tuple[int, int, str]]]] = deque()
        ahead = COPY_AHEAD * max(settings.EXPORT_PROCESSES, 1)
        batches = 0
        batch_limit = COPY_FIRST_BATCH

        def lay_out_batch() -> None:
            nonlocal done, unreadable, last_beat
            batch, rows = in_flight.popleft()
            entries: list[str] = []
            members: list[Any] = []
            start = None
            size_sum = 0
            for (image_id, label_id, side), result in zip(
                rows, copiers.results(batch), strict=False
            ):
                if isinstance(result, str):  # why it is unreadable
                    unreadable += 1
                    log_left(image_id, None, result)
                    continue
                size, digest = result
                name, (offset, member) = lay_out(image_id, label_id, side, size)
                if start is None:
                    start = offset
                members.append(member)
                entries.append(_manifest_entry(name, digest, size, image_id))
                size_sum += size
            copiers.write(batch, start, members)
            if entries:
                log_files(",".join(entries), len(entries), size_sum)
            done += len(rows)
            if heartbeat is not None and time.monotonic() - last_beat >= progress_seconds:
                heartbeat(done, total)
                last_beat = time.monotonic()

        def send(rows: list[tuple[int, int, str]], names: list[str]) -> None:
            nonlocal batches, batch_limit
            copiers.read(batches, names)
            in_flight.append((batches, rows))
            batches += 1
            batch_limit = min(2 * batch_limit, COPY_BATCH)
            while len(in_flight) > ahead:
                lay_out_batch()

        for side, queryset in passes:
            rows: list[tuple[int, int, str]] = []
            names: list[str] = []
            batch_bytes = 0
            # (Not bound to a name: a failure must close the database cursor at once.)
            for image_id, file_name, size_bytes, label_id in queryset.iterator(chunk_size=2000):
                rows.append((image_id, label_id, side))
                names.append(file_name)
                batch_bytes += size_bytes or 0
                if len(rows) >= batch_limit or batch_bytes >= COPY_BATCH_BYTES:
                    send(rows, names)
                    rows, names, batch_bytes = [], [], 0
            if rows:
                send(rows, names)
        while in_flight:
            lay_out_batch()
        copiers.finish()

        # Class list, meta.bin as torchvision's ImageNet reads it, the split lists.
        synsets = "".join(f"{c.wnid} {c.name}\n" for c in plan.classes).encode()
        sink.add_bytes("LOC_synset_mapping.txt", synsets)
        log_file('"LOC_synset_mapping.txt"', synsets)
        if flat:
            val_wnids = flat_val_wnids
        else:  # in the order of the val files' sorted paths: by class folder
            val_wnids = [
                c.wnid
                for c in plan.classes
                for _ in range(written[c.label_id, SplitAssignment.Side.VAL])
            ]
        meta = _torch_save_bytes(({c.wnid: _class_names(c.name) for c in plan.classes}, val_wnids))
        sink.add_bytes("meta.bin", meta)
        log_file('"meta.bin"', meta)
        for relpath, writer in lists.items():
            writer.close()
            digest, size = _file_sha256(writer.path)
            sink.add_file(relpath, writer.path)
            log_files(_manifest_entry(json.dumps(relpath), digest, size), 1, size)
        files_log.close()

        for image_id, sha, reason in _left_out_rows(export=export, plan=plan):
            log_left(image_id, sha, reason)
        left_log.close()

        per_class: dict[str, dict[str, Any]] = {
            c.wnid: {
                "index": i,
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
        summary = {
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
            "min_per_class": export.min_per_class,
            "jpeg_quality": quality,
            "counts": {
                "train": sum(r["train"] for r in per_class.values()),
                "val": sum(r["val"] for r in per_class.values()),
                "classes": len(per_class),
                "unreadable": unreadable,
            },
            "classes": per_class,
            "classes_too_small": plan.too_small,
            "classes_off_target": off_target,
        }
        manifest = scratch / "manifest.json"
        _write_manifest(manifest, summary, scratch / "files.part", scratch / "left_out.part")
        sink.add_file("manifest.json", manifest)
        if heartbeat is not None:
            heartbeat(done, total)
    finally:
        for handle in (files_log, left_log, *(w.file for w in lists.values())):
            handle.close()
    return BuildResult(summary=summary, files=sum(written.values()), bytes=total_bytes)
