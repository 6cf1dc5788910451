"""The train/val split of an export: which decided images qualify, and the stable, stratified
side each takes (see the package's docstring)."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, F, FilteredRelation, OuterRef, Q, QuerySet
from django.utils import timezone

from annotate.models import Decision, Export, Image, Label, Project, SplitAssignment
from annotate.services.export.clusters import ClusterSides, cluster_sides, in_a_cluster
from annotate.services.export.loaders import class_folders
from annotate.services.projects import one_line

DECIDED_STATES = (Image.State.CONSENSUS, Image.State.REVIEWED)


def split_key(*, seed: int, sha256: str) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def val_target(*, size: int, val_fraction: float) -> int:
    """How many of a class's `size` images belong in val: the nearest whole number to
    fraction * size, but at least one on each side, so that train and val hold the same
    classes and ImageFolder gives both the same class indices. Grows by 0 or 1 per image."""
    target = math.floor(val_fraction * size + 0.5)
    return min(max(target, 1), size - 1)


def _eligible(*, project: Project, include_gold: bool) -> QuerySet[Decision]:
    """Current decisions with a label on decided images: what an export may contain."""
    decisions = Decision.objects.filter(
        image__project=project,
        image__state__in=DECIDED_STATES,
        is_current=True,
        excluded=False,
        label__isnull=False,
    )
    if not include_gold:
        decisions = decisions.filter(image__is_gold=False)
    return decisions


def _assigned(*, export: Export, sides: list[str], **more: Any) -> QuerySet[Decision]:
    """The current decisions of the images eligible right now that took one of `sides` for
    `export`'s (seed, val fraction); that row is `image__split_assignments`.

    Starting from the decisions, as for the eligible images, rather than from the sides is
    2 to 4 times quicker on SQLite (the same on PostgreSQL). The side's conditions, and
    `more`, sit in one filter() call: they hold for one and the same row."""
    return _eligible(project=export.project, include_gold=export.include_gold).filter(
        image__split_assignments__seed=export.seed,
        image__split_assignments__val_fraction=export.val_fraction,
        image__split_assignments__side__in=sides,
        **more,
    )


@dataclass
class ClassPlan:
    label_id: int
    wnid: str
    name: str
    size: int
    target: int
    val: int = 0
    train: int = 0
    folder: str = ""  # its folder name in the dataset (loaders.class_folders)


@dataclass
class SplitPlan:
    classes: list[ClassPlan]  # exported classes, sorted by wnid: position = class index
    too_small: dict[str, int] = field(default_factory=dict)  # wnid -> decided images
    clusters: ClusterSides = field(default_factory=ClusterSides)

    @property
    def total(self) -> int:
        return sum(c.val + c.train for c in self.classes)


_SPLIT_COLUMNS = ("image_id", "seed", "val_fraction", "key", "side", "created_at", "updated_at")


def _sides_to_take(*, export: Export) -> QuerySet[Decision]:
    """The eligible images with no side yet for `export`'s (seed, val fraction): new ones, and
    any left without one while their class was too small (rows with a blank side)."""
    sided = SplitAssignment.objects.filter(
        image=OuterRef("image"),
        seed=export.seed,
        val_fraction=export.val_fraction,
        side__in=[SplitAssignment.Side.TRAIN, SplitAssignment.Side.VAL],
    )
    return _eligible(project=export.project, include_gold=export.include_gold).filter(
        ~Exists(sided)
    )


def _upsert_sql(table: str, columns: str, values: str) -> str:
    # A row left with a blank side takes one; the key is the same function of the image.
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {table} ({columns}) {values} "
        f"ON CONFLICT ({quote('image_id')}, {quote('seed')}, {quote('val_fraction')}) "
        f"DO UPDATE SET {quote('side')} = excluded.{quote('side')}, "
        f"{quote('updated_at')} = excluded.{quote('updated_at')}"
    )


def _ranked_sql(*, export: Export, rows: QuerySet[Decision]) -> tuple[str, list[Any]]:
    """SQL ranking `rows` per class by (key, image id), and its parameters: columns image_id,
    class_id, key, rn (1 for the first). The database computes the keys as split_key() does:
    PostgreSQL with its sha256(), SQLite with the SHA256() function Django gives it."""
    select, params = (
        rows.annotate(class_id=F("label_id"), sha=F("image__sha256"))
        .values_list("image_id", "class_id", "sha")
        .order_by()
        .query.sql_with_params()
    )
    if connection.vendor == "postgresql":
        key, keyed = "encode(sha256(convert_to(%s || s.sha, 'UTF8')), 'hex')", ""
    else:
        # SQLite would otherwise compute each key twice, once per use (in Python).
        key = "SHA256(%s || s.sha)"
        # (Django's SQLite backend is the sqlite3 module: connection.Database is it.)
        keyed = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""
    sql = (
        f"WITH n AS {keyed}(SELECT s.image_id, s.class_id, {key} AS key "
        f"FROM ({select}) AS s) "
        "SELECT image_id, class_id, key, "
        "ROW_NUMBER() OVER (PARTITION BY class_id ORDER BY key, image_id) AS rn FROM n"
    )
    return sql, [f"{export.seed}:", *params]


def _take_sides_postgresql(
    *, export: Export, rows: QuerySet[Decision], quotas: dict[int, int]
) -> None:
    """Write the sides of `rows` in one INSERT ... SELECT: each class's images ranked by
    (key, image id), the first `quotas[class]` go to val, the others to train. No row
    travels to Python, and each is written once, with its side, in image order (as on
    SQLite)."""
    quote = connection.ops.quote_name
    ranked, params = _ranked_sql(export=export, rows=rows)
    values = ", ".join(["(%s, %s)"] * len(quotas))
    sql = _upsert_sql(
        quote(SplitAssignment._meta.db_table),
        ", ".join(quote(c) for c in _SPLIT_COLUMNS),
        f"SELECT r.image_id, %s, %s, r.key, CASE WHEN r.rn <= quota.column2 "
        f"THEN '{SplitAssignment.Side.VAL}' ELSE '{SplitAssignment.Side.TRAIN}' END, %s, %s "
        f"FROM ({ranked}) AS r JOIN (VALUES {values}) AS quota ON quota.column1 = r.class_id "
        "ORDER BY r.image_id",
    )
    now = timezone.now()
    flat_quotas = [number for pair in quotas.items() for number in pair]
    with connection.cursor() as cursor:
        cursor.execute(sql, (export.seed, export.val_fraction, now, now, *params, *flat_quotas))


def _write_sides(*, export: Export, rows: list[tuple[int, str, str]]) -> None:
    """Store the sides `rows` of (image id, key, side) took, in image order."""
    quote = connection.ops.quote_name
    insert = _upsert_sql(
        quote(SplitAssignment._meta.db_table),
        ", ".join(quote(c) for c in _SPLIT_COLUMNS),
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as writing:
        writing.executemany(
            insert,
            [
                (image_id, export.seed, export.val_fraction, key, side, now, now)
                for image_id, key, side in sorted(rows)
            ],
        )


def _take_sides_rows(
    *, export: Export, rows: QuerySet[Decision], quotas: dict[int, int], batch_size: int
) -> None:
    """The same for SQLite, which would join the ranked rows to the quotas by scanning the
    quotas once per row: the sides are given here, and written in batches, in image order
    (inserting in key order would scatter the writes over the indexes: twice as long)."""
    quote = connection.ops.quote_name
    insert = _upsert_sql(
        quote(SplitAssignment._meta.db_table),
        ", ".join(quote(c) for c in _SPLIT_COLUMNS),
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
    )
    ranked, params = _ranked_sql(export=export, rows=rows)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    val, train = SplitAssignment.Side.VAL, SplitAssignment.Side.TRAIN
    with connection.cursor() as reading, connection.cursor() as writing:
        reading.execute(f"{ranked} ORDER BY image_id", params)
        while chunk := reading.fetchmany(batch_size):
            writing.executemany(
                insert,
                [
                    (
                        image_id,
                        export.seed,
                        export.val_fraction,
                        key,
                        val if rn <= quotas[class_id] else train,
                        now,
                        now,
                    )
                    for image_id, class_id, key, rn in chunk
                ],
            )


def split_assign(*, export: Export) -> SplitPlan:
    """Give every eligible image of `export`'s project a side for its (seed, val fraction),
    keeping the sides taken before, and return the per-class plan.

    Runs under the project row lock, so two exports never assign the same images at once."""
    project = export.project
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        # Per class, how many eligible images are on each side already and how many have
        # none yet (side ""): one pass over the eligible images, each joined to its side if
        # it has one (a LEFT JOIN: there is at most one row per image, seed and fraction).
        counts: dict[int, Counter[str]] = {}
        taken = _eligible(project=project, include_gold=export.include_gold).annotate(
            taken=FilteredRelation(
                "image__split_assignments",
                condition=Q(
                    image__split_assignments__seed=export.seed,
                    image__split_assignments__val_fraction=export.val_fraction,
                    image__split_assignments__side__in=[
                        SplitAssignment.Side.TRAIN,
                        SplitAssignment.Side.VAL,
                    ],
                ),
            )
        )
        for label_id, side, n in (
            taken.values_list("label_id", "taken__side").annotate(n=Count("id")).order_by()
        ):
            counts.setdefault(label_id, Counter())[side or ""] = n
        # On a first export (nothing has a side yet) every eligible image takes one: no need
        # to look each up among the sides.
        first = not any(
            sides[SplitAssignment.Side.TRAIN] or sides[SplitAssignment.Side.VAL]
            for sides in counts.values()
        )
        to_take = taken if first else _sides_to_take(export=export)
        labels = {label.pk: label for label in Label.objects.filter(project=project, pk__in=counts)}
        # Near-duplicate clusters take their sides first, whole (clusters.py).
        targets = {
            label_id: val_target(size=sum(sides.values()), val_fraction=export.val_fraction)
            for label_id, sides in counts.items()
            if sum(sides.values()) >= export.min_per_class
        }
        clustered = cluster_sides(
            export=export, taken=taken, counts=counts, exported=set(targets), targets=targets
        )
        if clustered.new:
            _write_sides(export=export, rows=clustered.new)
        if clustered.clusters or clustered.spanning:
            to_take = to_take.exclude(in_a_cluster())
        for spanning in clustered.spanning:  # label ids as the dataset names them
            spanning["labels"] = [labels[label_id].wnid for label_id in spanning["labels"]]
        plan = SplitPlan(classes=[], clusters=clustered)
        quotas: dict[int, int] = {}  # class -> how many of its new images go to val
        for label_id, sides in counts.items():
            label = labels[label_id]
            size = sum(sides.values())
            if size < export.min_per_class:
                plan.too_small[label.wnid] = size
                continue
            target = val_target(size=size, val_fraction=export.val_fraction)
            new = sides[""]
            to_val = max(0, min(target - sides[SplitAssignment.Side.VAL], new))
            if new:
                quotas[label_id] = to_val
            plan.classes.append(
                ClassPlan(
                    label_id=label_id,
                    wnid=label.wnid,
                    name=one_line(label.name),  # one line per class in the synset mapping
                    size=size,
                    target=target,
                    val=sides[SplitAssignment.Side.VAL] + to_val,
                    train=sides[SplitAssignment.Side.TRAIN] + new - to_val,
                )
            )
        if quotas:
            # Each class's new images ranked by (key, image id): the first quotas[class] go
            # to val, the others to train.
            rows = to_take.filter(label_id__in=list(quotas))
            if connection.vendor == "postgresql":
                _take_sides_postgresql(export=export, rows=rows, quotas=quotas)
            else:
                _take_sides_rows(export=export, rows=rows, quotas=quotas, batch_size=2000)
    # The class index is the position in wnid order, as ImageFolder sorts folder names.
    plan.classes.sort(key=lambda c: c.wnid)
    for plan_class, folder in zip(
        plan.classes, class_folders([c.wnid for c in plan.classes]), strict=True
    ):
        plan_class.folder = folder
    return plan


def _left_out_rows(*, export: Export, plan: SplitPlan) -> Iterator[tuple[int, str, str]]:
    """(image id, sha256, reason) for each image of the project the export does not hold,
    except unreadable files, which the writer reports itself."""
    images = Image.objects.filter(project=export.project_id).order_by("id")
    yield from (
        images.exclude(state__in=DECIDED_STATES)
        .values_list("id", "sha256", "state")
        .iterator(chunk_size=2000)
    )
    decided = images.filter(state__in=DECIDED_STATES)
    if not export.include_gold:
        for image_id, sha in (
            decided.filter(is_gold=True).values_list("id", "sha256").iterator(chunk_size=2000)
        ):
            yield image_id, sha, "gold"
        decided = decided.filter(is_gold=False)
    if plan.too_small:
        small = decided.filter(
            decisions__is_current=True, decisions__label__wnid__in=list(plan.too_small)
        )
        for image_id, sha in small.values_list("id", "sha256").iterator(chunk_size=2000):
            yield image_id, sha, "class_too_small"
    current = Decision.objects.filter(
        image=OuterRef("pk"), is_current=True, excluded=False, label__isnull=False
    )
    for image_id, sha in (
        decided.filter(~Exists(current)).values_list("id", "sha256").iterator(chunk_size=2000)
    ):
        yield image_id, sha, "no_label"
