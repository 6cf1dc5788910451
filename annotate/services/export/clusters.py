"""Near duplicates on one side of the split.

Ingest links an image to the closest earlier one within NEAR_DUPLICATE_MAX_DISTANCE
(Image.near_duplicate_of): a re-encoded or slightly resized copy. Following those links to an
image with none gives a cluster and its first image. A model evaluated on a val image whose
copy it was trained on is flattered, so a cluster is never split: its images take one side,
and its split key is its first image's key (split_key of that image's SHA-256), for all of
them.

How a cluster's side is chosen, its images in exported classes only:
- an image of it has a side already (an earlier export): the new ones take that side, that of
  the earliest such image, so nothing moves;
- none has: it goes to val when its key, read as a fraction, is below the val fraction (so
  clusters are in val as often as single images are) and every class it touches has room for
  its images there; otherwise to train, unless train has no room and val has. The single
  images of each class then fill the class's val target as before.
Clusters are taken in key order, so the outcome is a function of the images and the seed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from annotate.models import Decision, Export, Image, SplitAssignment

VAL, TRAIN = SplitAssignment.Side.VAL, SplitAssignment.Side.TRAIN


def in_a_cluster() -> Q:
    """Decisions whose image is a near duplicate of another, or has one."""
    return Q(image__near_duplicate_of__isnull=False) | Q(
        Exists(Image.objects.filter(near_duplicate_of=OuterRef("image")))
    )


@dataclass
class ClusterSides:
    new: list[tuple[int, str, str]] = field(default_factory=list)  # (image, key, side) to write
    clusters: int = 0  # clusters with an exported image
    images: int = 0  # their exported images
    # Clusters whose images carry different labels: {"first": id, "images": [...], "labels"}.
    spanning: list[dict[str, Any]] = field(default_factory=list)


def _first_of(links: dict[int, int]) -> dict[int, int]:
    """Each linked image's cluster: the image its links lead to (a loop, which ingest never
    makes, ends at its smallest id)."""
    first: dict[int, int] = {}
    for start in links:
        path, image = [], start
        while image in links and image not in first and image not in path:
            path.append(image)
            image = links[image]
        root = first.get(image, min(path) if image in path else image)
        for step in path:
            first[step] = root
    return first


def cluster_sides(
    *,
    export: Export,
    taken: QuerySet[Decision],
    counts: dict[int, Counter[str]],
    exported: set[int],
    targets: dict[int, int],
) -> ClusterSides:
    """The sides of the new images of near-duplicate clusters. `taken` are the eligible
    decisions with their side so far (annotation `taken`); `counts` the images per class and
    side ("" for none yet), updated here as images take sides; `exported` the classes big
    enough to export and `targets` their val targets."""
    from annotate.services.export.split import split_key

    result = ClusterSides()
    links = dict(
        Image.objects.filter(project=export.project_id, near_duplicate_of__isnull=False)
        .values_list("id", "near_duplicate_of_id")
        .iterator(chunk_size=2000)
    )
    if not links:
        return result
    first = _first_of(links)
    members: dict[int, list[tuple[int, int, str]]] = defaultdict(list)  # root -> rows
    shas: dict[int, str] = {}
    # ("taken" is the caller's annotation, which the type checker cannot see from here.)
    columns = ("image_id", "label_id", "image__sha256", "taken__side")
    for image_id, label_id, sha, side in (
        taken.filter(in_a_cluster())
        .values_list(*columns)
        .order_by("image_id")
        .iterator(chunk_size=2000)
    ):
        members[first.get(image_id, image_id)].append((image_id, label_id, side or ""))
        shas[image_id] = sha
    missing = [root for root in members if root not in shas]
    for start in range(0, len(missing), 2000):
        shas.update(
            Image.objects.filter(pk__in=missing[start : start + 2000]).values_list("id", "sha256")
        )
    keyed = sorted(
        (split_key(seed=export.seed, sha256=shas[root]), root) for root in members if root in shas
    )
    for key, root in keyed:
        rows = members[root]
        if len({label_id for _, label_id, _ in rows}) > 1:
            result.spanning.append(
                {"first": root, "images": [r[0] for r in rows], "labels": [r[1] for r in rows]}
            )
        rows = [row for row in rows if row[1] in exported]
        if not rows:
            continue
        result.clusters += 1
        result.images += len(rows)
        new = [(image_id, label_id) for image_id, label_id, side in rows if not side]
        if not new:
            continue
        sided = [side for _, _, side in rows if side]
        side = sided[0] if sided else _choose(key, new, export.val_fraction, counts, targets)
        for image_id, label_id in new:
            result.new.append((image_id, key, side))
            counts[label_id][side] += 1
            counts[label_id][""] -= 1
    return result


def _choose(
    key: str,
    new: list[tuple[int, int]],
    val_fraction: float,
    counts: dict[int, Counter[str]],
    targets: dict[int, int],
) -> str:
    """The side of a cluster none of whose images has one yet (see the module's docstring)."""
    per_class = Counter(label_id for _, label_id in new)
    fits_val = all(counts[c][VAL] + n <= targets[c] for c, n in per_class.items())
    fits_train = all(
        counts[c][TRAIN] + n <= sum(counts[c].values()) - targets[c] for c, n in per_class.items()
    )
    wants_val = int(key[:13], 16) / 16**13 < val_fraction
    return VAL if (wants_val and fits_val) or (fits_val and not fits_train) else TRAIN
