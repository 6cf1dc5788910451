"""The verification pages (issue 15): the verify page, the project list's way to it, and the
annotator table's verification column."""

import pytest

from annotate.models import Candidate, GridItem, Project, User
from annotate.services import verification, verification_candidates
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_verify_page_needs_sign_in_and_counts_grids_done(client):
    project = ProjectFactory(task=Project.Task.VERIFY)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    verification_candidates.candidates_add(
        project=project, pairs=[(image.pk, label.pk)], source=Candidate.Source.UPLOAD
    )
    user = UserFactory()
    grid = verification.grid_lease(project=project, user=user)
    verification.grid_answer(grid_id=grid.pk, user=user, yes_item_ids=[])

    anonymous = client.get(f"/projects/{project.pk}/verify/")
    client.force_login(user)
    page = client.get(f"/projects/{project.pk}/verify/")

    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="grids-done">1<' in html and "annotate/verify.js" in html
    assert client.get("/projects/999999/verify/").status_code == 404


def test_the_project_list_leads_to_verification_for_verify_projects(client):
    ProjectFactory(name="to classify")
    verify = ProjectFactory(name="to verify", task=Project.Task.VERIFY)
    client.force_login(UserFactory())

    html = client.get("/").content.decode()

    assert html.count("Start verifying") == 1 and f"/projects/{verify.pk}/verify/" in html
    assert html.count("Start labeling") == 1


def test_the_annotator_table_shows_verification(client):
    project = ProjectFactory(task=Project.Task.VERIFY, min_votes=1, max_votes=1)
    label = LabelFactory(project=project)
    images = [ImageFactory(project=project) for _ in range(3)]
    verification_candidates.candidates_add(
        project=project, pairs=[(i.pk, label.pk) for i in images], source=Candidate.Source.UPLOAD
    )
    volunteer = UserFactory(username="grid_person")
    grid = verification.grid_lease(project=project, user=volunteer)
    first = GridItem.objects.filter(grid=grid).order_by("id").first()
    verification.grid_answer(grid_id=grid.pk, user=volunteer, yes_item_ids=[first.pk])
    client.force_login(UserFactory(role=User.Role.REVIEWER))

    html = client.get(f"/projects/{project.pk}/annotators/").content.decode()

    assert "grid_person" in html and "3 yes/no" in html


def test_the_admin_lists_candidates_and_grids(client):
    project = ProjectFactory(task=Project.Task.VERIFY)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    verification_candidates.candidates_add(
        project=project, pairs=[(image.pk, label.pk)], source=Candidate.Source.UPLOAD
    )
    verification.grid_lease(project=project, user=UserFactory())
    client.force_login(UserFactory(is_staff=True, is_superuser=True, role=User.Role.ADMIN))

    for model in ("candidate", "grid", "project"):
        response = client.get(f"/admin/annotate/{model}/")
        assert response.status_code == 200, model
    candidate = Candidate.objects.get()
    assert client.get(f"/admin/annotate/candidate/{candidate.pk}/change/").status_code == 200
