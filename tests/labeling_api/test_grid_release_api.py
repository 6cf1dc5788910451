"""Handing back a verification grid (issue 18): a hidden or closed verify page's candidates
return to the pool at once, as the labeling page's leases do."""

import pytest

from annotate.models import Candidate, Grid, GridItem, Project
from annotate.services import verification_candidates
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_lease_each():
    """Six candidates of one label, each with room for one volunteer at a time."""
    project = ProjectFactory(
        task=Project.Task.VERIFY, min_votes=1, max_votes=1, grid_size=6, gold_rate=0.0
    )
    label = LabelFactory(project=project)
    images = [ImageFactory(project=project) for _ in range(6)]
    verification_candidates.candidates_add(
        project=project, pairs=[(i.pk, label.pk) for i in images], source=Candidate.Source.IMPORT
    )
    return project


def lease(client, project):
    return client.post(f"/api/projects/{project.pk}/grids/")


def test_a_released_grid_is_back_in_the_pool_at_once(client_for, one_lease_each):
    project = one_lease_each
    owner, other = client_for(UserFactory()), client_for(UserFactory())
    grid = lease(owner, project).json()
    assert len(grid["items"]) == 6
    # Held by its volunteer: nothing for anyone else until it is handed back.
    assert lease(other, project).status_code == 204

    response = owner.post(f"/api/grids/{grid['id']}/release/")
    assert response.status_code == 204 and response.content == b""
    assert list(Candidate.objects.values_list("leases_count", flat=True)) == [0] * 6
    assert not Grid.objects.filter(pk=grid["id"]).exists()
    assert not GridItem.objects.exists()
    # Others may have the candidates at once, as may the volunteer who handed them back.
    again = lease(other, project)
    assert again.status_code == 201 and len(again.json()["items"]) == 6
    other_grid = again.json()["id"]
    assert other.post(f"/api/grids/{other_grid}/release/").status_code == 204
    assert len(lease(owner, project).json()["items"]) == 6


def test_released_by_others_or_unknown_is_refused(client_for, one_lease_each):
    project = one_lease_each
    owner, intruder = client_for(UserFactory()), client_for(UserFactory())
    grid = lease(owner, project).json()
    refused = intruder.post(f"/api/grids/{grid['id']}/release/")
    assert refused.status_code == 403 and refused.json()["code"]
    missing = intruder.post("/api/grids/999999/release/")
    assert missing.status_code == 404 and missing.json()["detail"]
    assert client_for(None).post(f"/api/grids/{grid['id']}/release/").status_code == 401
    assert Grid.objects.filter(pk=grid["id"]).exists()
    assert list(Candidate.objects.values_list("leases_count", flat=True)) == [1] * 6


def test_a_release_after_the_answer_changes_nothing(client_for, one_lease_each):
    project = one_lease_each
    owner = client_for(UserFactory())
    grid = lease(owner, project).json()
    items = [item["id"] for item in grid["items"]]
    answered = owner.post(f"/api/grids/{grid['id']}/answers/", {"yes": items}, format="json")
    assert answered.status_code == 201
    states = list(Candidate.objects.order_by("id").values_list("state", "yes_count"))
    assert owner.post(f"/api/grids/{grid['id']}/release/").status_code == 204
    assert Grid.objects.get(pk=grid["id"]).answered_at is not None
    assert GridItem.objects.filter(grid_id=grid["id"]).count() == 6
    assert list(Candidate.objects.order_by("id").values_list("state", "yes_count")) == states
