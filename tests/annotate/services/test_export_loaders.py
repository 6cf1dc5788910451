"""Every loader the README names reads an export with the class order and the targets of its
train.txt and val.txt: torchvision's ImageFolder and ImageNet, Hugging Face's imagefolder,
timm's folder reader (issue 17)."""

import gc
import json
import os
import random
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

# No hub: every loader here reads local folders. (Set before `datasets` is imported.)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
from timm.data import ImageDataset, create_dataset
from torchvision.datasets import ImageFolder, ImageNet

from annotate.services import export as export_service
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db

WNIDS = ["n02123045", "n01440764", "n09999999"]
# Ids that code-point order (ImageFolder) and natural order (timm) sort differently.
SLUGS = ["dog", "bird10", "Cat", "bird9", "Zebra-2"]


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"


def make_project(ids: list[str]):
    project = ProjectFactory()
    rng = random.Random(len(ids))
    for i, label_id in enumerate(ids):
        # One older name with a newline in it (names are checked now; stored ones may hold one).
        name = "tabby\ncat, house cat" if i == 0 else f"class {label_id}"
        decided_images(project, LabelFactory(project=project, wnid=label_id, name=name), 4, rng)
    return project


def export(project, tmp_path: Path, layout: str) -> Path:
    created = export_service.export_create(
        project=project, enqueue=False, val_layout=layout, val_fraction=0.25
    )
    out = tmp_path / f"ds-{layout}"
    assert export_service.export_run(export_id=created.pk, run_token="t", destination=out) == "done"
    return out


def listed(root: Path, name: str) -> dict[str, int]:
    """{path from the root: class index} of train.txt or val.txt."""
    lines = (root / name).read_text().splitlines()
    return {path: int(index) for path, index in (line.split(" ") for line in lines)}


def relative(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


@contextmanager
def unclosed_files_quiet():
    """datasets reads the first chunk of a metadata.csv and drops its reader, whose file is
    then closed by the garbage collector with a ResourceWarning: not ours to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


def load_imagefolder(root: Path, cache: Path) -> datasets.DatasetDict:
    with unclosed_files_quiet():
        return datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=str(cache))


@pytest.fixture(params=["wnids", "slugs"])
def label_ids(request) -> list[str]:
    return WNIDS if request.param == "wnids" else SLUGS


@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_every_loader_reads_the_class_order_and_targets_of_the_lists(tmp_path, label_ids, layout):
    root = export(make_project(label_ids), tmp_path, layout)
    mapping = (root / "LOC_synset_mapping.txt").read_text().splitlines()
    assert len(mapping) == len(label_ids)  # one line per class, newline in a name or not
    folders = [line.split(" ", 1)[0] for line in mapping]
    manifest = json.loads((root / "manifest.json").read_text())
    if label_ids is WNIDS:
        assert folders == sorted(WNIDS)
    else:  # zero-padded index first: code-point and natural order agree
        assert folders == ["000_Cat", "001_Zebra-2", "002_bird10", "003_bird9", "004_dog"]
    assert [manifest["classes"][w]["folder"] for w in sorted(label_ids)] == folders
    train, val = listed(root, "train.txt"), listed(root, "val.txt")
    assert len(train) == 3 * len(label_ids) and len(val) == len(label_ids)
    splits = {"train": train, "val": val}
    folder_splits = ["train", "val"] if layout == "folders" else ["train"]

    # torchvision ImageFolder, per split folder.
    for split in folder_splits:
        loaded = ImageFolder(root / split)
        assert loaded.classes == folders
        assert {relative(root, p): t for p, t in loaded.samples} == splits[split]

    # torchvision ImageNet: meta.bin and the class folders.
    for split in folder_splits:
        imagenet = ImageNet(str(root), split=split)
        assert imagenet.wnids == folders
        assert ("tabby cat", "house cat") in imagenet.classes
        assert {relative(root, p): t for p, t in imagenet.samples} == splits[split]
    if layout == "flat":
        # ImageNet's own val archive layout, which torchvision sorts into class folders
        # itself from the original tar: torchvision's ImageNet does not read it (README).
        with pytest.raises(FileNotFoundError):
            ImageNet(str(root), split="val")

    # timm's folder reader: natural order, which the folder names make the same.
    for split in folder_splits:
        timm_set = ImageDataset(str(root / split))
        assert list(timm_set.reader.class_to_idx) == folders
        samples = timm_set.reader.samples
        assert {relative(root, p): t for p, t in samples} == splits[split]

    # Hugging Face imagefolder: labels from the folder names, or (flat) from metadata.csv.
    loaded_hf = load_imagefolder(root, tmp_path / "hf")
    assert set(loaded_hf) == {"train", "validation"}
    for split, hf_split in (("train", "train"), ("val", "validation")):
        rows = loaded_hf[hf_split].cast_column("image", datasets.Image(decode=False))
        label = rows.features["label"]
        if layout == "folders":
            assert label.names == folders
        else:
            assert label.dtype == "int64"
        got = {relative(root, r["image"]["path"]): r["label"] for r in rows}
        assert got == splits[split]

    if layout == "flat":
        # timm reads the flat val split through Hugging Face (its "hfds/" reader).
        with unclosed_files_quiet():
            timm_val = create_dataset(
                f"hfds/{root}", root=str(tmp_path / "hf-timm"), split="validation"
            )
        rows = timm_val.reader.dataset
        assert {relative(root, r["image"]["path"]): r["label"] for r in rows} == val
        names = sorted(p.name for p in (root / "val").iterdir())
        assert names[0] == "ILSVRC2012_val_00000001.JPEG" and names[-1] == "metadata.csv"
        truth = (root / "val_ground_truth.txt").read_text().split()
        assert [int(t) - 1 for t in truth] == [val[f"val/{n}"] for n in names[:-1]]
