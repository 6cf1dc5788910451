from collections import Counter

import pytest

from annotate.models import Decision, Image, Vote
from annotate.services.consensus import image_apply_consensus, majority_outcome
from tests.factories import ImageFactory, UserFactory

POLICY = {"min_votes": 3, "max_votes": 5, "agreement": 0.6}


@pytest.mark.parametrize(
    ("votes", "state", "label", "confidence"),
    [
        ([], Image.State.OPEN, None, None),
        ([1, 1], Image.State.OPEN, None, None),  # below min_votes, even if unanimous
        ([1, 1, 1], Image.State.CONSENSUS, 1, 1.0),
        ([1, 1, 2], Image.State.CONSENSUS, 1, 2 / 3),
        ([1, 2, 3], Image.State.OPEN, None, None),
        ([1, 1, 2, 2], Image.State.OPEN, None, None),  # a tie is no majority
        ([1, 1, 2, 2, 3], Image.State.DISPUTED, None, None),
        ([1, 1, 1, 2, 2], Image.State.CONSENSUS, 1, 0.6),
        ([None, None, 1], Image.State.EXCLUDED, None, 2 / 3),  # "none of these" wins
    ],
)
def test_majority_outcome(votes, state, label, confidence):
    outcome = majority_outcome(Counter(votes), **POLICY)
    assert outcome.state == state
    assert outcome.label_id == label
    assert outcome.confidence == (pytest.approx(confidence) if confidence is not None else None)


def test_majority_with_agreement_one_needs_unanimity():
    policy = {"min_votes": 2, "max_votes": 3, "agreement": 1.0}
    assert majority_outcome(Counter([4, 4]), **policy).state == Image.State.CONSENSUS
    assert majority_outcome(Counter([4, 5]), **policy).state == Image.State.OPEN
    assert majority_outcome(Counter([4, 5, 4]), **policy).state == Image.State.DISPUTED


def test_apply_consensus_records_a_decision(project, labels):
    image = ImageFactory(project=project, votes_count=2)
    for user in (UserFactory(), UserFactory()):
        Vote.objects.create(image=image, user=user, label=labels[0])

    outcome = image_apply_consensus(image=image, project=project)

    assert outcome.state == Image.State.CONSENSUS
    decision = Decision.objects.get(image=image, is_current=True)
    assert (decision.label, decision.rule, decision.confidence, decision.votes_count) == (
        labels[0],
        Decision.Rule.MAJORITY,
        1.0,
        2,
    )
    assert not decision.excluded


def test_apply_consensus_on_undecided_votes_records_nothing(project, labels):
    image = ImageFactory(project=project, votes_count=2)
    Vote.objects.create(image=image, user=UserFactory(), label=labels[0])
    Vote.objects.create(image=image, user=UserFactory(), label=labels[1])

    outcome = image_apply_consensus(image=image, project=project)

    assert outcome.state == Image.State.OPEN
    assert not Decision.objects.filter(image=image).exists()
