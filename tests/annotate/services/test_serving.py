from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Assignment, Decision, Image, Project, User, Vote
from annotate.services import projects, serving, voting
from annotate.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory


def refreshed(obj):
    obj.refresh_from_db()
    return obj


@pytest.mark.parametrize(
    ("votes", "min_votes", "max_votes", "expected"),
    [
        (0, 3, 5, 3),
        (2, 3, 5, 1),
        (3, 3, 5, 1),
        (4, 3, 5, 1),
        (5, 3, 5, 0),
        (0, 1, 1, 1),
        (1, 1, 1, 0),
    ],
)
def test_image_capacity(votes, min_votes, max_votes, expected):
    assert (
        serving.image_capacity(votes_count=votes, min_votes=min_votes, max_votes=max_votes)
        == expected
    )


def test_lease_prefers_images_closest_to_a_decision(project, volunteer):
    fresh = ImageFactory(project=project)
    closer = ImageFactory(project=project, votes_count=1)

    first = serving.assignment_lease(project=project, user=volunteer)
    second = serving.assignment_lease(project=project, user=volunteer)

    assert (first.image_id, second.image_id) == (closer.pk, fresh.pk)
    assert serving.assignment_lease(project=project, user=volunteer) is None


def test_lease_takes_a_slot_and_never_over_fills(volunteer):
    project = ProjectFactory(min_votes=2, max_votes=4)
    image = ImageFactory(project=project)
    assert image.free_slots == 2

    users = [UserFactory() for _ in range(3)]
    leases = [serving.assignment_lease(project=project, user=u) for u in users]

    assert [lease is not None for lease in leases] == [True, True, False]
    image = refreshed(image)
    assert (image.leases_count, image.free_slots) == (2, 0)


def test_lease_skips_images_of_other_projects_and_decided_ones(project, volunteer):
    ImageFactory(project=ProjectFactory())
    ImageFactory(project=project, state=Image.State.CONSENSUS)
    assert serving.assignment_lease(project=project, user=volunteer) is None


def test_random_order_serves_every_image_once(volunteer):
    project = ProjectFactory(serving_order=Project.ServingOrder.RANDOM)
    images = {ImageFactory(project=project).pk for _ in range(6)}
    served = set()
    while (assignment := serving.assignment_lease(project=project, user=volunteer)) is not None:
        assert assignment.image_id not in served
        served.add(assignment.image_id)
    assert served == images


def test_vote_decides_by_majority(project, labels):
    image = ImageFactory(project=project)  # min 2, max 4, agreement 0.75
    states = []
    for _ in range(2):
        user = UserFactory()
        assignment = serving.assignment_lease(project=project, user=user)
        _, after = voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=labels[1].pk)
        states.append(after.state)

    image = refreshed(image)
    assert states == [Image.State.OPEN, Image.State.CONSENSUS]
    assert (image.votes_count, image.leases_count, image.free_slots) == (2, 0, 0)
    assert Decision.objects.get(image=image, is_current=True).label == labels[1]
    assert User.objects.filter(votes_count=1).count() == 2


def test_disagreement_until_max_votes_disputes(project, labels):
    image = ImageFactory(project=project)
    answers = [labels[0], labels[1], labels[2], labels[0]]
    for label in answers:
        user = UserFactory()
        assignment = serving.assignment_lease(project=project, user=user)
        assert assignment is not None and assignment.image_id == image.pk
        voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=label.pk)
    image = refreshed(image)
    assert (image.state, image.votes_count, image.free_slots) == (Image.State.DISPUTED, 4, 0)
    assert not Decision.objects.filter(image=image).exists()


def test_after_min_votes_only_one_volunteer_at_a_time(project, labels):
    image = ImageFactory(project=project)
    for label in labels[:2]:  # two votes that disagree: open, needs more
        user = UserFactory()
        assignment = serving.assignment_lease(project=project, user=user)
        voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=label.pk)
    assert refreshed(image).free_slots == 1
    assert serving.assignment_lease(project=project, user=UserFactory()) is not None
    assert serving.assignment_lease(project=project, user=UserFactory()) is None


def test_none_of_these_majority_excludes(project, labels):
    image = ImageFactory(project=project)
    for _ in range(2):
        user = UserFactory()
        assignment = serving.assignment_lease(project=project, user=user)
        voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=None)
    image = refreshed(image)
    decision = Decision.objects.get(image=image, is_current=True)
    assert (image.state, decision.label, decision.excluded) == (Image.State.EXCLUDED, None, True)


def test_vote_errors_change_nothing(project, labels, volunteer, other_volunteer):
    image = ImageFactory(project=project)
    assignment = serving.assignment_lease(project=project, user=volunteer)
    foreign_label = LabelFactory(project=ProjectFactory())

    with pytest.raises(InvalidInput):
        voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=foreign_label.pk)
    with pytest.raises(PermissionDenied):
        voting.vote_submit(assignment_id=assignment.pk, user=other_volunteer, label_id=labels[0].pk)
    with pytest.raises(NotFound):
        voting.vote_submit(assignment_id=assignment.pk + 1000, user=volunteer, label_id=None)

    assert Vote.objects.count() == 0
    assert refreshed(image).votes_count == 0
    assert refreshed(assignment).state == Assignment.State.ACTIVE

    voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=labels[0].pk)
    with pytest.raises(Conflict, match="already voted"):
        voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=labels[1].pk)
    assert Vote.objects.count() == 1
    assert refreshed(image).votes_count == 1


def test_skip_frees_the_slot_and_hides_the_image(project, labels, volunteer):
    image = ImageFactory(project=project)
    assignment = serving.assignment_lease(project=project, user=volunteer)

    serving.assignment_skip(assignment_id=assignment.pk, user=volunteer)
    serving.assignment_skip(assignment_id=assignment.pk, user=volunteer)  # harmless twice

    image = refreshed(image)
    assert (image.leases_count, image.free_slots) == (0, 2)
    assert serving.assignment_lease(project=project, user=volunteer) is None
    with pytest.raises(Conflict, match="skipped"):
        voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=labels[0].pk)


def test_expired_leases_free_their_slots(volunteer):
    project = ProjectFactory(min_votes=1, max_votes=1)
    image = ImageFactory(project=project)
    stale = serving.assignment_lease(project=project, user=volunteer)
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)

    # Nothing free until the lease expires; then serving sweeps it and leases the image again.
    other = UserFactory()
    assert serving.assignment_lease(project=project, user=other, now=timezone.now()) is None
    fresh = serving.assignment_lease(project=project, user=other, now=later)

    assert fresh is not None and fresh.image_id == image.pk
    assert refreshed(stale).state == Assignment.State.EXPIRED
    assert refreshed(image).leases_count == 1


def test_vote_on_expired_lease_is_refused_when_the_image_is_full(volunteer, labels):
    project = labels[0].project
    projects.project_update(project=project, min_votes=1, max_votes=1, agreement=1.0)
    image = ImageFactory(project=project)
    stale = serving.assignment_lease(project=project, user=volunteer)
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
    other = UserFactory()
    fresh = serving.assignment_lease(project=project, user=other, now=later)
    voting.vote_submit(assignment_id=fresh.pk, user=other, label_id=labels[0].pk)

    with pytest.raises(Conflict, match="expired"):
        voting.vote_submit(assignment_id=stale.pk, user=volunteer, label_id=labels[1].pk)
    assert refreshed(image).votes_count == 1


def test_vote_on_expired_lease_counts_while_the_image_has_room(volunteer, labels):
    project = labels[0].project
    image = ImageFactory(project=project)
    stale = serving.assignment_lease(project=project, user=volunteer)
    assert (
        serving.assignments_expire(
            now=timezone.now() + timedelta(seconds=project.lease_seconds + 1)
        )
        == 1
    )

    voting.vote_submit(assignment_id=stale.pk, user=volunteer, label_id=labels[0].pk)

    image = refreshed(image)
    assert (image.votes_count, image.leases_count, image.free_slots) == (1, 0, 1)


def test_policy_change_refreshes_free_slots_like_the_python_rule(project):
    images = [
        ImageFactory(project=project, votes_count=votes, leases_count=leases)
        for votes, leases in [(0, 0), (0, 2), (1, 0), (2, 0), (3, 1)]
    ]
    projects.project_update(project=project, min_votes=3, max_votes=4)
    for image in images:
        image = refreshed(image)
        assert image.free_slots == serving.image_free_slots(image=image, project=project)
    assert [refreshed(i).free_slots for i in images] == [3, 1, 2, 1, 0]


def test_undo_gives_the_image_back_to_answer_again(project, labels, volunteer):
    image = ImageFactory(project=project)
    assignment = serving.assignment_lease(project=project, user=volunteer)
    voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=labels[0].pk)

    again = voting.vote_undo(assignment_id=assignment.pk, user=volunteer)

    assert again.state == Assignment.State.ACTIVE and again.image_id == image.pk
    image = refreshed(image)
    assert (image.votes_count, image.leases_count, image.free_slots) == (0, 1, 1)
    assert not Vote.objects.exists()
    assert refreshed(volunteer).votes_count == 0
    voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=labels[1].pk)
    assert Vote.objects.get().label == labels[1]


def test_undo_is_refused_late_after_a_decision_or_for_others(
    project, labels, volunteer, other_volunteer
):
    ImageFactory(project=project)  # min 2 votes: the second vote decides
    first = serving.assignment_lease(project=project, user=volunteer)
    voting.vote_submit(assignment_id=first.pk, user=volunteer, label_id=labels[0].pk)
    with pytest.raises(PermissionDenied):
        voting.vote_undo(assignment_id=first.pk, user=other_volunteer)
    with pytest.raises(Conflict, match="30 seconds"):
        voting.vote_undo(
            assignment_id=first.pk, user=volunteer, now=timezone.now() + timedelta(seconds=31)
        )
    second = serving.assignment_lease(project=project, user=other_volunteer)
    voting.vote_submit(assignment_id=second.pk, user=other_volunteer, label_id=labels[0].pk)
    with pytest.raises(Conflict, match="already decided"):
        voting.vote_undo(assignment_id=second.pk, user=other_volunteer)
    assert Vote.objects.count() == 2


def test_a_vote_takes_no_locks_on_postgresql_and_its_locks_elsewhere(volunteer, monkeypatch):
    """PostgreSQL: a plain read and one guarded write, no transaction. SQLite: the transaction
    with its locks."""
    project = ProjectFactory(min_votes=2, max_votes=3, agreement=0.6)
    label = LabelFactory(project=project)
    ImageFactory(project=project)
    paths = []
    for name in ("_vote_unless_changed", "_vote_with_locks"):
        original = getattr(voting, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            result = _original(*args, **kwargs)
            paths.append((_name, result is not None))
            return result

        monkeypatch.setattr(voting, name, spy)
    assignment = serving.assignment_lease(project=project, user=volunteer)
    vote, image = voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=label.pk)
    expected = (
        [("_vote_unless_changed", True)]
        if connection.vendor == "postgresql"
        else [("_vote_with_locks", True)]
    )
    assert paths == expected
    assert refreshed(assignment).state == Assignment.State.VOTED
    assert (refreshed(image).votes_count, image.leases_count, image.state) == (
        1,
        0,
        Image.State.OPEN,
    )
    assert Vote.objects.get(pk=vote.pk).label_id == label.pk
    assert refreshed(volunteer).votes_count == 1


def test_a_vote_whose_image_changed_after_its_read_is_decided_on_the_fresh_rows(db, monkeypatch):
    """Another vote lands between this vote's read and its write. The write, made for the rows
    as read, must not apply: with it the image would count one vote and stay open. The vote is
    then made again under the locks, sees both votes, and decides the image."""
    project = ProjectFactory(min_votes=2, max_votes=3, agreement=0.6)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    first, second = UserFactory(), UserFactory()
    first_lease = serving.assignment_lease(project=project, user=first)
    second_lease = serving.assignment_lease(project=project, user=second)
    assert first_lease.image_id == second_lease.image_id == image.pk

    original_plan = voting._vote_plan
    interleaved = []

    def plan_then_another_vote(*, target, user, label_id, guarded=False):
        plan = original_plan(target=target, user=user, label_id=label_id, guarded=guarded)
        if guarded and user == first and not interleaved:
            interleaved.append(True)
            # As another process would, in a transaction of its own (here a savepoint, which
            # gives the rows it writes a new version).
            with transaction.atomic():
                voting.vote_submit(assignment_id=second_lease.pk, user=second, label_id=label.pk)
        return plan

    monkeypatch.setattr(voting, "_vote_plan", plan_then_another_vote)
    vote, decided = voting.vote_submit(assignment_id=first_lease.pk, user=first, label_id=label.pk)

    assert interleaved == ([True] if connection.vendor == "postgresql" else [])
    image.refresh_from_db()
    assert (image.votes_count, image.leases_count, image.state) == (
        (2, 0, Image.State.CONSENSUS) if interleaved else (1, 1, Image.State.OPEN)
    )
    assert Vote.objects.filter(image=image).count() == image.votes_count
    if interleaved:
        decision = Decision.objects.get(image=image, is_current=True)
        assert (decision.label_id, decision.votes_count) == (label.pk, 2)
        assert decided.state == Image.State.CONSENSUS
    assert refreshed(first).votes_count == 1


def test_an_open_image_with_a_current_decision_is_refused_and_nothing_is_written(
    volunteer, monkeypatch
):
    """No service leaves an open image with a current decision (voting's docstring says why),
    so a vote never has a decision to retire. Made by hand, the state is refused loudly on
    either path, and the vote writes nothing."""
    project = ProjectFactory(min_votes=1, max_votes=3, agreement=1.0)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    assignment = serving.assignment_lease(project=project, user=volunteer)
    Decision.objects.create(image=image, label=label, rule=Decision.Rule.MAJORITY, votes_count=0)
    with pytest.raises(RuntimeError, match="has a current decision"):
        voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=label.pk)
    monkeypatch.setattr(voting, "_vote_unless_changed", lambda **kwargs: None)
    with pytest.raises(RuntimeError, match="has a current decision"):
        voting.vote_submit(assignment_id=assignment.pk, user=volunteer, label_id=label.pk)
    assert not Vote.objects.exists()
    assert refreshed(assignment).state == Assignment.State.ACTIVE
    assert Decision.objects.get(image=image).votes_count == 0


def test_the_admin_cannot_add_or_change_a_decision(client, project, labels):
    """The one way around the services to a current decision on an open image is closed."""
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    admin_client = client
    image = ImageFactory(project=project)
    decision = Decision.objects.create(
        image=image, label=labels[0], rule=Decision.Rule.REVIEW, votes_count=0
    )
    assert admin_client.get("/admin/annotate/decision/").status_code == 200
    assert admin_client.get("/admin/annotate/decision/add/").status_code == 403
    changed = admin_client.post(
        f"/admin/annotate/decision/{decision.pk}/change/", {"is_current": "", "rule": "gold"}
    )
    assert changed.status_code == 403
    assert Decision.objects.get(pk=decision.pk).rule == Decision.Rule.REVIEW
