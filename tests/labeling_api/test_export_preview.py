"""The export page's count before an export starts (issue 18): "195 decided images" while the
default export wrote 34 (gold left out, unsaid). The preview must match what the export holds."""

import random

import pytest
from django.urls import reverse

from annotate.models import Image
from annotate.services import export as export_service
from annotate.services.export.split import split_assign
from tests.export_helpers import decided_images
from tests.factories import LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"


@pytest.fixture
def mixed_project(db):
    """Class a: 3 images and 2 gold ones; class b: 1 image and 2 gold ones; class c: 2 images."""
    rng = random.Random(7)
    project = ProjectFactory()
    a, b, c = (LabelFactory(project=project, wnid=f"n0000000{i}") for i in range(3))
    decided_images(project, a, 3, rng)
    decided_images(project, b, 1, rng, state=Image.State.REVIEWED)
    decided_images(project, c, 2, rng)
    for label in (a, b):
        for image in decided_images(project, label, 2, rng):
            Image.objects.filter(pk=image.pk).update(is_gold=True)
    return project


@pytest.mark.parametrize(
    ("include_gold", "min_per_class", "images", "classes", "gold", "small"),
    [(False, 2, 5, 2, 4, 1), (True, 2, 10, 3, 0, 0), (False, 3, 3, 1, 4, 3), (True, 4, 5, 1, 0, 5)],
)
def test_the_preview_counts_what_the_export_holds(
    client_for, admin_user, mixed_project, include_gold, min_per_class, images, classes, gold, small
):
    response = client_for(admin_user).get(
        reverse("api:exports-preview", args=[mixed_project.pk]),
        {"include_gold": str(include_gold).lower(), "min_per_class": min_per_class},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["images"], body["classes"]) == (images, classes)
    assert (body["left_out"]["gold"], body["left_out"]["small_class_images"]) == (gold, small)
    export = export_service.export_create(
        project=mixed_project, include_gold=include_gold, min_per_class=min_per_class, enqueue=False
    )
    plan = split_assign(export=export)
    assert (plan.total, len(plan.classes)) == (images, classes)


def test_bad_preview_options_are_a_400(client_for, admin_user, mixed_project):
    response = client_for(admin_user).get(
        reverse("api:exports-preview", args=[mixed_project.pk]), {"min_per_class": "one"}
    )
    assert response.status_code == 400 and "min_per_class" in response.json()["fields"]
