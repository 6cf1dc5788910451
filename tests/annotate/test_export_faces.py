"""The export page and the export_dataset command."""

import json
import random
import tarfile

import pytest
from django.core.management import CommandError, call_command
from torchvision.datasets import ImageFolder, ImageNet

from annotate.models import Export
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"


@pytest.fixture
def project(db):
    rng = random.Random(8)
    project = ProjectFactory(name="Cats and fish")
    for i, name in enumerate(["cat", "fish", "bird"]):
        decided_images(
            project, LabelFactory(project=project, wnid=f"n0100000{i}", name=name), 5, rng
        )
    return project


def test_export_page_is_for_admins(client, admin_user, volunteer, reviewer, project):
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/export/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="export-form"' in html and "<progress" in html and "export.js" in html
    assert "15 decided images" in html
    for user in (volunteer, reviewer):
        client.force_login(user)
        assert client.get(f"/projects/{project.pk}/export/").status_code == 403
    client.logout()
    assert client.get(f"/projects/{project.pk}/export/").status_code == 302
    client.force_login(admin_user)
    assert client.get("/projects/999/export/").status_code == 404


def test_project_list_links_admins_to_the_export_page(client, admin_user, volunteer, project):
    client.force_login(admin_user)
    assert f"/projects/{project.pk}/export/" in client.get("/").content.decode()
    client.force_login(volunteer)
    assert f"/projects/{project.pk}/export/" not in client.get("/").content.decode()


def test_command_writes_a_folder_that_torchvision_loads(project, tmp_path, capsys):
    out = tmp_path / "cats"
    call_command(
        "export_dataset", str(project.pk), str(out), "--val-fraction", "0.4", "--seed", "3"
    )
    assert ImageFolder(out / "train").classes == ["n01000000", "n01000001", "n01000002"]
    assert len(ImageNet(str(out), split="val")) == 6  # two of five per class
    assert "9 train and 6 val images in 3 classes" in capsys.readouterr().out
    assert Export.objects.get().state == Export.State.DONE
    assert [p.name for p in tmp_path.iterdir()] == ["cats"]  # no temporary folder left


def test_command_writes_a_tar_with_the_flat_layout(project, tmp_path):
    out = tmp_path / "cats.tar"
    call_command(
        "export_dataset", project.name, str(out), "--tar", "--val-layout", "flat", "--resize", "20"
    )
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("cats/manifest.json"))
    assert "cats/val/ILSVRC2012_val_00000001.JPEG" in names and "cats/val_ground_truth.txt" in names
    assert manifest["val_layout"] == "flat" and manifest["resize"] == 20
    assert set(manifest["files"]) | {"manifest.json"} == {n.removeprefix("cats/") for n in names}


def test_command_refuses_bad_input_cleanly(project, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("x")
    with pytest.raises(CommandError, match="exists"):
        call_command("export_dataset", str(project.pk), str(taken))
    with pytest.raises(CommandError, match="No project"):
        call_command("export_dataset", "nope", str(tmp_path / "a"))
    with pytest.raises(CommandError, match="val_fraction"):
        call_command("export_dataset", str(project.pk), str(tmp_path / "b"), "--val-fraction", "2")
    with pytest.raises(CommandError, match="min_per_class"):
        call_command("export_dataset", str(project.pk), str(tmp_path / "c"), "--min-per-class", "1")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert not Export.objects.exists()
