"""import_images and import_labels, the way an admin runs them."""

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotate.models import Decision, Image, Label
from tests.ingest_files import noise_image, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def image_folder(root: Path, labels) -> Path:
    """train/<wnid>/..., <wnid>/..., a stray file, a non-label folder and a zip of more."""
    files = {
        f"train/{labels[0].wnid}/a.jpg": noise_image(1),
        f"train/{labels[0].wnid}/b.png": noise_image(2, fmt="PNG"),
        f"{labels[1].wnid}/c.jpg": noise_image(3),
        "README.txt": b"how this folder was made",
        "misc/d.jpg": noise_image(4),
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "more.zip").write_bytes(zip_bytes({f"{labels[2].wnid}/e.jpg": noise_image(5)}))
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_import_images_gold_from_folders_and_reruns_add_nothing(
    project, labels, tmp_path, media, workers
):
    folder = image_folder(tmp_path / "photos", labels)
    out, err = run(
        "import_images",
        str(project.pk),
        str(folder),
        "--gold-from-folders",
        "--workers",
        str(workers),
    )
    assert (
        "4 images created (0 of them near duplicates), 0 already in the project, 2 rejected" in out
    )
    assert "rejected README.txt: folder" not in err
    assert "rejected README.txt: not inside a label folder (<wnid>/...)" in err
    assert "rejected misc/d.jpg: folder 'misc' is not a label of this project" in err
    gold = dict(Image.objects.values_list("original_name", "gold_label__wnid"))
    assert gold == {
        f"train/{labels[0].wnid}/a.jpg": labels[0].wnid,
        f"train/{labels[0].wnid}/b.png": labels[0].wnid,
        f"{labels[1].wnid}/c.jpg": labels[1].wnid,
        f"more.zip/{labels[2].wnid}/e.jpg": labels[2].wnid,
    }
    assert Decision.objects.filter(rule=Decision.Rule.GOLD, is_current=True).count() == 4
    stored = sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
    # A set: a clean JPEG is its own display copy.
    expected = sorted(
        {
            name
            for image in Image.objects.all()
            for name in (image.file.name, image.preprocessed.name, image.display.name)
        }
    )
    assert (
        stored == expected and len(stored) == 9
    )  # 4 originals, 4 CNN copies, the PNG's display copy

    again, _ = run(
        "import_images", project.name, str(folder), "--gold-from-folders", "--workers", str(workers)
    )
    assert (
        "0 images created (0 of them near duplicates), 4 already in the project, 2 rejected"
        in again
    )
    assert Image.objects.count() == 4


def test_import_images_from_a_zip_without_gold(project, tmp_path):
    archive = tmp_path / "set.zip"
    archive.write_bytes(
        zip_bytes(
            {"x/1.jpg": noise_image(10), "x/2.jpg": noise_image(11), "../3.jpg": noise_image(12)}
        )
    )
    out, err = run("import_images", str(project.pk), str(archive), "--workers", "2")
    assert "2 images created" in out and "1 rejected" in out
    assert "rejected set.zip/../3.jpg: path with '..' in the archive" in err
    assert set(Image.objects.values_list("state", "is_gold")) == {(Image.State.OPEN, False)}


def test_import_images_refuses_bad_arguments(project, tmp_path):
    with pytest.raises(CommandError, match="neither a folder nor a zip"):
        run("import_images", str(project.pk), str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="No label 'nope'"):
        run("import_images", str(project.pk), str(tmp_path), "--gold-label", "nope")
    with pytest.raises(CommandError, match="workers must be at least 1"):
        run("import_images", str(project.pk), str(tmp_path), "--workers", "0")
    with pytest.raises(CommandError, match="No project"):
        run("import_images", "no such project", str(tmp_path))


def test_import_labels_reports_lines_and_keeps_html_as_text(project, tmp_path):
    lines = [
        "n01440764 tench, Tinca tinca",
        "",
        "n01443537",
        "n01440764 tench again",
        "<i>n0</i> goldfish",
        "n01443537 goldfish, <b>Carassius</b> auratus",
    ]
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, err = run("import_labels", str(project.pk), str(mapping))
    assert "2 labels created, 0 already present, 4 lines with problems." in out
    assert err.splitlines() == [
        "line 2: blank line",
        "line 3: expected '<wnid> <name>[, <other names>]'",
        "line 4: duplicate id n01440764 (first on line 1)",
        "line 5: '<i>n0</i>' is not a valid label id (WordNet id or slug)",
    ]
    assert Label.objects.get(wnid="n01443537").name == "goldfish, <b>Carassius</b> auratus"
    out, _ = run("import_labels", str(project.pk), str(mapping))
    assert "0 labels created, 2 already present" in out


def test_import_labels_a_thousand_lines(project, tmp_path):
    mapping = tmp_path / "map.txt"
    mapping.write_text("".join(f"n{i:08d} class {i}, thing {i}\n" for i in range(1000)))
    out, _ = run("import_labels", str(project.pk), str(mapping))
    assert "1000 labels created" in out
    assert list(Label.objects.filter(project=project).values_list("position", flat=True)) == list(
        range(1000)
    )


def test_ingest_orphans_finds_and_deletes_files_without_rows(project, tmp_path, media):
    from annotate.services import ingest

    ingest.images_upload(project=project, files=[("kept.jpg", io.BytesIO(noise_image(1)))])
    kept = sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
    stray = [
        media / f"images/{project.pk}/ab/abc/left.jpg",
        media / f"preprocessed/{project.pk}/ab/abc.jpg",
        media / f"display/{project.pk}/ab/abc.jpg",
        media / "images/999999/cd/cde/of-a-deleted-project.jpg",
    ]
    for path in stray:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    out, _ = run("ingest_orphans")  # young files are spared
    assert "0 files without an image row found" in out
    out, _ = run("ingest_orphans", "--min-age-minutes", "0")
    assert "4 files without an image row found" in out and all(p.exists() for p in stray)
    out, _ = run("ingest_orphans", "--min-age-minutes", "0", "--delete")
    assert "4 files without an image row deleted" in out
    assert sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()) == kept


def test_the_progress_total_counts_zip_members(project, labels, tmp_path):
    from annotate.services import ingest

    folder = image_folder(tmp_path / "photos", labels)
    (folder / "broken.zip").write_bytes(b"not a zip")
    # 5 files, more.zip with one member, broken.zip counted as the one rejection it will be
    assert ingest.images_count_files(path=folder) == 7
    assert ingest.images_count_files(path=folder / "more.zip") == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failure_in_a_bulk_import_leaves_no_files_behind(
    project, tmp_path, media, monkeypatch, workers
):
    from annotate.services import ingest
    from annotate.services.ingest import store as ingest_store

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(120):  # more than one batch: the first commits, the second fails
        (folder / f"{i:03d}.jpg").write_bytes(noise_image(200 + i, size=(40, 30)))
    real = ingest_store._image_rows_create
    calls = []

    def fail_on_the_second_batch(**kwargs):
        calls.append(1)
        real(**kwargs)
        if len(calls) == 2:
            raise RuntimeError("injected failure")

    monkeypatch.setattr(ingest_store, "_image_rows_create", fail_on_the_second_batch)
    with pytest.raises(RuntimeError, match="injected"):
        ingest.images_import(project=project, path=folder, workers=workers)
    assert Image.objects.count() == ingest.STORE_BATCH
    stored = sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
    # A set: a clean JPEG is its own display copy.
    expected = sorted(
        {
            name
            for image in Image.objects.all()
            for name in (image.file.name, image.preprocessed.name, image.display.name)
        }
    )
    assert stored == expected
