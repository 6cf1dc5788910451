"""Erasing a user for a privacy request (issue 19): the account and its votes go, and every
count and decision they made is put right: votes_count matches the votes left, a consensus
that now rests on fewer than min_votes votes is reopened, the other voters' records follow."""

import pytest

from annotate.models import AnnotatorStats, Assignment, Decision, Image, User, Vote
from annotate.services import erase, serving, voting
from tests.factories import ImageFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _vote(project, image, user, label) -> None:
    assignment = serving.assignment_lease(project=project, user=user)
    assert assignment is not None and assignment.image_id == image.pk
    voting.vote_submit(assignment_id=assignment.pk, user=user, label_id=label.pk)


def _consistent(image: Image) -> None:
    image.refresh_from_db()
    assert image.votes_count == Vote.objects.filter(image=image).count()
    current = Decision.objects.filter(image=image, is_current=True).first()
    if image.state in (Image.State.CONSENSUS, Image.State.EXCLUDED):
        assert current is not None and image.votes_count >= image.project.min_votes
    if image.state == Image.State.OPEN:
        assert current is None


def test_erasing_a_voter_reopens_a_consensus_that_no_longer_has_min_votes() -> None:
    project = ProjectFactory(min_votes=2, max_votes=2, agreement=1.0)
    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    keep, gone = UserFactory(), UserFactory()
    _vote(project, image, keep, label)
    _vote(project, image, gone, label)
    image.refresh_from_db()
    assert image.state == Image.State.CONSENSUS
    assert AnnotatorStats.objects.get(user=keep, project=project).decided_votes == 1

    report = erase.user_erase(user=gone)

    assert not User.objects.filter(pk=gone.pk).exists()
    assert report.reopened == [image.pk]
    _consistent(image)
    assert (image.state, image.votes_count, image.free_slots) == (Image.State.OPEN, 1, 1)
    stats = AnnotatorStats.objects.get(user=keep, project=project)
    assert (stats.votes, stats.decided_votes, stats.agreed_votes) == (1, 0, 0)
    # The image is served again and decided by the next vote.
    _vote(project, image, UserFactory(), label)
    image.refresh_from_db()
    assert image.state == Image.State.CONSENSUS
    _consistent(image)


def test_a_consensus_that_still_holds_stays_with_its_vote_count_right() -> None:
    project = ProjectFactory(min_votes=2, max_votes=3, agreement=0.6)
    labels = [LabelFactory(project=project) for _ in range(2)]
    image = ImageFactory(project=project)
    voters = [UserFactory() for _ in range(3)]
    _vote(project, image, voters[0], labels[0])
    _vote(project, image, voters[1], labels[1])  # 1-1: no consensus yet
    _vote(project, image, voters[2], labels[0])  # 2-1: consensus on labels[0]
    image.refresh_from_db()
    assert image.state == Image.State.CONSENSUS

    report = erase.user_erase(user=voters[1])  # the dissenting vote goes

    assert report.redecided == [image.pk]
    _consistent(image)
    decision = Decision.objects.get(image=image, is_current=True)
    assert (decision.label_id, decision.votes_count) == (labels[0].pk, 2)


def test_a_lease_out_now_is_released() -> None:
    project = ProjectFactory(min_votes=2, max_votes=2, agreement=1.0)
    LabelFactory(project=project)
    image = ImageFactory(project=project)
    gone = UserFactory()
    assignment = serving.assignment_lease(project=project, user=gone)
    assert assignment is not None
    image.refresh_from_db()
    assert image.leases_count == 1

    erase.user_erase(user=gone)

    image.refresh_from_db()
    assert (image.leases_count, image.free_slots) == (0, 2)
    assert not Assignment.objects.filter(pk=assignment.pk).exists()
    _consistent(image)


def test_the_erase_user_command_asks_before_erasing() -> None:
    from io import StringIO

    from django.core.management import call_command

    user = UserFactory(username="leaving")
    out = StringIO()
    call_command("erase_user", "leaving", stdout=out)
    assert "--yes" in out.getvalue() and User.objects.filter(pk=user.pk).exists()
    call_command("erase_user", "leaving", "--yes", stdout=out)
    assert not User.objects.filter(pk=user.pk).exists()


def test_verification_answers_leave_open_candidates_counts() -> None:
    from annotate.models import Candidate, CandidateVote, Project

    project = ProjectFactory(task=Project.Task.VERIFY, min_votes=3, max_votes=5)
    label = LabelFactory(project=project)
    open_one = Candidate.objects.create(
        project=project, image=ImageFactory(project=project), label=label, yes_count=2
    )
    decided = Candidate.objects.create(
        project=project,
        image=ImageFactory(project=project),
        label=label,
        yes_count=3,
        state=Candidate.State.ACCEPTED,
    )
    gone, other = UserFactory(), UserFactory()
    for candidate in (open_one, decided):
        CandidateVote.objects.create(candidate=candidate, user=gone, answer=True)
        CandidateVote.objects.create(candidate=candidate, user=other, answer=True)

    erase.user_erase(user=gone)

    open_one.refresh_from_db()
    decided.refresh_from_db()
    assert (open_one.yes_count, open_one.no_count) == (1, 0)
    assert (decided.yes_count, decided.state) == (3, Candidate.State.ACCEPTED)
    assert CandidateVote.objects.filter(user_id=gone.pk).count() == 0


def _verify_until_settled(project, candidate, yes: bool) -> list:
    """Volunteers answer `candidate`'s grid until it is decided; the volunteers, in order."""
    from annotate.models import Candidate
    from annotate.services import verification

    volunteers = []
    for _ in range(project.max_votes):
        grid = verification.grid_lease(project=project, user=UserFactory())
        assert grid is not None
        items = list(grid.items.values_list("id", flat=True))
        verification.grid_answer(
            grid_id=grid.pk, user=grid.volunteer, yes_item_ids=items if yes else []
        )
        volunteers.append(grid.volunteer)
        candidate.refresh_from_db()
        if candidate.state != Candidate.State.OPEN:
            return volunteers
    raise AssertionError("the candidate was never decided")


def _verify_project(**fields):
    from annotate.models import Project

    settings = {"task": Project.Task.VERIFY, "min_votes": 3, "max_votes": 6}
    return ProjectFactory(**(settings | {"target_confidence": 0.9} | fields))


def _one_candidate(project):
    from annotate.models import Candidate
    from annotate.services import verification_candidates

    label = LabelFactory(project=project)
    image = ImageFactory(project=project)
    verification_candidates.candidates_add(
        project=project, pairs=[(image.pk, label.pk)], source=Candidate.Source.IMPORT
    )
    return Candidate.objects.get(image=image)


def test_an_acceptance_that_counted_the_erased_answer_is_decided_again() -> None:
    from annotate.models import Candidate
    from annotate.services import verification

    project = _verify_project()
    candidate = _one_candidate(project)
    voters = _verify_until_settled(project, candidate, yes=True)
    image = Image.objects.get(pk=candidate.image_id)
    assert (candidate.state, image.state) == (Candidate.State.ACCEPTED, Image.State.CONSENSUS)

    report = erase.user_erase(user=voters[0])

    candidate.refresh_from_db()
    image.refresh_from_db()
    # Accepted at min_votes: one answer fewer cannot accept it.
    assert len(voters) == project.min_votes
    assert report.candidates == [candidate.pk]
    assert (candidate.state, candidate.yes_count, candidate.no_count) == (
        Candidate.State.OPEN,
        len(voters) - 1,
        0,
    )
    assert (image.state, image.free_slots) == (Image.State.OPEN, 0)  # held for its candidate
    assert not Decision.objects.filter(image=image, is_current=True).exists()
    # Verified again: one more answer accepts it, and the image is decided once more.
    grid = verification.grid_lease(project=project, user=UserFactory())
    assert grid is not None
    verification.grid_answer(
        grid_id=grid.pk,
        user=grid.volunteer,
        yes_item_ids=list(grid.items.values_list("id", flat=True)),
    )
    candidate.refresh_from_db()
    image.refresh_from_db()
    assert (candidate.state, image.state) == (Candidate.State.ACCEPTED, Image.State.CONSENSUS)
    decision = Decision.objects.get(image=image, is_current=True)
    assert (decision.label_id, decision.rule) == (candidate.label_id, Decision.Rule.VERIFIED)


def test_an_exclusion_that_counted_the_erased_answer_is_undone() -> None:
    from annotate.models import Candidate, Project

    project = _verify_project(when_all_rejected=Project.AllRejected.EXCLUDE)
    candidate = _one_candidate(project)
    voters = _verify_until_settled(project, candidate, yes=False)
    image = Image.objects.get(pk=candidate.image_id)
    assert (candidate.state, image.state) == (Candidate.State.REJECTED, Image.State.EXCLUDED)

    erase.user_erase(user=voters[-1])

    candidate.refresh_from_db()
    image.refresh_from_db()
    assert len(voters) == project.min_votes
    assert candidate.state == Candidate.State.OPEN
    assert (image.state, image.free_slots) == (Image.State.OPEN, 0)
    assert not Decision.objects.filter(image=image, is_current=True).exists()


def test_an_answer_given_after_the_decision_changes_nothing() -> None:
    from annotate.models import Candidate, CandidateVote

    project = _verify_project()
    candidate = _one_candidate(project)
    _verify_until_settled(project, candidate, yes=True)
    late = UserFactory()
    # Answered from a grid leased before the decision: recorded, not counted.
    CandidateVote.objects.create(candidate=candidate, user=late, answer=False, reference=True)
    counts = (candidate.yes_count, candidate.no_count, candidate.posterior)

    report = erase.user_erase(user=late)

    candidate.refresh_from_db()
    assert report.candidates == []
    assert (candidate.yes_count, candidate.no_count, candidate.posterior) == counts
    assert candidate.state == Candidate.State.ACCEPTED
    assert Image.objects.get(pk=candidate.image_id).state == Image.State.CONSENSUS


def test_an_acceptance_that_still_holds_keeps_its_decision_with_the_answers_left() -> None:
    from annotate.models import Candidate

    project = _verify_project(min_votes=2)
    candidate = _one_candidate(project)
    voters = _verify_until_settled(project, candidate, yes=True)
    assert len(voters) > project.min_votes
    decision = Decision.objects.get(image_id=candidate.image_id, is_current=True)

    report = erase.user_erase(user=voters[0])

    candidate.refresh_from_db()
    assert report.candidates == []  # its outcome did not change
    assert (candidate.state, candidate.yes_count) == (Candidate.State.ACCEPTED, len(voters) - 1)
    decision.refresh_from_db()
    assert decision.is_current and decision.votes_count == len(voters) - 1
    assert decision.confidence == candidate.posterior >= project.target_confidence
