"""import_images --candidates-from-folders: each folder's images become candidates to verify."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from annotate.models import Candidate, Image
from tests.ingest_files import noise_image

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_the_first_folder_is_the_candidate_wnid(project, labels, tmp_path: Path):
    files = {
        f"{labels[0].wnid}/a.jpg": noise_image(11),
        f"train/{labels[1].wnid}/b.jpg": noise_image(12),
        "elsewhere/c.jpg": noise_image(13),
    }
    for name, data in files.items():
        path = tmp_path / "search" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "import_images",
        str(project.pk),
        str(tmp_path / "search"),
        "--candidates-from-folders",
        stdout=out,
        stderr=err,
    )

    assert "2 candidate labels to verify" in out.getvalue()
    assert "'elsewhere' is no label here" in err.getvalue()
    found = {
        (Image.objects.get(pk=c.image_id).original_name, c.label.wnid, c.source, c.state)
        for c in Candidate.objects.select_related("label")
    }
    assert found == {
        (f"{labels[0].wnid}/a.jpg", labels[0].wnid, "import", "open"),
        (f"train/{labels[1].wnid}/b.jpg", labels[1].wnid, "import", "open"),
    }
    # Held out of the classify queue while verified; the stray image is not.
    slots = dict(Image.objects.values_list("original_name", "free_slots"))
    assert slots[f"{labels[0].wnid}/a.jpg"] == 0 and slots["elsewhere/c.jpg"] > 0
