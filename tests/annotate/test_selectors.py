"""The selectors a face fetches objects through: access_* getters and the lookups by key."""

import pytest

from annotate import selectors
from annotate.models import Assignment, Export
from annotate.services.errors import NotFound, PermissionDenied
from tests.factories import ImageFactory, LabelFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_every_signed_in_user_sees_every_project(volunteer, project):
    assert selectors.access_project(user=volunteer, project_id=project.pk) == project
    with pytest.raises(NotFound, match="Project 999999 does not exist."):
        selectors.access_project(user=volunteer, project_id=999999)


def test_an_image_file_is_for_its_assignee_reviewers_and_admins(
    volunteer, other_volunteer, reviewer, admin_user, project
):
    image = ImageFactory(project=project)
    Assignment.objects.create(image=image, user=volunteer, expires_at="2100-01-01T00:00Z")
    for user in (volunteer, reviewer, admin_user):
        assert selectors.access_image_file(user=user, image_id=image.pk) == image
    with pytest.raises(PermissionDenied, match="This image is not assigned to you."):
        selectors.access_image_file(user=other_volunteer, image_id=image.pk)
    with pytest.raises(NotFound, match="Image 999999 does not exist."):
        selectors.access_image_file(user=reviewer, image_id=999999)


def test_an_image_for_review_is_for_reviewers_and_admins(volunteer, reviewer, admin_user, project):
    image = ImageFactory(project=project)
    for user in (reviewer, admin_user):
        assert selectors.access_image_for_reviewer(user=user, image_id=image.pk) == image
    with pytest.raises(
        PermissionDenied, match="Only reviewers and admins of this project may do this."
    ):
        selectors.access_image_for_reviewer(user=volunteer, image_id=image.pk)
    with pytest.raises(NotFound, match="Image 999999 does not exist."):
        selectors.access_image_for_reviewer(user=reviewer, image_id=999999)


def test_another_users_account_is_for_admins(volunteer, reviewer, admin_user):
    assert selectors.access_user_for_admin(user=admin_user, user_id=volunteer.pk) == volunteer
    for user in (volunteer, reviewer):
        with pytest.raises(PermissionDenied, match="Only admins may do this."):
            selectors.access_user_for_admin(user=user, user_id=volunteer.pk)
    with pytest.raises(NotFound, match="User 999999 does not exist."):
        selectors.access_user_for_admin(user=admin_user, user_id=999999)


def test_an_export_is_for_admins(volunteer, reviewer, admin_user, project):
    export = Export.objects.create(project=project, val_fraction=0.1, seed=0)
    assert selectors.access_export(user=admin_user, export_id=export.pk) == export
    for user in (volunteer, reviewer):
        with pytest.raises(PermissionDenied, match="Only admins of this project may do this."):
            selectors.access_export(user=user, export_id=export.pk)
    with pytest.raises(NotFound, match="Export 999999 does not exist."):
        selectors.access_export(user=admin_user, export_id=999999)


def test_a_label_by_id_or_else_by_wnid(project):
    label = LabelFactory(project=project, wnid="n01440764")
    # A wnid made of digits that is also another label's id: the id wins.
    digits = LabelFactory(project=project, wnid=str(label.pk))
    other_project = LabelFactory(wnid="n09999999")
    assert selectors.label_by_key(project=project, key=str(label.pk)) == label
    assert selectors.label_by_key(project=project, key="n01440764") == label
    assert selectors.label_by_key(project=project, key=str(digits.pk)) == digits
    assert selectors.label_by_key(project=project, key=str(other_project.pk)) is None
    assert selectors.label_by_key(project=project, key="n09999999") is None


def test_a_project_by_id_or_else_by_name():
    project = ProjectFactory(name="cats")
    named_like_an_id = ProjectFactory(name="999999")
    assert selectors.project_by_key(key=str(project.pk)) == project
    assert selectors.project_by_key(key="cats") == project
    assert selectors.project_by_key(key="999999") == named_like_an_id  # no project 999999
    assert selectors.project_by_key(key="dogs") is None
