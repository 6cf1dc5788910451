"""The Django admin loses nothing silently: a user with votes is deactivated, not deleted, and
votes and decisions are read-only there (issue 19); its forms keep the rules the services keep."""

import pytest
from django.test import Client
from django.urls import reverse

from annotate.admin import LabelForm
from annotate.models import Decision, Image, Label, User, Vote
from annotate.services import serving, voting
from tests.factories import ImageFactory, UserFactory


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", "root@example.org", "secret-password-1")


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def voted_image(project, labels) -> tuple[Image, list[User]]:
    """An image in consensus on two volunteers' votes."""
    image = ImageFactory(project=project)
    voters = []
    for _ in range(2):
        user = UserFactory()
        assignment = serving.assignment_lease(project=project, user=user)
        assert assignment is not None
        voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=labels[1].pk)
        voters.append(user)
    image.refresh_from_db()
    assert (image.state, image.votes_count) == (Image.State.CONSENSUS, 2)
    return image, voters


def _unchanged(image: Image, voters: list[User]) -> None:
    image.refresh_from_db()
    assert (image.state, image.votes_count) == (Image.State.CONSENSUS, 2)
    assert Vote.objects.filter(image=image).count() == 2
    assert Decision.objects.filter(image=image, is_current=True).count() == 1
    for voter in voters:
        voter.refresh_from_db()
        assert voter.votes_count == 1


def test_delete_view_deactivates_a_user_with_votes(admin_client, voted_image):
    image, voters = voted_image
    url = reverse("admin:annotate_user_delete", args=[voters[0].pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"deactivat" in page.content.lower()

    response = admin_client.post(url, {"post": "yes"}, follow=True)

    assert response.status_code == 200
    assert User.objects.filter(pk=voters[0].pk, is_active=False).exists()
    assert "deactivated" in " ".join(str(m) for m in response.context["messages"])
    _unchanged(image, voters)


def test_bulk_delete_deactivates_voters_and_deletes_the_others(admin_client, voted_image):
    image, voters = voted_image
    idle = UserFactory()
    changelist = reverse("admin:annotate_user_changelist")
    chosen = [str(voters[0].pk), str(voters[1].pk), str(idle.pk)]

    response = admin_client.post(
        changelist,
        {"action": "delete_selected", "_selected_action": chosen, "post": "yes"},
        follow=True,
    )

    assert response.status_code == 200
    assert User.objects.filter(pk__in=[v.pk for v in voters], is_active=False).count() == 2
    assert not User.objects.filter(pk=idle.pk).exists()
    assert "deactivated" in " ".join(str(m) for m in response.context["messages"])
    _unchanged(image, voters)


def test_a_user_without_votes_can_still_be_deleted(admin_client, db):
    idle = UserFactory()
    url = reverse("admin:annotate_user_delete", args=[idle.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=idle.pk).exists()


def test_votes_are_read_only_in_the_admin(admin_client, voted_image):
    image, voters = voted_image
    vote = Vote.objects.filter(image=image).first()
    assert vote is not None

    delete = admin_client.post(
        reverse("admin:annotate_vote_delete", args=[vote.pk]), {"post": "yes"}
    )
    change = admin_client.post(
        reverse("admin:annotate_vote_change", args=[vote.pk]),
        {"label": "", "image": image.pk, "user": voters[0].pk},
    )
    add = admin_client.get(reverse("admin:annotate_vote_add"))
    actions = admin_client.get(reverse("admin:annotate_vote_changelist"))
    bulk = admin_client.post(
        reverse("admin:annotate_vote_changelist"),
        {"action": "delete_selected", "_selected_action": [str(vote.pk)], "post": "yes"},
    )

    assert delete.status_code == 403
    assert change.status_code == 403
    assert add.status_code == 403
    assert b"delete_selected" not in actions.content
    assert bulk.status_code in (200, 302, 403)
    _unchanged(image, voters)


def test_decisions_are_read_only_in_the_admin(admin_client, voted_image):
    image, voters = voted_image
    decision = Decision.objects.get(image=image, is_current=True)
    delete = admin_client.post(
        reverse("admin:annotate_decision_delete", args=[decision.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    _unchanged(image, voters)


def test_the_admin_label_form_refuses_control_characters_naming_them(project):
    form = LabelForm(
        data={"project": project.pk, "wnid": "n02123045", "name": "tabby\ncat", "gloss": "a\tb"}
    )
    assert not form.is_valid()
    assert form.errors["name"] == ["name contains a newline (U+000A)."]
    assert form.errors["gloss"] == ["gloss contains a tab (U+0009)."]
    good = LabelForm(
        data={"project": project.pk, "wnid": "n02123045", "name": "tabby", "position": 1}
    )
    assert good.is_valid(), good.errors
    good.save()
    assert Label.objects.filter(project=project, name="tabby").exists()
