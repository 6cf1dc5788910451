"""The verification API (issue 15): grids, answers, their errors, uploads with a candidate label,
the review queue and the annotator table."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import Candidate, Decision, Image, Project, User
from annotate.services import verification_candidates
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def verify_project():
    project = ProjectFactory(
        task=Project.Task.VERIFY, min_votes=2, max_votes=3, grid_size=12, target_confidence=0.9
    )
    label = LabelFactory(project=project, wnid="n02123045", name="tabby", gloss="a striped cat")
    images = [ImageFactory(project=project) for _ in range(14)]
    verification_candidates.candidates_add(
        project=project, pairs=[(i.pk, label.pk) for i in images], source=Candidate.Source.IMPORT
    )
    return project, label, images


def lease(client, project):
    return client.post(f"/api/projects/{project.pk}/grids/")


def test_a_grid_answer_shows_the_label_and_its_items(client_for, verify_project):
    project, label, images = verify_project
    accepted = images[-1]
    Candidate.objects.filter(image=accepted).update(state=Candidate.State.ACCEPTED)
    response = lease(client_for(UserFactory()), project)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "label", "items", "expires_at"}
    assert body["label"] == {
        "id": label.pk,
        "wnid": "n02123045",
        "name": "tabby",
        "display_name": "tabby",
        "gloss": "a striped cat",
        "examples": [f"/api/images/{accepted.pk}/file/"],
    }
    assert len(body["items"]) == 12
    item = body["items"][0]
    assert set(item) == {"id", "image"}
    assert set(item["image"]) == {"id", "url", "width", "height"}
    assert item["image"]["url"] == f"/api/images/{item['image']['id']}/file/"
    assert {i["image"]["id"] for i in body["items"]} <= {i.pk for i in images[:-1]}


def test_answers_decide_and_errors_are_clear(client_for, verify_project):
    project, label, images = verify_project
    owner, stranger = UserFactory(), UserFactory()
    grid = lease(client_for(owner), project).json()
    items = [item["id"] for item in grid["items"]]
    url = f"/api/grids/{grid['id']}/answers/"

    not_in_grid = client_for(owner).post(url, {"yes": [max(items) + 999]}, format="json")
    assert not_in_grid.status_code == 400 and "not in this grid" in not_in_grid.json()["detail"]
    assert client_for(owner).post(url, {"yes": "all"}, format="json").status_code == 400
    not_yours = client_for(stranger).post(url, {"yes": items}, format="json")
    assert not_yours.status_code == 403
    missing = client_for(owner).post("/api/grids/999999/answers/", {"yes": []}, format="json")
    assert missing.status_code == 404

    first = client_for(owner).post(url, {"yes": items}, format="json")
    assert first.status_code == 201 and first.json() == {"decided": 0}
    again = client_for(owner).post(url, {"yes": items}, format="json")
    assert again.status_code == 409 and "already answered" in again.json()["detail"]

    # More volunteers agree: their yes votes, with the label's prior that the first votes
    # raised, take every item over the 90% target (two or three votes each).
    decided = []
    for voter in (stranger, UserFactory()):
        grid = lease(client_for(voter), project).json()
        answer = client_for(voter).post(
            f"/api/grids/{grid['id']}/answers/",
            {"yes": [item["id"] for item in grid["items"]]},
            format="json",
        )
        decided.append(answer.json()["decided"])
    assert sum(decided) == 12
    assert Decision.objects.filter(rule=Decision.Rule.VERIFIED, label=label).count() == 12


def test_204_when_nothing_is_left(client_for, verify_project):
    project, _, _ = verify_project
    client = client_for(UserFactory())
    assert lease(client, project).status_code == 201
    assert lease(client, project).status_code == 201  # the last two
    assert lease(client, project).status_code == 204


def test_grid_images_are_visible_to_their_volunteer_only(client_for, verify_project, media):
    project, _, images = verify_project
    owner, stranger = UserFactory(), UserFactory()
    grid = lease(client_for(owner), project).json()
    url = grid["items"][0]["image"]["url"]
    image = Image.objects.get(pk=grid["items"][0]["image"]["id"])
    image.file.save("x.jpg", io.BytesIO(image_bytes()), save=True)

    assert client_for(owner).get(url).status_code == 200
    assert client_for(stranger).get(url).status_code == 403


def test_upload_with_a_candidate_label(client_for, media):
    project = ProjectFactory(task=Project.Task.VERIFY)
    label = LabelFactory(project=project, wnid="n01440764")
    admin = UserFactory(role=User.Role.ADMIN)
    files = [
        SimpleUploadedFile(f"{i}.png", image_bytes((40 * i, 9, 9), fmt="PNG"), "image/png")
        for i in range(3)
    ]

    response = client_for(admin).post(
        f"/api/projects/{project.pk}/images/",
        {"files": files, "candidate_label": "n01440764"},
        format="multipart",
    )
    unknown = client_for(admin).post(
        f"/api/projects/{project.pk}/images/",
        {
            "files": [SimpleUploadedFile("z.png", image_bytes(fmt="PNG"), "image/png")],
            "candidate_label": "n404",
        },
        format="multipart",
    )

    assert response.status_code == 201 and response.json()["candidates"] == 3
    assert set(Candidate.objects.values_list("label_id", "source")) == {(label.pk, "upload")}
    assert unknown.status_code == 400 and unknown.json().get("field", "candidate_label")


def test_project_settings_for_verification(client_for):
    admin = UserFactory(role=User.Role.ADMIN)
    created = client_for(admin).post(
        "/api/projects/",
        {"name": "verify me", "task": "verify", "grid_size": 20, "when_all_rejected": "exclude"},
        format="json",
    )
    too_big = client_for(admin).post(
        "/api/projects/", {"name": "too big", "grid_size": 30}, format="json"
    )

    assert created.status_code == 201
    assert {k: created.json()[k] for k in ("task", "grid_size", "when_all_rejected")} == {
        "task": "verify",
        "grid_size": 20,
        "when_all_rejected": "exclude",
    }
    assert too_big.status_code == 400 and "grid_size" in too_big.content.decode()
    # The verification method's own defaults, unless the admin sets them; classify keeps its.
    assert (created.json()["target_confidence"], created.json()["max_votes"]) == (0.997, 20)
    chosen = (
        client_for(admin)
        .post(
            "/api/projects/",
            {"name": "verify at 0.99", "task": "verify", "target_confidence": 0.99, "max_votes": 7},
            format="json",
        )
        .json()
    )
    assert (chosen["target_confidence"], chosen["max_votes"]) == (0.99, 7)
    classify = client_for(admin).post("/api/projects/", {"name": "c"}, format="json").json()
    assert (classify["target_confidence"], classify["max_votes"]) == (0.95, 4)


def test_review_queue_and_annotators_show_verification(client_for):
    project = ProjectFactory(
        task=Project.Task.VERIFY, min_votes=2, max_votes=2, target_confidence=0.99, grid_size=12
    )
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    verification_candidates.candidates_add(
        project=project, pairs=[(image.pk, label.pk)], source=Candidate.Source.UPLOAD
    )
    voters = [UserFactory(), UserFactory()]
    for voter, says_yes in zip(voters, (True, False), strict=True):
        grid = lease(client_for(voter), project).json()
        yes = [item["id"] for item in grid["items"]] if says_yes else []
        client_for(voter).post(f"/api/grids/{grid['id']}/answers/", {"yes": yes}, format="json")
    reviewer = UserFactory(role=User.Role.REVIEWER)

    queue = client_for(reviewer).get(f"/api/projects/{project.pk}/review/").json()["results"]
    table = client_for(reviewer).get(f"/api/projects/{project.pk}/annotators/").json()["results"]

    (item,) = queue
    assert item["id"] == image.pk and item["flagged_for_review"]
    (candidate,) = item["candidates"]
    assert (candidate["state"], candidate["yes_count"], candidate["no_count"]) == ("disputed", 1, 1)
    assert {(v["id"], v["answer"]) for v in candidate["voters"]} == {
        (voters[0].pk, True),
        (voters[1].pk, False),
    }
    assert {row["id"]: row["verify_votes"] for row in table} == {v.pk: 1 for v in voters}
