"""The export service: layout, torchvision loading, split rules, manifest, failures, clean-up."""

import csv
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile
from datetime import timedelta
from pathlib import Path

import PIL.Image
import pytest
from django.utils import timezone
from torchvision.datasets import ImageFolder, ImageNet

from annotate.models import Export, Image, Label, SplitAssignment
from annotate.services import export as export_service
from annotate.services import export_worker, imaging
from annotate.services.errors import Conflict, InvalidInput
from annotate.services.export import copiers as export_copiers
from tests.export_helpers import add_image, decide, decided_images, unique_image
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SIZES = {"n02123045": 12, "n01440764": 9, "n09999999": 7}


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


@pytest.fixture
def decided_project(db):
    """Three classes of 12, 9 and 7 decided images (one a PNG with alpha, one grey JPEG),
    plus an open, a disputed, an excluded and a gold image."""
    rng = random.Random(11)
    project = ProjectFactory()
    labels = {
        "n02123045": LabelFactory(project=project, wnid="n02123045", name="tabby, tabby cat"),
        "n01440764": LabelFactory(project=project, wnid="n01440764", name="tench, Tinca tinca"),
        "n09999999": LabelFactory(project=project, wnid="n09999999", name="other"),
    }
    images: dict[str, list[Image]] = {}
    for wnid, size in SIZES.items():
        images[wnid] = decided_images(project, labels[wnid], size - 2, rng)
        images[wnid].append(
            decide(add_image(project, unique_image(rng)), labels[wnid], Image.State.REVIEWED)
        )
    images["n02123045"].append(
        decide(
            add_image(project, unique_image(rng, "PNG", mode="RGBA"), "a.png"), labels["n02123045"]
        )
    )
    images["n01440764"].append(
        decide(add_image(project, unique_image(rng, mode="L"), "grey.jpg"), labels["n01440764"])
    )
    images["n09999999"].append(decide(add_image(project, unique_image(rng)), labels["n09999999"]))
    left_out = {
        "open": add_image(project, unique_image(rng)),
        "disputed": decide(add_image(project, unique_image(rng)), None, Image.State.DISPUTED),
        "excluded": decide(add_image(project, unique_image(rng)), None, Image.State.EXCLUDED),
    }
    from annotate.services import ingest

    gold = ingest.images_upload(
        project=project,
        files=[("g.jpg", io.BytesIO(unique_image(rng)))],
        gold_label=labels["n09999999"],
    ).created[0]
    left_out["gold"] = Image.objects.get(pk=gold)
    return {
        "project": project,
        "labels": labels,
        "images": images,
        "left_out": left_out,
        "rng": rng,
    }


def run_export(project, **options) -> tuple[Export, Path]:
    """Run an export as its job does; return it and its tar, unpacked."""
    export = export_service.export_create(project=project, enqueue=False, **options)
    assert export_service.export_run(export_id=export.pk, run_token="test") == "done"
    export.refresh_from_db()
    tar_path = Path(export.location)
    assert tar_path.name == f"{export.name}.tar" and export.size_bytes == tar_path.stat().st_size
    unpacked = tar_path.parent.parent.parent / "unpacked" / str(export.pk)
    with tarfile.open(tar_path) as tar:
        assert all(name.startswith(f"{export.name}/") for name in tar.getnames())
        tar.extractall(unpacked, filter="data")
    return export, unpacked / export.name


def expected_label(image_id: int) -> str:
    return Image.objects.get(pk=image_id).decisions.get(is_current=True).label.wnid


def image_id_of(path: str) -> int:
    return int(Path(path).stem.rsplit("_", 1)[1])


def sides(root: Path) -> dict[int, str]:
    manifest = json.loads((root / "manifest.json").read_text())
    return {
        entry["image"]: path.split("/", 1)[0]
        for path, entry in manifest["files"].items()
        if "image" in entry
    }


def test_export_loads_in_torchvision_with_the_decided_classes_and_counts(decided_project):
    export, root = run_export(decided_project["project"], val_fraction=0.25, seed=3)
    wnids = sorted(SIZES)

    train, val = ImageFolder(root / "train"), ImageFolder(root / "val")
    assert train.classes == val.classes == wnids
    for dataset in (train, val):
        for path, target in dataset.samples:
            assert wnids[target] == expected_label(image_id_of(path))
    per_class = {w: sum(1 for _, t in train.samples + val.samples if wnids[t] == w) for w in wnids}
    assert per_class == SIZES

    for split, folder in (("train", train), ("val", val)):
        imagenet = ImageNet(str(root), split=split)
        assert imagenet.wnids == wnids
        assert imagenet.classes[wnids.index("n02123045")] == ("tabby", "tabby cat")
        assert [t for _, t in imagenet.samples] == [t for _, t in folder.samples]
        assert len(imagenet) == len(folder)
        image, target = imagenet[0]
        assert image.mode == "RGB" and 0 <= target < 3

    # Stratified: every class within one image of its share, and present on both sides.
    for wnid, size in SIZES.items():
        in_val = sum(1 for _, t in val.samples if wnids[t] == wnid)
        assert abs(in_val - 0.25 * size) <= 1 and 0 < in_val < size

    # Class index = line of LOC_synset_mapping.txt = ImageFolder's index.
    mapping = (root / "LOC_synset_mapping.txt").read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in mapping] == wnids
    assert mapping[wnids.index("n02123045")] == "n02123045 tabby, tabby cat"
    for split in ("train", "val"):
        lines = (root / f"{split}.txt").read_text().splitlines()
        assert len(lines) == len(ImageFolder(root / split))
        for line in lines:
            relpath, index = line.rsplit(" ", 1)
            assert (root / relpath).is_file() and relpath.startswith(f"{split}/")
            assert wnids[int(index)] == expected_label(image_id_of(relpath))

    # Never the undecided, excluded or (by default) gold images; the manifest says why.
    exported = {image_id_of(path) for path, _ in train.samples + val.samples}
    assert not exported & {image.pk for image in decided_project["left_out"].values()}
    manifest = json.loads((root / "manifest.json").read_text())
    reasons = {row["image"]: row["reason"] for row in manifest["left_out"]}
    assert reasons == {image.pk: reason for reason, image in decided_project["left_out"].items()}
    assert manifest["counts"] == {
        "train": len(train),
        "val": len(val),
        "classes": 3,
        "unreadable": 0,
    }
    assert (manifest["export_id"], manifest["seed"], manifest["val_fraction"]) == (
        export.pk,
        3,
        0.25,
    )
    assert manifest["policy"]["min_votes"] == decided_project["project"].min_votes
    assert manifest["project"]["id"] == decided_project["project"].pk


def test_the_synset_mapping_has_one_line_per_class_whatever_the_names_hold(decided_project):
    # A name stored before names were checked (or by hand) must not break "line = class".
    Label.objects.filter(pk=decided_project["labels"]["n09999999"].pk).update(
        name="other\nthings\r\u2028here\x1b", gloss="two\nlines"
    )
    _, root = run_export(decided_project["project"], val_fraction=0.25, seed=3)
    mapping = (root / "LOC_synset_mapping.txt").read_bytes().decode()
    assert mapping.split("\n") == [
        "n01440764 tench, Tinca tinca",
        "n02123045 tabby, tabby cat",
        "n09999999 other things here",
        "",
    ]


def test_files_are_rgb_jpegs_and_jpeg_originals_keep_their_bytes(decided_project):
    _, root = run_export(decided_project["project"])
    by_id = {image.pk: image for images in decided_project["images"].values() for image in images}
    converted = kept = 0
    for path in (root / "train").rglob("*.JPEG"):
        image = by_id[image_id_of(path.name)]
        data = path.read_bytes()
        with PIL.Image.open(io.BytesIO(data)) as img:
            assert (img.format, img.mode) == ("JPEG", "RGB")
        if image.format == "JPEG" and image.original_name != "grey.jpg":
            assert hashlib.sha256(data).hexdigest() == image.sha256
            kept += 1
        else:
            converted += 1
    for path in (root / "val").rglob("*.JPEG"):
        with PIL.Image.open(path) as img:
            assert (img.format, img.mode) == ("JPEG", "RGB")
    assert kept > 10 and converted >= 1


def grey16_gradient_png(width: int = 256, height: int = 8) -> bytes:
    """A real 16-bit grey PNG (mode I;16): each column a level from 0 to 65535."""
    levels = [round(x * 65535 / (width - 1)) for x in range(width)]
    rows = b"".join(level.to_bytes(2, "little") for level in levels) * height
    buffer = io.BytesIO()
    PIL.Image.frombytes("I;16", (width, height), rows).save(buffer, "PNG")
    return buffer.getvalue()


def rgb(image: PIL.Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The pixel of an RGB image (getpixel's type also allows single-band values)."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple), pixel
    return pixel


def test_a_16_bit_grey_png_is_exported_as_ingest_sees_it_not_white(decided_project):
    data = grey16_gradient_png()
    with PIL.Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "I;16"  # what the test is about
    image = decide(
        add_image(decided_project["project"], data, "deep.png"),
        decided_project["labels"]["n09999999"],
    )
    _, root = run_export(decided_project["project"], val_fraction=0.25, seed=3)
    (exported,) = [p for p in root.rglob("*.JPEG") if image_id_of(p.name) == image.pk]
    with PIL.Image.open(exported) as out:
        assert (out.mode, out.size) == ("RGB", (256, 8))
        row = [rgb(out, (x, 4)) for x in range(256)]
    # The 16 bits scaled to 8: column x is grey x, give or take JPEG's rounding.
    assert all(abs(channel - x) <= 6 for x, pixel in enumerate(row) for channel in pixel), row
    # And the same picture as the CNN's copy made at ingest.
    with image.preprocessed.open("rb") as stored, PIL.Image.open(stored) as cnn:
        cnn_row = [rgb(cnn, (x, cnn.height // 2))[0] for x in range(cnn.width)]
    scale = 256 / len(cnn_row)
    assert all(abs(value - row[int(x * scale)][0]) <= 12 for x, value in enumerate(cnn_row))


def test_the_export_converts_with_the_ingest_conversion():
    data = grey16_gradient_png(64, 4)
    exported = export_worker.jpeg_for_export(data, resize=None, quality=95)
    with PIL.Image.open(io.BytesIO(exported)) as out, PIL.Image.open(io.BytesIO(data)) as grey:
        expected = imaging.to_rgb(grey)
        assert (
            max(
                abs(a - b)
                for x in range(64)
                for a, b in zip(rgb(out, (x, 2)), rgb(expected, (x, 2)), strict=True)
            )
            <= 6
        )


def test_a_colour_keyed_png_is_white_where_transparent_at_ingest_and_in_the_export():
    keyed = PIL.Image.new("RGB", (32, 16), (10, 200, 30))
    keyed.paste((0, 0, 0), (0, 0, 16, 16))  # left half: the transparent colour
    buffer = io.BytesIO()
    keyed.save(buffer, "PNG", transparency=(0, 0, 0))
    data = buffer.getvalue()
    with PIL.Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "RGB" and "transparency" in opened.info
        ingested = imaging.to_rgb(opened)
    assert rgb(ingested, (4, 8)) == (255, 255, 255)
    assert rgb(ingested, (28, 8)) == (10, 200, 30)
    with PIL.Image.open(
        io.BytesIO(export_worker.jpeg_for_export(data, resize=None, quality=95))
    ) as out:
        assert all(abs(c - 255) <= 4 for c in rgb(out, (4, 8)))
        assert all(abs(c - e) <= 8 for c, e in zip(rgb(out, (28, 8)), (10, 200, 30), strict=True))


def test_manifest_checksums_cover_and_match_every_file(decided_project):
    _, root = run_export(decided_project["project"], val_layout="flat")
    manifest = json.loads((root / "manifest.json").read_text())
    on_disk = {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and path.name != "manifest.json"
    }
    assert {path: entry["sha256"] for path, entry in manifest["files"].items()} == on_disk
    assert {
        "meta.bin",
        "LOC_synset_mapping.txt",
        "train.txt",
        "val.txt",
        "val_ground_truth.txt",
        "LOC_val_solution.csv",
    } <= set(on_disk)


def test_manifest_checksums_are_of_the_bytes_written_not_the_ones_recorded_at_upload(
    decided_project,
):
    # A stored JPEG that changed after upload (rot, or a hand edit) is still copied byte for
    # byte; its manifest entry must describe what the dataset holds, not the upload's hash.
    image = decided_project["images"]["n09999999"][0]
    stored = Path(image.file.path)
    changed = unique_image(random.Random(99))  # another valid RGB JPEG, with no metadata
    assert changed != stored.read_bytes()
    stored.write_bytes(changed)
    _, root = run_export(decided_project["project"])
    manifest = json.loads((root / "manifest.json").read_text())
    ((relpath, entry),) = (
        (p, e) for p, e in manifest["files"].items() if e.get("image") == image.pk
    )
    assert (root / relpath).read_bytes() == changed
    assert entry == {
        "sha256": hashlib.sha256(changed).hexdigest(),
        "bytes": len(changed),
        "image": image.pk,
    }
    assert entry["sha256"] != image.sha256


def test_flat_validation_layout_ground_truth_matches_the_decisions(decided_project):
    _, root = run_export(decided_project["project"], val_layout="flat", val_fraction=0.3)
    wnids = sorted(SIZES)
    manifest = json.loads((root / "manifest.json").read_text())
    names = sorted(os.listdir(root / "val"))
    assert names.pop() == "metadata.csv"
    assert names[0] == "ILSVRC2012_val_00000001.JPEG" and all(n.endswith(".JPEG") for n in names)
    truth = (root / "val_ground_truth.txt").read_text().split()
    assert len(truth) == len(names) == manifest["counts"]["val"]
    with open(root / "LOC_val_solution.csv", newline="") as f:
        solution = list(csv.DictReader(f))
    for name, index, row in zip(names, truth, solution, strict=False):
        wnid = expected_label(manifest["files"][f"val/{name}"]["image"])
        assert wnids[int(index) - 1] == wnid  # 1-based, like ILSVRC
        assert row == {"ImageId": name.removesuffix(".JPEG"), "PredictionString": wnid}
    val_lines = (root / "val.txt").read_text().splitlines()
    assert [line.split(" ") for line in val_lines] == [
        [f"val/{name}", str(int(index) - 1)] for name, index in zip(names, truth, strict=False)
    ]
    assert ImageFolder(root / "train").classes == wnids


def test_a_later_export_with_more_images_moves_no_image_between_sides(decided_project):
    project, labels, rng = (decided_project[k] for k in ("project", "labels", "rng"))
    _, first = run_export(project, val_fraction=0.2, seed=5)
    before = sides(first)
    added = {"n02123045": 8, "n01440764": 5, "n09999999": 11}
    for wnid, count in added.items():
        decided_images(project, labels[wnid], count, rng)
    _, second = run_export(project, val_fraction=0.2, seed=5)
    after = sides(second)

    assert len(after) == len(before) + sum(added.values())
    assert {i: after[i] for i in before} == before
    assert sum(1 for i in set(after) - set(before) if after[i] == "val") > 0
    for wnid in SIZES:
        in_val = len(list((second / "val" / wnid).iterdir()))
        size = SIZES[wnid] + added[wnid]
        assert abs(in_val - 0.2 * size) <= 1


def test_the_split_is_a_function_of_the_images_and_the_seed(decided_project):
    project = decided_project["project"]
    _, root = run_export(project, seed=1, val_fraction=0.3)
    first = sides(root)
    SplitAssignment.objects.all().delete()  # forget the remembered sides
    assert sides(run_export(project, seed=1, val_fraction=0.3)[1]) == first
    assert sides(run_export(project, seed=2, val_fraction=0.3)[1]) != first
    # Val holds, per class, the images with the smallest SHA-256(seed, image SHA-256).
    for wnid in SIZES:
        ids = [image.pk for image in decided_project["images"][wnid]]
        by_key = sorted(
            ids,
            key=lambda i: export_service.split_key(seed=1, sha256=Image.objects.get(pk=i).sha256),
        )
        in_val = sorted(i for i in ids if first[i] == "val")
        assert sorted(by_key[: len(in_val)]) == in_val


def test_a_class_too_small_at_first_takes_its_sides_once_it_is_big_enough(decided_project):
    project, labels, rng = (decided_project[k] for k in ("project", "labels", "rng"))
    export, _ = run_export(project, min_per_class=8, seed=4)
    assert export.counts["classes_too_small"] == {"n09999999": 7}
    # Earlier versions left such images a row with a blank side: it must take one as well.
    first = decided_project["images"]["n09999999"][0]
    SplitAssignment.objects.update_or_create(
        image=first,
        seed=4,
        val_fraction=0.1,
        defaults={"side": "", "key": export_service.split_key(seed=4, sha256=first.sha256)},
    )
    images = decided_project["images"]["n09999999"] + decided_images(
        project, labels["n09999999"], 2, rng
    )
    export, root = run_export(project, min_per_class=8, seed=4)

    assert export.counts["classes_too_small"] == {}
    taken = sides(root)
    by_key = sorted(images, key=lambda i: export_service.split_key(seed=4, sha256=i.sha256))
    in_val = export_service.val_target(size=len(images), val_fraction=0.1)
    assert [taken[i.pk] for i in by_key] == ["val"] * in_val + ["train"] * (len(images) - in_val)
    assert not SplitAssignment.objects.filter(seed=4, side="").exists()


def test_resize_scales_the_shorter_side_and_reencodes(decided_project):
    export, root = run_export(decided_project["project"], resize=16)
    files = list(root.rglob("*.JPEG"))
    assert len(files) == sum(SIZES.values())
    for path in files:
        with PIL.Image.open(path) as img:
            assert min(img.size) == 16 and img.mode == "RGB"
    assert export.counts["resize"] == 16


def test_classes_below_the_minimum_are_left_out_and_reported(decided_project):
    export, root = run_export(decided_project["project"], min_per_class=8)
    assert ImageFolder(root / "train").classes == ["n01440764", "n02123045"]
    assert export.counts["classes_too_small"] == {"n09999999": 7}
    manifest = json.loads((root / "manifest.json").read_text())
    small = {row["image"] for row in manifest["left_out"] if row["reason"] == "class_too_small"}
    assert small == {image.pk for image in decided_project["images"]["n09999999"]}


def test_gold_images_are_exported_on_request(decided_project):
    gold = decided_project["left_out"]["gold"]
    _, root = run_export(decided_project["project"], include_gold=True)
    assert sides(root).get(gold.pk) in ("train", "val")


def test_an_unreadable_file_is_left_out_and_reported(decided_project):
    broken = decided_project["images"]["n02123045"][0]
    Path(broken.file.path).write_bytes(b"not a jpeg any more")
    export, root = run_export(decided_project["project"])
    manifest = json.loads((root / "manifest.json").read_text())
    assert broken.pk not in sides(root)
    assert any(
        row["image"] == broken.pk and row["reason"].startswith("unreadable")
        for row in manifest["left_out"]
    )
    assert export.counts["counts"]["unreadable"] == 1


def test_an_export_whose_every_file_is_unreadable_finishes_empty(decided_project):
    """A batch with no readable file places no member: writing it is a no-op, not a failure
    (the worker refused it once for want of an offset)."""
    for images in decided_project["images"].values():
        for image in images:
            Path(image.file.path).write_bytes(b"not an image")
    export, root = run_export(decided_project["project"])
    assert export.state == Export.State.DONE
    assert export.counts["counts"]["unreadable"] == sum(
        len(images) for images in decided_project["images"].values()
    )
    assert not sides(root)


def _failing_at(call: int, real):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    return failing


# A worker process started as the export starts its own, less its read() or its conversion of
# the second image it converts (the PNG and the grey JPEG are converted, the others copied).
_BROKEN_WORKER = {
    "worker fails": "from annotate.services import export_worker as w\n"
    "w.jpeg_for_export = lambda *a, **k: 1 / 0\n",
    "worker dies": "import os\nfrom annotate.services import export_worker as w\n"
    "w.Copier.read = lambda *a: os._exit(9)\n",
}


@pytest.mark.parametrize("where", ["read", "conversion", "worker fails", "worker dies"])
def test_a_failing_export_leaves_no_dataset_and_says_why(
    decided_project, monkeypatch, export_dir, settings, where
):
    if where == "read":  # in the export's own process
        settings.EXPORT_PROCESSES = 0
        real_reader = export_worker.local_reader
        monkeypatch.setattr(
            export_worker, "local_reader", lambda base: _failing_at(5, real_reader(base))
        )
        failure, reason = RuntimeError, "disk on fire"
    elif where == "conversion":
        settings.EXPORT_PROCESSES = 0
        monkeypatch.setattr(
            export_worker, "jpeg_for_export", _failing_at(2, export_worker.jpeg_for_export)
        )
        failure, reason = RuntimeError, "disk on fire"
    else:
        settings.EXPORT_PROCESSES = 2
        code = _BROKEN_WORKER[where] + "import sys\nw.serve(int(sys.argv[1]))\n"
        monkeypatch.setattr(
            export_copiers, "_worker_command", lambda fd: [sys.executable, "-c", code, str(fd)]
        )
        failure = export_service.CopyFailed
        reason = "ZeroDivisionError" if where == "worker fails" else "ended unexpectedly"
    export = export_service.export_create(project=decided_project["project"], enqueue=False)
    with pytest.raises(failure):
        export_service.export_run(export_id=export.pk, run_token="t")
    export.refresh_from_db()
    assert export.state == Export.State.FAILED and reason in export.error, export.error
    assert not (export_dir / str(export.pk)).exists()
    assert list((export_dir / export_service.TMP_FOLDER).iterdir()) == []


def test_a_worker_that_has_ended_is_reported_with_its_last_words(monkeypatch, tmp_path):
    # Sending to a worker that has already ended fails; its failure message, still waiting
    # in the connection, is what the export reports.
    code = (
        "import sys\nfrom multiprocessing.connection import Connection\n"
        "connection = Connection(int(sys.argv[1]))\nconnection.recv()\n"
        "connection.send(('failed', None, 'RuntimeError: no disk'))\n"
    )
    monkeypatch.setattr(
        export_copiers, "_worker_command", lambda fd: [sys.executable, "-c", code, str(fd)]
    )
    config = export_worker.CopyConfig(
        source=str(tmp_path), tar_path=None, tar_prefix="", tar_mtime=0, resize=None, quality=95
    )
    with export_service._Copiers(config, 1) as copiers:
        assert copiers.processes[0].wait(10) == 0
        with pytest.raises(export_service.CopyFailed, match="RuntimeError: no disk"):
            copiers.read(0, ["a.jpg"])


def test_an_export_whose_claim_is_taken_mid_way_stops_and_its_workers_end(
    decided_project, monkeypatch, export_dir, settings
):
    settings.EXPORT_PROCESSES = 2
    settings.EXPORT_PROGRESS_SECONDS = 0  # a heartbeat after every batch
    workers = []
    real_close = export_service._Copiers.close

    def close_keeping_processes(copiers):
        workers.extend(copiers.processes)
        real_close(copiers)

    monkeypatch.setattr(export_service._Copiers, "close", close_keeping_processes)
    export = export_service.export_create(project=decided_project["project"], enqueue=False)
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done:  # part of the dataset written: clean-up fails the export meanwhile
            Export.objects.filter(pk=export.pk).update(state=Export.State.FAILED)

    assert (
        export_service.export_run(export_id=export.pk, run_token="t", progress=progress)
        == "aborted"
    )
    assert 0 < seen[-1] < sum(SIZES.values())
    assert len(workers) == 2 and all(process.poll() is not None for process in workers)
    assert not (export_dir / str(export.pk)).exists()
    assert list((export_dir / export_service.TMP_FOLDER).iterdir()) == []
    assert Export.objects.get(pk=export.pk).state == Export.State.FAILED


def test_a_second_copy_of_the_job_leaves_a_claimed_export_alone(decided_project):
    export = export_service.export_create(project=decided_project["project"], enqueue=False)
    Export.objects.filter(pk=export.pk).update(
        state=Export.State.RUNNING, run_token="first", attempts=1
    )
    assert export_service.export_run(export_id=export.pk, run_token="other") == "not claimed"
    assert Export.objects.get(pk=export.pk).state == Export.State.RUNNING
    # The same job delivered again (its worker died) takes it over and finishes it.
    assert export_service.export_run(export_id=export.pk, run_token="first") == "done"
    assert Export.objects.get(pk=export.pk).attempts == 2
    assert export_service.export_run(export_id=export.pk, run_token="first") == "not claimed"


def test_a_job_that_keeps_dying_is_failed_after_the_attempt_limit(decided_project, settings):
    export = export_service.export_create(project=decided_project["project"], enqueue=False)
    Export.objects.filter(pk=export.pk).update(
        state=Export.State.RUNNING, run_token="job", attempts=settings.EXPORT_MAX_ATTEMPTS
    )
    assert export_service.export_run(export_id=export.pk, run_token="job") == "not claimed"
    export.refresh_from_db()
    assert export.state == Export.State.FAILED and "attempts" in export.error


def test_nothing_to_export_is_refused(db):
    project = ProjectFactory()
    LabelFactory(project=project)
    with pytest.raises(InvalidInput, match="no decided images"):
        export_service.export_create(project=project, enqueue=False)
    assert not Export.objects.exists()


@pytest.mark.parametrize(
    "options",
    [
        {"val_fraction": 0},
        {"val_fraction": 1},
        {"val_fraction": float("nan")},
        {"val_fraction": -0.5},
        {"seed": -1},
        {"val_layout": "zigzag"},
        {"resize": 2},
        {"min_per_class": 1},
    ],
)
def test_bad_options_are_refused(decided_project, options):
    with pytest.raises(InvalidInput):
        export_service.export_create(project=decided_project["project"], enqueue=False, **options)
    assert not Export.objects.exists()


def test_the_tar_writer_places_members_in_order_whatever_order_they_are_written_in(
    tmp_path, monkeypatch
):
    # Members are laid out in order by the exporting process, and written at their offsets by
    # the copiers of the worker processes, a batch at a time, in any order; a short write (a
    # full disk, a signal) is finished where it stopped.
    rng = random.Random(5)
    stored = tmp_path / "stored"
    stored.mkdir()
    names = [f"{i}.jpg" for i in range(1, 40)]
    for i, name in enumerate(names):
        (stored / name).write_bytes(unique_image(rng, size=(8 + i, 8)))
    relpaths = [f"train/n1/n1_{i}.JPEG" for i in range(1, 40)]
    relpaths[7] = "val/" + "long-class-name/" * 8 + "a.JPEG"  # a GNU header
    real_pwritev = os.pwritev
    monkeypatch.setattr(
        export_worker.os,
        "pwritev",
        lambda fd, buffers, offset: real_pwritev(fd, buffers[:1], offset),
    )
    path = tmp_path / "out.tar"
    with open(path, "wb", buffering=0) as f:
        sink = export_service.TarSink(f.fileno(), "dataset", path)
        copier = export_worker.Copier(
            export_worker.CopyConfig(
                source=str(stored),
                tar_path=str(path),
                tar_prefix="dataset",
                tar_mtime=sink.mtime,
                resize=None,
                quality=95,
            )
        )
        batches = [range(i, min(i + 8, len(names))) for i in range(0, len(names), 8)]
        placed = []
        for number, batch in enumerate(batches):
            results = copier.read(number, [names[i] for i in batch])
            assert results == [
                (len(data), hashlib.sha256(data).hexdigest(), 0, 0)
                for data in ((stored / names[i]).read_bytes() for i in batch)
            ]
            places = zip(batch, results, strict=False)
            placed.append([sink.place(relpaths[i], size) for i, (size, *_) in places])
        sink.add_bytes("empty.txt", b"")
        for number in reversed(range(len(batches))):
            copier.write(number, placed[number][0][0], [member for _, member in placed[number]])
        sink.add_bytes("meta.bin", b"after the batches")
        sink.close()
        copier.close()
    with tarfile.open(path) as tar:
        read = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    assert read == [
        (f"dataset/{relpath}", (stored / name).read_bytes())
        for relpath, name in zip(relpaths, names, strict=False)
    ] + [("dataset/empty.txt", b""), ("dataset/meta.bin", b"after the batches")]


def test_download_streams_the_tar_and_gzip_and_the_manifest_sits_beside_it(decided_project):
    export, root = run_export(decided_project["project"])
    download = export_service.export_download(export=export)
    data = b"".join(download.chunks)
    assert len(data) == download.size and data == Path(export.location).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    on_disk = {
        f"{export.name}/{p.relative_to(root)}": p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
    }
    assert members == on_disk
    gz = export_service.export_download(export=export, compress=True)
    assert gz.filename == f"{export.name}.tar.gz"
    assert gzip.decompress(b"".join(gz.chunks)) == data
    assert (
        export_service.export_manifest_path(export=export).read_bytes()
        == (root / "manifest.json").read_bytes()
    )


def test_downloads_only_of_finished_exports(decided_project):
    export = export_service.export_create(project=decided_project["project"], enqueue=False)
    with pytest.raises(Conflict, match="pending"):
        export_service.export_download(export=export)
    Export.objects.filter(pk=export.pk).update(state=Export.State.EXPIRED)
    export.refresh_from_db()
    with pytest.raises(export_service.Gone):
        export_service.export_download(export=export)


def test_cleanup_expires_old_files_requeues_or_fails_dead_jobs_and_removes_leftovers(
    decided_project, settings, export_dir
):
    project = decided_project["project"]
    old, old_root = run_export(project)
    fresh, fresh_root = run_export(project)
    long_ago = timezone.now() - timedelta(hours=settings.EXPORT_TTL_HOURS + 1)
    Export.objects.filter(pk=old.pk).update(finished_at=long_ago)
    stopped = timezone.now() - timedelta(seconds=settings.EXPORT_STALE_SECONDS + 5)
    dead = export_service.export_create(project=project, enqueue=False)
    Export.objects.filter(pk=dead.pk).update(
        state=Export.State.RUNNING,
        run_token="gone",
        heartbeat_at=stopped,
        attempts=settings.EXPORT_MAX_ATTEMPTS,
    )
    # Its worker was lost on a first attempt: another worker takes it over.
    orphan = export_service.export_create(project=project, enqueue=False)
    Export.objects.filter(pk=orphan.pk).update(
        state=Export.State.RUNNING, run_token="lost", heartbeat_at=stopped, attempts=1
    )
    leftover = export_dir / export_service.TMP_FOLDER / f"{dead.pk}-abc" / "dataset" / "train"
    leftover.mkdir(parents=True)
    (leftover / "half.JPEG").write_bytes(b"x")

    result = export_service.exports_cleanup()

    assert (result.expired, result.failed_stale, result.removed_temporary) == (1, 1, 1)
    assert result.requeued == 1
    taken_over = Export.objects.get(pk=orphan.pk)
    assert (taken_over.state, taken_over.run_token, taken_over.attempts) == (
        Export.State.PENDING,
        "",
        1,
    )
    assert "lost its worker" in taken_over.error
    assert Export.objects.get(pk=old.pk).state == Export.State.EXPIRED
    assert not Path(old.location).exists() and Path(fresh.location).is_file()
    assert Export.objects.get(pk=fresh.pk).state == Export.State.DONE
    assert Export.objects.get(pk=dead.pk).state == Export.State.FAILED
    assert list((export_dir / export_service.TMP_FOLDER).iterdir()) == []


def test_cleanup_never_touches_what_the_command_wrote_elsewhere(
    decided_project, settings, tmp_path
):
    export = export_service.export_create(project=decided_project["project"], enqueue=False)
    out = tmp_path / "mine"
    assert (
        export_service.export_run(export_id=export.pk, run_token="cmd", destination=out) == "done"
    )
    Export.objects.filter(pk=export.pk).update(
        finished_at=timezone.now() - timedelta(hours=settings.EXPORT_TTL_HOURS + 1)
    )
    assert export_service.exports_cleanup().expired == 0
    assert (out / "manifest.json").is_file()
    export.refresh_from_db()
    assert export.state == Export.State.DONE
    with pytest.raises(Conflict, match="command"):
        export_service.export_download(export=export)


def test_a_done_export_whose_files_vanished_is_gone(decided_project):
    export, _ = run_export(decided_project["project"])
    Path(export.location).unlink()
    with pytest.raises(export_service.Gone):
        export_service.export_download(export=export)
