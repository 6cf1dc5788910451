"""Handing back a lease (issue 18): a hidden or closed tab's images return to the pool at once;
and the volunteer's daily goal, set from the labeling page."""

import pytest

from annotate.models import Assignment, Image, Vote
from annotate.services.serving import project_refresh_free_slots
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def lease(client, project) -> dict:
    response = client.post(f"/api/projects/{project.pk}/assignments/")
    assert response.status_code == 201
    return response.json()


def test_a_released_image_is_back_in_the_pool_at_once(
    client_for, volunteer, other_volunteer, project, labels
):
    project.min_votes = project.max_votes = 1  # one volunteer at a time per image
    project.save()
    image = ImageFactory(project=project)
    project_refresh_free_slots(project=project)
    mine = client_for(volunteer)
    held = lease(mine, project)
    other = client_for(other_volunteer)
    # Held by the volunteer: nothing for anyone else until it is handed back.
    assert other.post(f"/api/projects/{project.pk}/assignments/").status_code == 204

    response = mine.post(f"/api/assignments/{held['id']}/release/")
    assert response.status_code == 204 and response.content == b""
    image.refresh_from_db()
    assert (image.leases_count, image.free_slots) == (0, 1)
    assert not Assignment.objects.filter(pk=held["id"]).exists()
    # The volunteer who handed it back may have it again (their tab comes back), as may others.
    assert lease(mine, project)["image"]["id"] == image.pk


def test_released_by_others_or_unknown_is_refused(client_for, volunteer, other_volunteer, project):
    ImageFactory(project=project)
    held = lease(client_for(volunteer), project)
    intruder = client_for(other_volunteer)
    refused = intruder.post(f"/api/assignments/{held['id']}/release/")
    assert refused.status_code == 403 and refused.json()["code"]
    missing = intruder.post("/api/assignments/999999/release/")
    assert missing.status_code == 404 and missing.json()["detail"]
    assert Assignment.objects.get(pk=held["id"]).state == Assignment.State.ACTIVE
    assert Image.objects.get().leases_count == 1


def test_a_release_after_the_vote_changes_nothing(client_for, volunteer, project, labels):
    ImageFactory(project=project)
    client = client_for(volunteer)
    held = lease(client, project)
    voted = client.post(
        f"/api/assignments/{held['id']}/vote/", {"label": labels[0].pk}, format="json"
    )
    assert voted.status_code == 201
    assert client.post(f"/api/assignments/{held['id']}/release/").status_code == 204
    assert Assignment.objects.get(pk=held["id"]).state == Assignment.State.VOTED
    assert Vote.objects.filter(assignment_id=held["id"]).count() == 1


@pytest.mark.parametrize(("goal", "status"), [(60, 200), (None, 200), (0, 400), (10001, 400)])
def test_a_volunteer_sets_a_daily_goal(client_for, volunteer, goal, status):
    response = client_for(volunteer).patch("/api/me/", {"daily_goal": goal}, format="json")
    assert response.status_code == status
    volunteer.refresh_from_db()
    if status == 200:
        assert response.json()["daily_goal"] == goal == volunteer.daily_goal
    else:
        assert response.json()["fields"]["daily_goal"] and volunteer.daily_goal is None
