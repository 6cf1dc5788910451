"""Review queue, reviewer decisions and the annotator table over the API."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotate.models import (
    ActiveModel,
    AnnotatorStats,
    Decision,
    Image,
    ModelVersion,
    Project,
    Suggestion,
    Vote,
)
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
        (label.pk, 1) for label in labels
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


def queue_of(size: int, *, show_suggestions: bool = True) -> Project:
    """A project whose review queue holds `size` images, every one with two votes by its own
    two volunteers, a suggestion of the active model, and (every other one, flagged after
    consensus) a current decision made by a reviewer. Its suggestions (confidence 0.25 and up)
    all reach its threshold."""
    project = ProjectFactory(show_suggestions=show_suggestions, suggestion_threshold=0.2)
    labels = [LabelFactory(project=project) for _ in range(2)]
    version = ModelVersion.objects.create(
        project=project,
        arch="resnet18",
        file="v1.pt",
        weights_source="scratch",
        device="cpu",
        train_size=10,
        holdout_size=2,
        training_seconds=1.0,
        top1=0.5,
    )
    ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())
    reviewer = UserFactory(role="reviewer")
    for n in range(size):
        flagged = n % 2 == 1
        image = ImageFactory(
            project=project,
            state=Image.State.CONSENSUS if flagged else Image.State.DISPUTED,
            flagged_for_review=flagged,
            votes_count=2,
        )
        for label in labels:
            voter = UserFactory()
            Vote.objects.create(image=image, user=voter, label=label)
            AnnotatorStats.objects.create(
                project=project, user=voter, votes=1, estimated_accuracy=0.8
            )
        if flagged:
            Decision.objects.create(
                image=image, label=labels[0], rule="majority", votes_count=2, decided_by=reviewer
            )
        Suggestion.objects.create(
            image=image, model_version=version, label=labels[n % 2], confidence=0.25 + n / 100
        )
    return project


def test_the_review_queue_reads_the_same_number_of_queries_for_2_and_20_images(client_for):
    reviewer = client_for(UserFactory(role="reviewer"))
    queries = {}
    for size in (2, 20):
        project = queue_of(size)
        with CaptureQueriesContext(connection) as captured:
            answer = reviewer.get(f"/api/projects/{project.pk}/review/")
        assert answer.status_code == 200 and answer.json()["count"] == size
        items = answer.json()["results"]
        assert all(item["suggestion"] and len(item["votes"]) == 2 for item in items)
        assert sum(item["decision"] is not None for item in items) == size // 2
        queries[size] = len(captured)
    assert queries[20] == queries[2], queries


@pytest.mark.parametrize("show_suggestions", [True, False])
def test_queue_items_carry_the_active_models_suggestion(client_for, show_suggestions):
    project = queue_of(3, show_suggestions=show_suggestions)
    items = client_for(UserFactory(role="reviewer")).get(f"/api/projects/{project.pk}/review/")
    expected = {
        s.image_id: {"label": s.label_id, "confidence": s.confidence}
        for s in Suggestion.objects.filter(image__project=project)
    }
    for item in items.json()["results"]:
        assert item["suggestion"] == (expected[item["id"]] if show_suggestions else None)
    assert len(items.json()["results"]) == 3


def test_queue_decisions_show_who_decided(client_for):
    project = queue_of(2)
    items = client_for(UserFactory(role="reviewer")).get(f"/api/projects/{project.pk}/review/")
    decided = [item for item in items.json()["results"] if item["decision"] is not None]
    current = Decision.objects.get(image__project=project, is_current=True)
    assert [item["id"] for item in decided] == [current.image_id]
    assert decided[0]["decision"]["decided_by"] == current.decided_by.username
    assert decided[0]["decision"]["label"] == current.label_id


# --- what a reviewer may decide (issue 19) ------------------------------------------------------


def decide(client, image, label):
    return client.post(f"/api/images/{image.pk}/decision/", {"label": label.pk}, format="json")


@pytest.mark.parametrize("role", ["reviewer", "admin"])
def test_an_open_image_without_votes_is_not_the_reviewers_to_decide(client_for, role):
    project = ProjectFactory()
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    response = decide(client_for(UserFactory(role=role)), image, label)
    assert response.status_code == 409
    assert response.json()["code"] == "not_reviewable"
    assert "still open" in response.json()["detail"]
    image.refresh_from_db()
    assert image.state == Image.State.OPEN and not image.decisions.exists()


def test_a_crowd_decision_is_changed_only_once_flagged(client_for):
    project = ProjectFactory()
    label = LabelFactory(project=project)
    image = ImageFactory(project=project, state=Image.State.CONSENSUS, votes_count=2)
    reviewer = client_for(UserFactory(role="reviewer"))
    assert decide(reviewer, image, label).status_code == 409
    Image.objects.filter(pk=image.pk).update(flagged_for_review=True, flag_reason="EM disagrees")
    assert decide(reviewer, image, label).status_code == 201
    # A review's decision may be changed by another review.
    assert decide(reviewer, image, label).status_code == 201


def test_review_any_state_lets_reviewers_decide_any_image(client_for):
    project = ProjectFactory(review_any_state=True)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    response = decide(client_for(UserFactory(role="reviewer")), image, label)
    assert response.status_code == 201 and response.json()["state"] == "reviewed"


def test_an_admin_turns_review_any_state_on_through_the_api(client_for):
    project = ProjectFactory()
    admin = client_for(UserFactory(role="admin"))
    answer = admin.patch(f"/api/projects/{project.pk}/", {"review_any_state": True}, format="json")
    assert answer.status_code == 200 and answer.json()["review_any_state"] is True
    assert answer.json()["private"] is False
