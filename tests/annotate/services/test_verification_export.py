"""Accepted candidates are exported like any other decision (rule `verified`)."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from annotate.models import Candidate, Decision, GridItem, Project
from annotate.services import export as export_service
from annotate.services import ingest, verification, verification_candidates
from tests.factories import LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.MEDIA_ROOT = tmp_path / "media"


def test_verified_images_are_exported_under_their_wnid(tmp_path):
    project = ProjectFactory(
        task=Project.Task.VERIFY, min_votes=2, max_votes=5, target_confidence=0.9, grid_size=12
    )
    label = LabelFactory(project=project, wnid="n02123045")
    created = ingest.images_upload(
        project=project,
        files=[(f"{i}.jpg", io.BytesIO(image_bytes((20 * i, 90, 200 - 10 * i)))) for i in range(6)],
    ).created
    verification_candidates.candidates_add(
        project=project, pairs=[(i, label.pk) for i in created], source=Candidate.Source.UPLOAD
    )
    while (grid := verification.grid_lease(project=project, user=UserFactory())) is not None:
        items = list(GridItem.objects.filter(grid=grid).values_list("id", flat=True))
        verification.grid_answer(grid_id=grid.pk, user=grid.volunteer, yes_item_ids=items)
    assert Decision.objects.filter(rule="verified", is_current=True).count() == 6

    export = export_service.export_create(project=project, enqueue=False, val_fraction=0.2)
    assert export_service.export_run(export_id=export.pk, run_token="test") == "done"
    export.refresh_from_db()
    with tarfile.open(export.location) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile(f"{export.name}/manifest.json"))
    exported = [n for n in names if n.endswith(".JPEG") and "/n02123045" in n]
    assert len(exported) == 6, names
    assert Path(export.location).stat().st_size > 0 and manifest
