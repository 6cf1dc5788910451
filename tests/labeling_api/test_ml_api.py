"""The ML endpoints and the suggestion in the assignment answer (PRODUCT.md section 7)."""

import pytest

from annotate.models import Project, Suggestion, TrainingRun
from annotate.services import jobs, ml_runs, ml_suggestions
from tests.annotate.services.test_ml import (
    FakeBackend,
    cached_open_image,
    promoted_version,
    verified_images,
)
from tests.api_errors import assert_error_shape

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ml_settings(settings, tmp_path, monkeypatch):
    settings.ML_MODELS_DIR = tmp_path / "models"
    settings.ML_MIN_TRAIN_LABELS = 10
    settings.ML_HOLDOUT_FRACTION = 0.25
    monkeypatch.setattr(jobs, "publish", lambda name, *args: None)


def test_admin_starts_a_training_and_sees_it_listed(
    client_for, admin_user, project, labels, django_capture_on_commit_callbacks
):
    verified_images(project, labels, 12)
    client = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/projects/{project.pk}/models/train/", {"epochs": 2}, format="json"
        )
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["reason"], body["config"], body["verified_count"]) == (
        "pending",
        "requested",
        {"epochs": 2},
        12,
    )

    again = client.post(f"/api/projects/{project.pk}/models/train/", {}, format="json")
    assert again.status_code == 409 and f"run {body['id']}" in again.json()["detail"]

    listed = client.get(f"/api/projects/{project.pk}/models/").json()
    assert listed["active_version"] is None and listed["versions"] == []
    assert listed["verified_labels"] == 12 and [run["id"] for run in listed["runs"]] == [body["id"]]


def test_versions_are_listed_with_their_figures_and_which_is_active(
    client_for, admin_user, project, labels
):
    first = promoted_version(project, labels)
    worse = ml_runs.training_run_execute(
        run_id=TrainingRun.objects.create(project=project, reason="growth").pk,
        backend=FakeBackend(top1=0.5, baseline_top1=0.8),
    )
    body = client_for(admin_user).get(f"/api/projects/{project.pk}/models/").json()
    assert body["active_version"] == first.pk
    assert [(v["id"], v["is_active"], v["top1"]) for v in body["versions"]] == [
        (worse.pk, False, 0.5),
        (first.pk, True, 0.8),
    ]
    assert body["versions"][0]["baseline_top1"] == 0.8
    assert set(body["versions"][1]["per_class"]) == {str(label.pk) for label in labels}
    assert [run["promoted"] for run in body["runs"]] == [False, True]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": "many"}, "epochs"),
        ({"arch": "vgg11"}, "arch"),
        ({"learning_rate": 5}, "learning_rate"),
    ],
)
def test_bad_training_settings_are_a_400(client_for, admin_user, project, labels, payload, field):
    verified_images(project, labels, 12)
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/models/train/", payload, format="json"
    )
    assert list(assert_error_shape(response, 400, "invalid")["fields"]) == [field]
    assert not TrainingRun.objects.exists()


def test_too_few_verified_labels_is_a_400_with_a_reason(client_for, admin_user, project, labels):
    verified_images(project, labels, 3)
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/models/train/", {}, format="json"
    )
    assert response.status_code == 400
    assert "3 verified labels" in response.json()["detail"]


@pytest.mark.parametrize("method, path", [("get", "models/"), ("post", "models/train/")])
def test_only_admins_reach_the_models(
    client_for, volunteer, reviewer, admin_user, project, method, path
):
    for user, status in ((None, 401), (volunteer, 403), (reviewer, 403)):
        response = getattr(client_for(user), method)(
            f"/api/projects/{project.pk}/{path}", format="json"
        )
        assert_error_shape(response, status)
    missing = getattr(client_for(admin_user), method)(f"/api/projects/999999/{path}", format="json")
    assert (
        missing.status_code == 404 and missing.json()["detail"] == "Project 999999 does not exist."
    )


@pytest.mark.parametrize("show_suggestions", [True, False])
def test_the_assignment_carries_the_active_models_suggestion(
    client_for, volunteer, project, labels, show_suggestions
):
    promoted_version(project, labels)
    image = cached_open_image(project, "clear")
    ml_suggestions.suggestions_compute(project_id=project.pk, backend=FakeBackend())
    Project.objects.filter(pk=project.pk).update(
        show_suggestions=show_suggestions, suggestion_threshold=0.4
    )

    response = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/")
    assert response.status_code == 201 and response.json()["image"]["id"] == image.pk
    top = Suggestion.objects.get(image=image).top
    assert len(top) > 1 and top[0]["label"] == labels[0].pk
    expected = (
        {"label": labels[0].pk, "confidence": 0.45, "top": top[:5]} if show_suggestions else None
    )
    assert response.json()["suggestion"] == expected
    assert Suggestion.objects.filter(image=image).count() == 1


def test_no_suggestion_without_an_active_model(client_for, volunteer, project, labels):
    cached_open_image(project, "new")
    response = client_for(volunteer).post(f"/api/projects/{project.pk}/assignments/")
    assert response.status_code == 201 and response.json()["suggestion"] is None


def test_each_version_carries_its_calibration(client_for, admin_user, project, labels):
    version = promoted_version(project, labels)
    bands = [
        {"low": 0.8, "high": 0.9, "claimed": 0.85, "measured": 0.8, "count": 10},
        {"low": 0.9, "high": 1.0, "claimed": 0.97, "measured": 0.96, "count": 30},
    ]
    version.ece, version.reliability = 0.021, bands
    version.calibration_method, version.calibration_size = "holdout", 40
    version.save()
    body = client_for(admin_user).get(f"/api/projects/{project.pk}/models/").json()
    shown = body["versions"][0]
    assert (shown["ece"], shown["calibration_method"], shown["calibration_size"]) == (
        0.021,
        "holdout",
        40,
    )
    assert shown["reliability"] == bands and shown["unlabeled_size"] == 0


def test_a_project_turns_semi_supervised_training_on_and_off_through_the_api(
    client_for, admin_user, project
):
    assert project.semi_supervised is True  # on by default (self-training, issue 22)
    for wanted in (False, True):
        response = client_for(admin_user).patch(
            f"/api/projects/{project.pk}/", {"semi_supervised": wanted}, format="json"
        )
        assert response.status_code == 200 and response.json()["semi_supervised"] is wanted
        project.refresh_from_db()
        assert project.semi_supervised is wanted
