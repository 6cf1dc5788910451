"""Review queue, reviewer decisions and the annotator table over the API."""

import pytest

from annotate.models import AnnotatorStats, Image
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(client_for):
    project = ProjectFactory(min_votes=2, max_votes=2, agreement=1.0)
    labels = [LabelFactory(project=project) for _ in range(2)]
    image = ImageFactory(project=project)
    voters = [UserFactory(), UserFactory()]
    for user, label in zip(voters, labels, strict=False):
        client = client_for(user)
        assignment = client.post(f"/api/projects/{project.pk}/assignments/").json()
        client.post(
            f"/api/assignments/{assignment['id']}/vote/", {"label": label.pk}, format="json"
        )
    image.refresh_from_db()
    assert image.state == Image.State.DISPUTED
    return project, labels, image, voters


@pytest.mark.parametrize("role", [None, "volunteer"])
def test_volunteers_cannot_review(client_for, disputed, role):
    project, labels, image, _ = disputed
    user = UserFactory(role=role) if role else None
    client = client_for(user)
    expected = 401 if user is None else 403
    assert client.get(f"/api/projects/{project.pk}/review/").status_code == expected
    assert client.get(f"/api/projects/{project.pk}/annotators/").status_code == expected
    response = client.post(
        f"/api/images/{image.pk}/decision/", {"label": labels[0].pk}, format="json"
    )
    assert response.status_code == expected
    image.refresh_from_db()
    assert image.state == Image.State.DISPUTED and not image.decisions.exists()


def test_reviewer_clears_the_queue(client_for, disputed):
    project, labels, image, voters = disputed
    reviewer = client_for(UserFactory(role="reviewer"))
    queue = reviewer.get(f"/api/projects/{project.pk}/review/").json()
    assert queue["count"] == 1
    item = queue["results"][0]
    assert item["id"] == image.pk and item["state"] == "disputed"
    assert sorted((v["label"], v["count"]) for v in item["votes"]) == sorted(
        (l.pk, 1) for l in labels
    )
    assert {voter["username"] for v in item["votes"] for voter in v["voters"]} == {
        u.username for u in voters
    }

    decided = reviewer.post(
        f"/api/images/{image.pk}/decision/", {"label": labels[1].pk}, format="json"
    )
    assert decided.status_code == 201
    assert decided.json()["state"] == "reviewed"
    assert decided.json()["decision"]["rule"] == "review"
    assert reviewer.get(f"/api/projects/{project.pk}/review/").json()["count"] == 0

    history = reviewer.get(f"/api/images/{image.pk}/decision/").json()
    assert len(history) == 1 and history[0]["label"] == labels[1].pk

    agreed = {s.user_id: s.agreed_votes for s in AnnotatorStats.objects.filter(project=project)}
    assert agreed == {voters[0].pk: 0, voters[1].pk: 1}


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"label": 999999}, 400),
        ({}, 400),
        ({"label": "x"}, 400),
        ({"label": None, "exclude": True}, 201),
    ],
)
def test_decision_input(client_for, disputed, payload, status):
    project, labels, image, _ = disputed
    reviewer = client_for(UserFactory(role="reviewer"))
    response = reviewer.post(f"/api/images/{image.pk}/decision/", payload, format="json")
    assert response.status_code == status
    image.refresh_from_db()
    assert image.state == (Image.State.EXCLUDED if status == 201 else Image.State.DISPUTED)


def test_decision_on_missing_image_is_404(client_for):
    reviewer = client_for(UserFactory(role="reviewer"))
    assert (
        reviewer.post("/api/images/999999/decision/", {"label": None}, format="json").status_code
        == 404
    )


def test_annotator_table(client_for, disputed):
    project, labels, image, voters = disputed
    AnnotatorStats.objects.filter(user=voters[0]).update(estimated_accuracy=0.3)
    admin = client_for(UserFactory(role="admin"))
    rows = admin.get(f"/api/projects/{project.pk}/annotators/").json()["results"]
    by_name = {row["username"]: row for row in rows}
    assert set(by_name) == {u.username for u in voters}
    assert by_name[voters[0].username]["unreliable"] is True
    assert by_name[voters[1].username]["unreliable"] is False
    assert by_name[voters[1].username]["votes"] == 1
    assert by_name[voters[1].username]["agreement"] is None  # nothing decided yet
