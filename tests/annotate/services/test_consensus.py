from collections import Counter
from typing import Any

import pytest

from annotate.models import Image
from annotate.services.consensus import majority_outcome

POLICY: dict[str, Any] = {"min_votes": 3, "max_votes": 5, "agreement": 0.6}


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
    policy: dict[str, Any] = {"min_votes": 2, "max_votes": 3, "agreement": 1.0}
    assert majority_outcome(Counter([4, 4]), **policy).state == Image.State.CONSENSUS
    assert majority_outcome(Counter([4, 5]), **policy).state == Image.State.OPEN
    assert majority_outcome(Counter([4, 5, 4]), **policy).state == Image.State.DISPUTED
