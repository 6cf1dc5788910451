"""The demo's verify project: candidates from folders, some wrong on purpose, gold for the
grids' examples and known answers; re-running adds nothing."""

import random

import pytest

from annotate.demo_verify import GOLD_PER_LABEL, verify_demo_create
from annotate.management.commands.demo import SYNSETS, draw_shape
from annotate.models import Candidate, Image, Project
from annotate.selectors.verification import grid_view
from annotate.services import verification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def draw_small(kind: str, rng: random.Random) -> bytes:
    return draw_shape(kind, rng, size=192)


def test_the_verify_demo_can_be_worked_through():
    demo = verify_demo_create(
        synsets=SYNSETS, draw=draw_small, per_label=6, wrong_share=0.3, seed=3
    )

    project = demo.project
    assert project.task == Project.Task.VERIFY
    assert demo.created == 24 and demo.candidates == 24 and demo.wrong > 0
    plain = Candidate.objects.filter(project=project, is_gold=False)
    assert plain.count() == 24 and set(plain.values_list("source", flat=True)) == {"import"}
    # Every image's candidate is its folder's shape, the wrong ones included.
    for candidate in plain.select_related("image", "label"):
        assert candidate.image.original_name.startswith(f"{candidate.label.wnid}/")
    # What volunteers are shown: every demo image has its display copy.
    assert not Image.objects.filter(project=project, display="").exists()
    gold = Candidate.objects.filter(project=project, is_gold=True)
    assert gold.filter(gold_answer=True).count() == 4 * GOLD_PER_LABEL
    assert gold.filter(gold_answer=False).exists()

    grid = verification.grid_lease(project=project, user=UserFactory())
    shown = grid_view(grid=grid)
    assert len(shown["label"]["examples"]) == 3
    assert 1 <= len(shown["items"]) <= project.grid_size

    again = verify_demo_create(
        synsets=SYNSETS, draw=draw_small, per_label=6, wrong_share=0.3, seed=3
    )
    assert (again.project.pk, again.created, again.candidates) == (project.pk, 0, 0)
    assert Image.objects.filter(project=project).count() == 24 + 4 * GOLD_PER_LABEL
