"""Near duplicates never straddle the split (issue 17: 4 of 12 pairs leaked before)."""

import io
import json
import random
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from annotate.models import Image, SplitAssignment
from annotate.services import export as export_service
from annotate.services.export.clusters import _first_of
from tests.export_helpers import add_image, decide
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"


def photo(rng: np.random.Generator) -> PIL.Image.Image:
    """A smooth picture (coarse random colours, enlarged): what perceptual hashes see."""
    coarse = PIL.Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return coarse.resize((160, 120), PIL.Image.Resampling.BICUBIC)


def encoded(img: PIL.Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def copy_of(img: PIL.Image.Image, how: int) -> bytes:
    """A re-encoded copy, or one 1 px smaller."""
    if how % 2:
        return encoded(img.resize((img.width - 1, img.height - 1)), 90)
    return encoded(img, 60)


def export_sides(project, tmp_path: Path, **options) -> tuple[dict[int, str], dict]:
    export = export_service.export_create(project=project, enqueue=False, **options)
    out = tmp_path / f"ds-{export.pk}"
    assert export_service.export_run(export_id=export.pk, run_token="t", destination=out) == "done"
    manifest = json.loads((out / "manifest.json").read_text())
    sides = {
        e["image"]: path.split("/", 1)[0] for path, e in manifest["files"].items() if "image" in e
    }
    return sides, manifest


@pytest.fixture
def pairs_project(db):
    """Two classes of 12 originals each, 6 of them with a near-duplicate copy (12 pairs), and
    one pair whose copy was labelled with the other class."""
    rng = np.random.default_rng(17)
    project = ProjectFactory()
    labels = [LabelFactory(project=project, wnid=f"n0100000{i}", name=f"c{i}") for i in range(2)]
    pairs: list[tuple[Image, Image]] = []
    for label in labels:
        for n in range(12):
            img = photo(rng)
            original = decide(add_image(project, encoded(img)), label)
            if n < 6:
                copy = decide(add_image(project, copy_of(img, n)), label)
                pairs.append((original, copy))
    img = photo(rng)
    crossing = (
        decide(add_image(project, encoded(img)), labels[0]),
        decide(add_image(project, copy_of(img, 1)), labels[1]),
    )
    for original, copy in [*pairs, crossing]:
        assert copy.near_duplicate_of_id == original.pk  # ingest linked them
    return project, pairs, crossing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_duplicates_land_on_one_side(pairs_project, tmp_path, seed):
    project, pairs, crossing = pairs_project
    sides, manifest = export_sides(project, tmp_path, val_fraction=0.4, seed=seed)
    leaked = [(a.pk, b.pk) for a, b in [*pairs, crossing] if sides[a.pk] != sides[b.pk]]
    assert leaked == []
    assert set(sides.values()) == {"train", "val"}
    # Every class stays near its share: 25 and 26 images at 0.4.
    for row in manifest["classes"].values():
        assert abs(row["val"] - 0.4 * (row["train"] + row["val"])) <= 2
    # A cluster's images share its first image's key.
    for first, copy in [*pairs, crossing]:
        keys = set(
            SplitAssignment.objects.filter(image__in=[first, copy], seed=seed).values_list(
                "key", flat=True
            )
        )
        assert keys == {export_service.split_key(seed=seed, sha256=first.sha256)}
    near = manifest["near_duplicates"]
    assert near["clusters"] == 13 and near["images"] == 26
    assert near["spanning_classes"] == [
        {
            "first": crossing[0].pk,
            "images": [crossing[0].pk, crossing[1].pk],
            "labels": ["n01000000", "n01000001"],
        }
    ]


def test_a_new_near_duplicate_follows_its_cluster_and_nothing_moves(pairs_project, tmp_path):
    project, pairs, _ = pairs_project
    before, _ = export_sides(project, tmp_path, val_fraction=0.4)
    label = pairs[0][0].decisions.get(is_current=True).label
    rng = np.random.default_rng(3)
    # New copies of a val image and of a train image (copies of their copies: a chain).
    in_val = next(pair for pair in pairs if before[pair[0].pk] == "val")
    in_train = next(pair for pair in pairs if before[pair[0].pk] == "train")
    added = []
    for _, copy in (in_val, in_train):
        with PIL.Image.open(copy.file.path) as img:
            data = encoded(img.convert("RGB"), 75)
        added.append(decide(add_image(project, data), label))
    assert [a.near_duplicate_of_id is not None for a in added] == [True, True]
    for _ in range(5):  # and some new single images
        decide(add_image(project, encoded(photo(rng))), label)
    after, _ = export_sides(project, tmp_path, val_fraction=0.4)
    assert {k: v for k, v in after.items() if k in before} == before
    assert after[added[0].pk] == "val" and after[added[1].pk] == "train"


def test_cluster_roots_follow_chains_and_survive_loops():
    assert _first_of({2: 1, 3: 2, 5: 4}) == {2: 1, 3: 1, 5: 4}
    assert _first_of({1: 2, 2: 3, 3: 1}) == {1: 1, 2: 1, 3: 1}


def test_without_near_duplicates_the_split_is_as_before(db, tmp_path):
    project = ProjectFactory()
    label = LabelFactory(project=project, wnid="n01000000")
    rng = random.Random(1)
    from tests.export_helpers import decided_images

    decided_images(project, label, 10, rng)
    sides, manifest = export_sides(project, tmp_path, val_fraction=0.3)
    assert sorted(sides.values()).count("val") == 3
    assert manifest["near_duplicates"] == {"clusters": 0, "images": 0, "spanning_classes": []}
