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

from annotate.models import Decision, Export, SplitAssignment
from annotate.services.export.copiers import _Copiers, _copy_source
from annotate.services.export.loaders import metadata_line, val_name
from annotate.services.export.manifest import (
    PrivacyCounts,
    _class_names,
    _file_sha256,
    _ListFile,
    _manifest_entry,
    _torch_save_bytes,
    _write_manifest,
    export_summary,
)
from annotate.services.export.sinks import DirectorySink, TarSink
from annotate.services.export.split import SplitPlan, _assigned, _left_out_rows, split_assign
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
        keep_metadata=tuple(settings.EXPORT_KEEP_METADATA),
        blur_faces=export.blur_faces,
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
    layout = _Layout(export=export, sink=sink, scratch=scratch, plan=plan, heartbeat=heartbeat)
    try:
        layout.copy_images(copiers)
        layout.add_small_files()
        summary = layout.summary()
        manifest = scratch / "manifest.json"
        _write_manifest(manifest, summary, scratch / "files.part", scratch / "left_out.part")
        sink.add_file("manifest.json", manifest)
        if heartbeat is not None:
            heartbeat(layout.done, plan.total)
    finally:
        layout.close()
    return BuildResult(
        summary=summary, files=sum(layout.written.values()), bytes=layout.total_bytes
    )


# One class and side's images: the start of their paths, the same as a JSON string (less its
# closing quote), how to write a line of their list, and the end of those lines.
_Folder = tuple[str, str, Callable[[str], Any], str]
_Place = tuple[None, str] | tuple[int, tuple[bytes, bytes | None]]


class _Layout:
    """One export's dataset as it is laid out: the lists and manifest parts in `scratch`, the
    counts per class and side, and the progress reported to `heartbeat`."""

    def __init__(
        self,
        *,
        export: Export,
        sink: DirectorySink | TarSink,
        scratch: Path,
        plan: SplitPlan,
        heartbeat: Callable[[int, int], None] | None,
    ):
        self.export, self.sink, self.plan, self.heartbeat = export, sink, plan, heartbeat
        self.index = {c.label_id: i for i, c in enumerate(plan.classes)}
        self.folder_of = {c.label_id: c.folder for c in plan.classes}
        self.flat = export.val_layout == Export.ValLayout.FLAT
        scratch.mkdir(parents=True, exist_ok=True)
        # The manifest's "files" and "left_out" entries, each written once in its final text
        # as the export goes: the manifest is the summary with these copied in.
        self.files_log = open(scratch / "files.part", "w", encoding="utf-8")
        self.left_log = open(scratch / "left_out.part", "w", encoding="utf-8")
        self.lists = {
            "train.txt": _ListFile(scratch / "train.txt"),
            "val.txt": _ListFile(scratch / "val.txt"),
        }
        if self.flat:
            self.lists["val_ground_truth.txt"] = _ListFile(scratch / "val_ground_truth.txt")
            self.lists["LOC_val_solution.csv"] = _ListFile(scratch / "LOC_val_solution.csv")
            self.lists["LOC_val_solution.csv"].write("ImageId,PredictionString\n")
            for side in ("train", "val"):
                self.lists[f"{side}/metadata.csv"] = _ListFile(scratch / f"{side}-metadata.csv")
                self.lists[f"{side}/metadata.csv"].write("file_name,label\n")
        self.side_list: dict[str, str] = {
            SplitAssignment.Side.TRAIN: "train.txt",
            SplitAssignment.Side.VAL: "val.txt",
        }
        self.written: Counter[tuple[int, str]] = Counter()  # (label id, side) -> images written
        self.unreadable = 0
        self.privacy = PrivacyCounts()
        self.flat_val_wnids: list[str] = []  # one shared str per class: 8 bytes per val image
        self.done = 0
        self.total_bytes = 0
        self.files_logged = self.left_logged = 0
        self.last_beat = time.monotonic()
        self.progress_seconds = settings.EXPORT_PROGRESS_SECONDS
        # Per class and side, made once, not per image.
        self.folders: dict[tuple[int, str], _Folder] = {}
        # The batches sent to the copiers and not yet laid out: (batch, its rows).
        self.in_flight: deque[tuple[int, list[tuple[int, int, str]]]] = deque()
        self.ahead = COPY_AHEAD * max(settings.EXPORT_PROCESSES, 1)
        self.batches = 0
        self.batch_limit = COPY_FIRST_BATCH

    def close(self) -> None:
        for handle in (self.files_log, self.left_log, *(w.file for w in self.lists.values())):
            handle.close()

    def log_files(self, entries: str, count: int, size: int) -> None:
        """Log `count` files of the dataset, `size` bytes in all: their manifest entries."""
        self.total_bytes += size
        self.files_log.write(f",{entries}" if self.files_logged else entries)
        self.files_logged += count

    def log_file(self, name: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        self.log_files(_manifest_entry(name, digest, len(data)), 1, len(data))

    def log_left(self, image_id: int, sha: str | None, reason: str) -> None:
        entry = {"image": image_id, "sha256": sha, "reason": reason}
        self.left_log.write(f"{',' if self.left_logged else ''}\n  {json.dumps(entry)}")
        self.left_logged += 1

    def side_rows(
        self, side: str, *order: str
    ) -> tuple[str, QuerySet[Decision, tuple[int, str, int | None, int]]]:
        rows = _assigned(export=self.export, sides=[side], label_id__in=list(self.index))
        return side, rows.values_list(
            "image_id", "image__file", "image__size_bytes", "label_id"
        ).order_by(*order)

    def folder(self, label_id: int, side: str) -> _Folder:
        folder = self.folder_of[label_id]
        start = f"{side}/{folder}/{folder}_"
        side_list = self.lists[self.side_list[side]].write
        write_line: Callable[[str], Any] = side_list
        if self.flat:  # the lists, and the metadata.csv Hugging Face reads labels from
            metadata = self.lists[f"{side}/metadata.csv"].write
            cut, index = len(side) + 1, self.index[label_id]

            def both(line: str) -> None:
                side_list(line)
                metadata(metadata_line(line.partition(" ")[0][cut:], index))

            write_line = both
        self.folders[label_id, side] = made = (
            start,
            json.dumps(start)[:-1],
            write_line,
            f" {self.index[label_id]}\n",
        )
        return made

    def lay_out(self, image_id: int, label_id: int, side: str, size: int) -> tuple[str, _Place]:
        """Give one image its place in the sink and its lines in the lists; returns its path
        as a JSON string and its place."""
        if side == SplitAssignment.Side.VAL and self.flat:
            folder, index = self.folder_of[label_id], self.index[label_id]
            stem = val_name(len(self.flat_val_wnids) + 1)
            relpath = f"val/{stem}.JPEG"
            name = f'"{relpath}"'
            self.flat_val_wnids.append(folder)
            self.lists["val_ground_truth.txt"].write(f"{index + 1}\n")
            self.lists["LOC_val_solution.csv"].write(f"{stem},{folder}\n")
            self.lists["val.txt"].write(f"{relpath} {index}\n")
            self.lists["val/metadata.csv"].write(metadata_line(f"{stem}.JPEG", index))
        else:
            start, quoted, write_line, line_end = self.folders.get((label_id, side)) or self.folder(
                label_id, side
            )
            relpath = f"{start}{image_id}.JPEG"
            name = f'{quoted}{image_id}.JPEG"'
            write_line(relpath + line_end)
        self.written[label_id, side] += 1
        return name, self.sink.place(relpath, size)

    def copy_images(self, copiers: _Copiers) -> None:
        """Every image of the split, copied into the sink in query order.

        Per image, the time goes to reading the file, hashing it and writing it; laying it out
        (its path, its lines in the lists, its place in the tar, its manifest entry) costs
        less, but is Python. So this process lays the images out, in query order, and the
        worker processes (export_worker) read, convert, hash and write them, a batch at a
        time, up to COPY_AHEAD batches per worker ahead of the one being laid out. The output
        is the same whatever the workers' timing."""
        by_key = ("image__split_assignments__key", "image_id")
        val_order = by_key if self.flat else ("label_id", "image_id")
        passes = [
            self.side_rows(SplitAssignment.Side.TRAIN, "label_id", "image_id"),
            self.side_rows(SplitAssignment.Side.VAL, *val_order),
        ]
        for side, queryset in passes:
            rows: list[tuple[int, int, str]] = []
            names: list[str] = []
            batch_bytes = 0
            # (Not bound to a name: a failure must close the database cursor at once.)
            for image_id, file_name, size_bytes, label_id in queryset.iterator(chunk_size=2000):
                rows.append((image_id, label_id, side))
                names.append(file_name)
                batch_bytes += size_bytes or 0
                if len(rows) >= self.batch_limit or batch_bytes >= COPY_BATCH_BYTES:
                    self.send(copiers, rows, names)
                    rows, names, batch_bytes = [], [], 0
            if rows:
                self.send(copiers, rows, names)
        while self.in_flight:
            self.lay_out_batch(copiers, *self.in_flight.popleft())
        copiers.finish()

    def send(self, copiers: _Copiers, rows: list[tuple[int, int, str]], names: list[str]) -> None:
        """One batch to the copiers; then the batches beyond COPY_AHEAD per worker laid out."""
        copiers.read(self.batches, names)
        self.in_flight.append((self.batches, rows))
        self.batches += 1
        self.batch_limit = min(2 * self.batch_limit, COPY_BATCH)
        while len(self.in_flight) > self.ahead:
            self.lay_out_batch(copiers, *self.in_flight.popleft())

    def lay_out_batch(
        self, copiers: _Copiers, batch: int, rows: list[tuple[int, int, str]]
    ) -> None:
        entries: list[str] = []
        members: list[Any] = []
        start = None
        size_sum = 0
        for (image_id, label_id, side), result in zip(rows, copiers.results(batch), strict=False):
            if isinstance(result, str):  # why it is unreadable
                self.unreadable += 1
                self.log_left(image_id, None, result)
                continue
            size, digest, stripped, faces = result
            name, (offset, member) = self.lay_out(image_id, label_id, side, size)
            if start is None:
                start = offset
            members.append(member)
            extra = self.privacy.count(stripped, faces, blurring=self.export.blur_faces)
            entries.append(_manifest_entry(name, digest, size, image_id, extra))
            size_sum += size
        copiers.write(batch, start, members)
        if entries:
            self.log_files(",".join(entries), len(entries), size_sum)
        self.done += len(rows)
        if (
            self.heartbeat is not None
            and time.monotonic() - self.last_beat >= self.progress_seconds
        ):
            self.heartbeat(self.done, self.plan.total)
            self.last_beat = time.monotonic()

    def add_small_files(self) -> None:
        """The class list, meta.bin as torchvision's ImageNet reads it, the split lists; then
        the images left out, into their part of the manifest."""
        plan, sink = self.plan, self.sink
        synsets = "".join(f"{c.folder} {c.name}\n" for c in plan.classes).encode()
        sink.add_bytes("LOC_synset_mapping.txt", synsets)
        self.log_file('"LOC_synset_mapping.txt"', synsets)
        if self.flat:
            val_wnids = self.flat_val_wnids
        else:  # in the order of the val files' sorted paths: by class folder
            val_wnids = [
                c.folder
                for c in plan.classes
                for _ in range(self.written[c.label_id, SplitAssignment.Side.VAL])
            ]
        # Keyed by folder name: torchvision's ImageNet looks its class folders up in it.
        meta = _torch_save_bytes(
            ({c.folder: _class_names(c.name) for c in plan.classes}, val_wnids)
        )
        sink.add_bytes("meta.bin", meta)
        self.log_file('"meta.bin"', meta)
        for relpath, writer in self.lists.items():
            writer.close()
            digest, size = _file_sha256(writer.path)
            sink.add_file(relpath, writer.path)
            self.log_files(_manifest_entry(json.dumps(relpath), digest, size), 1, size)
        self.files_log.close()

        for image_id, sha, reason in _left_out_rows(export=self.export, plan=plan):
            self.log_left(image_id, sha, reason)
        self.left_log.close()

    def summary(self) -> dict[str, Any]:
        """The manifest less its files and left_out entries."""
        return export_summary(
            export=self.export,
            plan=self.plan,
            written=self.written,
            unreadable=self.unreadable,
            privacy=self.privacy,
        )
