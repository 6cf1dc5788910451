"""Server-rendered pages: who may open them and what they show."""

import pytest

from annotate.models import User
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client):
    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in


def test_pages_need_sign_in(client):
    project = ProjectFactory()
    for path in ["/", f"/projects/{project.pk}/label/", "/me/", f"/projects/{project.pk}/review/"]:
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(
    ("role", "status"), [("volunteer", 403), ("reviewer", 200), ("admin", 200)]
)
def test_review_pages_by_role(signed_in, role, status):
    project = ProjectFactory()
    client = signed_in(UserFactory(role=role))
    assert client.get(f"/projects/{project.pk}/review/").status_code == status
    assert client.get(f"/projects/{project.pk}/annotators/").status_code == status


@pytest.mark.parametrize(
    ("page", "volunteer_status"),
    [("label", 404), ("review", 403), ("annotators", 403), ("dashboard", 403), ("export", 403)],
)
def test_a_missing_projects_pages_are_404_once_the_role_may_open_them(
    signed_in, page, volunteer_status
):
    """The admin sees each missing project's page as a 404; a volunteer sees the role's 403
    first wherever the page needs a role they hold in no project (teams, issue 19)."""
    assert signed_in(UserFactory(role="admin")).get(f"/projects/999999/{page}/").status_code == 404
    volunteer = signed_in(UserFactory(role="volunteer"))
    assert volunteer.get(f"/projects/999999/{page}/").status_code == volunteer_status


@pytest.mark.parametrize("page", ["label", "dashboard", "export"])
def test_an_admin_opens_a_projects_pages(signed_in, page):
    project = ProjectFactory()
    response = signed_in(UserFactory(role="admin")).get(f"/projects/{project.pk}/{page}/")
    assert response.status_code == 200 and project.name in response.content.decode()


def test_leaderboard_hides_names_unless_opted_in(signed_in):
    shy = UserFactory(username="shy_one", votes_count=50)
    UserFactory(username="proud_one", votes_count=40, show_on_leaderboard=True)
    me = UserFactory(username="me_myself", votes_count=10)
    page = signed_in(me).get("/me/").content.decode()
    assert "proud_one" in page and "me_myself" in page
    assert "shy_one" not in page and "anonymous volunteer" in page
    assert "#3" in page  # my rank

    signed_in(shy).post("/me/", {"show_on_leaderboard": "on"})
    assert User.objects.get(pk=shy.pk).show_on_leaderboard
    assert "shy_one" in signed_in(me).get("/me/").content.decode()


def test_forms_carry_csrf_tokens(client):
    for path in ["/accounts/login/", "/accounts/signup/"]:
        assert b"csrfmiddlewaretoken" in client.get(path).content


def test_dashboard_shows_model_accuracy_over_versions(signed_in):
    from django.utils import timezone

    from annotate.models import ActiveModel, ModelVersion

    project = ProjectFactory()
    versions = [
        ModelVersion.objects.create(
            project=project,
            arch="resnet18",
            file=f"v{i}.pt",
            weights_source="scratch",
            device="cpu",
            train_size=size,
            holdout_size=10,
            training_seconds=1.0,
            top1=top1,
        )
        for i, (size, top1) in enumerate([(40, 0.5), (120, 0.75)])
    ]
    ActiveModel.objects.create(project=project, version=versions[1], promoted_at=timezone.now())
    page = (
        signed_in(UserFactory(role="admin"))
        .get(f"/projects/{project.pk}/dashboard/")
        .content.decode()
    )
    assert "Held-out top-1 accuracy by version" in page
    assert "50%" in page and "75%" in page and "active" in page
    assert page.count("<circle") == 2  # one point per version; no votes yet, so no votes chart


def test_a_private_projects_pages_are_404_to_outsiders_and_open_to_its_team(signed_in):
    """Teams (issue 19): a private project's pages do not exist for a non-member, even a
    global reviewer; its team reviewer opens its review page, and the project list shows it
    to them with the review link (and without the admin's)."""
    from annotate.models import ProjectMember

    private = ProjectFactory(name="the hidden one", private=True)
    outsider = signed_in(UserFactory(role="reviewer"))
    for page in ("label", "verify", "review", "annotators"):
        assert outsider.get(f"/projects/{private.pk}/{page}/").status_code == 404, page
    assert "the hidden one" not in outsider.get("/").content.decode()

    member = UserFactory(role="volunteer")
    ProjectMember.objects.create(project=private, user=member, role="reviewer")
    client = signed_in(member)
    assert client.get(f"/projects/{private.pk}/review/").status_code == 200
    assert client.get(f"/projects/{private.pk}/dashboard/").status_code == 403
    listing = client.get("/").content.decode()
    assert "the hidden one" in listing
    assert f"/projects/{private.pk}/review/" in listing
    assert f"/projects/{private.pk}/dashboard/" not in listing


def test_dashboard_shows_calibration_of_each_version(signed_in):
    from django.utils import timezone

    from annotate.models import ActiveModel, ModelVersion

    project = ProjectFactory()
    version = ModelVersion.objects.create(
        project=project,
        arch="small_cnn",
        file="v.pt",
        weights_source="scratch",
        device="cpu",
        train_size=131,
        holdout_size=29,
        training_seconds=1.0,
        top1=0.9,
        ece=0.0234,
        unlabeled_size=60,
        calibration_method="cross-validation (3 folds) and holdout",
        reliability=[
            {"low": 0.7, "high": 0.8, "claimed": 0.75, "measured": 0.5, "count": 4},
            {"low": 0.9, "high": 1.0, "claimed": 0.97, "measured": 1.0, "count": 150},
        ],
    )
    ActiveModel.objects.create(project=project, version=version, promoted_at=timezone.now())
    page = (
        signed_in(UserFactory(role="admin"))
        .get(f"/projects/{project.pk}/dashboard/")
        .content.decode()
    )
    assert "0.023" in page  # the version's calibration error
    assert 'id="reliability"' in page and "cross-validation (3 folds)" in page
    # Each band: claimed vs measured and how many predictions it holds.
    assert "70%–80%" in page and "75%" in page and "50%" in page and ">4<" in page
    assert "90%–100%" in page and "97%" in page and ">150<" in page
