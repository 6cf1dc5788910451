"""The pure arithmetic of verification consensus: no database needed."""

import math

import pytest

from annotate.services.verification_consensus import (
    PRIOR_SENSITIVITY,
    PRIOR_SPECIFICITY,
    RELIABILITY_CEILING,
    ItemDecision,
    VoterReliability,
    candidate_posterior,
    confidence_table,
    decide_item,
    label_prior,
    rating_reference,
    voter_reliability,
)

GOOD = VoterReliability(sensitivity=0.9, specificity=0.9)
FAIR = VoterReliability(sensitivity=0.7, specificity=0.7)
SPAMMER = VoterReliability(sensitivity=0.5, specificity=0.5)


def yes_votes_to_reach(*, prior: float, target: float, voter: VoterReliability) -> int:
    votes = 0
    while candidate_posterior(prior=prior, answers=[(True, voter)] * votes) < target:
        votes += 1
        assert votes < 50, "never reaches the target"
    return votes


# voter_reliability


def test_voter_reliability_without_answers_is_the_prior() -> None:
    reliability = voter_reliability(true_yes=0, false_no=0, true_no=0, false_yes=0)
    assert reliability.sensitivity == pytest.approx(PRIOR_SENSITIVITY)
    assert reliability.specificity == pytest.approx(PRIOR_SPECIFICITY)


def test_voter_reliability_is_beta_smoothed_toward_the_prior() -> None:
    # 8 of 10 right items seen as yes, 3 of 4 wrong ones as no, a prior worth 4 answers at 0.5.
    reliability = voter_reliability(
        true_yes=8,
        false_no=2,
        true_no=3,
        false_yes=1,
        prior_strength=4.0,
        prior_sensitivity=0.5,
        prior_specificity=0.5,
    )
    assert reliability.sensitivity == pytest.approx((2 + 8) / (4 + 10))
    assert reliability.specificity == pytest.approx((2 + 3) / (4 + 4))


def test_voter_reliability_leave_one_out_contract() -> None:
    """The caller passes only items settled without this voter's vote counting. A voter whose
    own votes decided items must not gain reliability from them: the same voter with the
    self-confirming items left out stays where the gold answers alone put them."""
    from_gold_only = voter_reliability(
        true_yes=3, false_no=2, true_no=3, false_yes=2, prior_strength=4.0
    )
    with_self_confirmation = voter_reliability(
        true_yes=23, false_no=2, true_no=23, false_yes=2, prior_strength=4.0
    )
    # Counting agreement with one's own decisions would inflate the estimate a lot ...
    assert with_self_confirmation.sensitivity > from_gold_only.sensitivity + 0.2
    # ... while the leave-one-out counts keep a 60%-on-gold voter below the prior's 0.7.
    assert from_gold_only.sensitivity < PRIOR_SENSITIVITY
    assert from_gold_only.specificity < PRIOR_SPECIFICITY


def test_voter_reliability_many_answers_outweigh_the_prior() -> None:
    reliability = voter_reliability(true_yes=950, false_no=50, true_no=600, false_yes=400)
    assert reliability.sensitivity == pytest.approx(0.95, abs=0.005)
    assert reliability.specificity == pytest.approx(0.6, abs=0.005)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"true_yes": -1},
        {"false_yes": -2},
        {"prior_strength": 0.0},
        {"prior_sensitivity": 1.0},
        {"prior_specificity": 0.0},
    ],
)
def test_voter_reliability_refuses_bad_input(kwargs: dict) -> None:
    counts = {"true_yes": 1, "false_no": 1, "true_no": 1, "false_yes": 1}
    with pytest.raises(ValueError):
        voter_reliability(**{**counts, **kwargs})


# label_prior


def test_label_prior_of_a_new_label_is_the_pool_prior() -> None:
    assert label_prior(accepted=0, rejected=0, pool_prior=0.3) == pytest.approx(0.3)


def test_label_prior_moves_from_the_pool_toward_the_label_share() -> None:
    few = label_prior(accepted=1, rejected=9, pool_prior=0.5, strength=10.0)
    many = label_prior(accepted=100, rejected=900, pool_prior=0.5, strength=10.0)
    assert few == pytest.approx((5 + 1) / 20)
    assert 0.1 < many < few < 0.5
    assert many == pytest.approx(0.1, abs=0.005)


def test_label_prior_takes_expected_counts() -> None:
    # Three candidates voted on, with posteriors 0.9, 0.2 and 0.1: 1.2 right, 1.8 wrong expected.
    posteriors = [0.9, 0.2, 0.1]
    prior = label_prior(
        accepted=sum(posteriors),
        rejected=sum(1 - p for p in posteriors),
        pool_prior=0.5,
        strength=2.0,
    )
    assert prior == pytest.approx((1.0 + 1.2) / (2.0 + 3.0))


@pytest.mark.parametrize(
    "kwargs",
    [{"accepted": -1}, {"rejected": -1}, {"pool_prior": 0.0}, {"strength": -1.0}],
)
def test_label_prior_refuses_bad_input(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        label_prior(**{"accepted": 1, "rejected": 1, **kwargs})


# candidate_posterior


def test_posterior_without_votes_is_the_prior() -> None:
    assert candidate_posterior(prior=0.2, answers=[]) == pytest.approx(0.2)


def test_posterior_is_bayes_with_independent_voters() -> None:
    answers = [(True, GOOD), (True, FAIR), (False, FAIR)]
    odds = (0.1 / 0.9) * (0.9 / 0.1) * (0.7 / 0.3) * (0.3 / 0.7)
    assert candidate_posterior(prior=0.1, answers=answers) == pytest.approx(odds / (1 + odds))


def test_posterior_is_monotone_in_yes_votes() -> None:
    posteriors = [
        candidate_posterior(prior=0.3, answers=[(True, FAIR)] * yes + [(False, FAIR)] * (6 - yes))
        for yes in range(7)
    ]
    assert posteriors == sorted(posteriors)
    assert len(set(posteriors)) == len(posteriors)


def test_a_spammer_moves_nothing() -> None:
    base = candidate_posterior(prior=0.4, answers=[(True, GOOD)])
    for said_yes in (True, False):
        with_spam = candidate_posterior(prior=0.4, answers=[(True, GOOD), (said_yes, SPAMMER)])
        assert with_spam == pytest.approx(base)


def test_a_yes_sayer_spammer_moves_nothing_either() -> None:
    # Says yes to 90% of everything, right or wrong: sensitivity 0.9, specificity 0.1.
    yes_sayer = VoterReliability(sensitivity=0.9, specificity=0.1)
    assert candidate_posterior(prior=0.4, answers=[(True, yes_sayer)]) == pytest.approx(0.4)
    assert candidate_posterior(prior=0.4, answers=[(False, yes_sayer)]) == pytest.approx(0.4)


def test_a_contrary_voter_is_not_turned_around() -> None:
    contrary = VoterReliability(sensitivity=0.2, specificity=0.3)
    assert candidate_posterior(prior=0.4, answers=[(False, contrary)]) == pytest.approx(0.4)


def test_a_biased_but_informative_voter_counts_by_bayes() -> None:
    # Rarely says yes to a wrong image, often misses right ones: a yes is strong, a no weak.
    careful = VoterReliability(sensitivity=0.4, specificity=0.9)
    yes = candidate_posterior(prior=0.5, answers=[(True, careful)])
    no = candidate_posterior(prior=0.5, answers=[(False, careful)])
    assert yes == pytest.approx(0.4 / (0.4 + 0.1))
    assert no == pytest.approx(0.6 / (0.6 + 0.9))


def test_one_vote_is_never_certain() -> None:
    perfect = VoterReliability(sensitivity=1.0, specificity=1.0)
    yes = candidate_posterior(prior=0.5, answers=[(True, perfect)])
    no = candidate_posterior(prior=0.5, answers=[(False, perfect)])
    assert yes == pytest.approx(RELIABILITY_CEILING)
    assert no == pytest.approx(1 - RELIABILITY_CEILING)


def test_a_certain_prior_is_not_certain() -> None:
    assert candidate_posterior(prior=1.0, answers=[]) < 1.0
    assert candidate_posterior(prior=0.0, answers=[]) > 0.0
    assert candidate_posterior(prior=0.0, answers=[(True, GOOD)] * 4) > 0.5


def test_a_low_prior_needs_more_yes_votes_than_a_high_one() -> None:
    search_results = yes_votes_to_reach(prior=0.1, target=0.997, voter=FAIR)
    good_model = yes_votes_to_reach(prior=0.8, target=0.997, voter=FAIR)
    assert search_results > good_model
    # Each fair yes multiplies the odds by 7/3: from 1/9 to 332 takes 10, from 4 to 332 takes 6.
    assert (search_results, good_model) == (10, 6)


def test_posterior_survives_extreme_evidence() -> None:
    many_yes = candidate_posterior(prior=0.5, answers=[(True, GOOD)] * 2000)
    many_no = candidate_posterior(prior=0.5, answers=[(False, GOOD)] * 2000)
    assert many_yes == 1.0 or math.isclose(many_yes, 1.0)
    assert 0.0 <= many_no < 1e-100


def test_posterior_refuses_a_prior_that_is_no_probability() -> None:
    with pytest.raises(ValueError):
        candidate_posterior(prior=1.5, answers=[])


# rating_reference (what a new vote is rated against)


@pytest.mark.parametrize(
    ("posterior_before", "reference"),
    [(0.95, True), (0.999, True), (0.9499, None), (0.5, None), (0.0501, None), (0.05, False)],
)
def test_a_vote_is_rated_only_where_the_earlier_votes_settled_the_item(
    posterior_before: float, reference: bool | None
) -> None:
    assert rating_reference(posterior_before=posterior_before) is reference


def test_rating_reference_follows_its_confidence() -> None:
    assert rating_reference(posterior_before=0.97, confidence=0.99) is None
    assert rating_reference(posterior_before=0.97, confidence=0.9) is True


def test_rating_reference_ignores_the_vote_being_rated() -> None:
    """The reference comes from the votes before: whatever the new vote says, an item the
    earlier votes left open rates no one, and one they settled rates the vote either way."""
    open_item = candidate_posterior(prior=0.5, answers=[(True, FAIR)])
    settled = candidate_posterior(prior=0.5, answers=[(True, GOOD), (True, GOOD)])
    assert rating_reference(posterior_before=open_item) is None
    assert rating_reference(posterior_before=settled) is True


@pytest.mark.parametrize("kwargs", [{"posterior_before": 1.2}, {"confidence": 0.5}])
def test_rating_reference_refuses_bad_input(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        rating_reference(**{"posterior_before": 0.5, **kwargs})


# decide_item

POLICY = {"min_votes": 2, "max_votes": 6, "target_confidence": 0.99}


@pytest.mark.parametrize(
    ("posterior", "votes", "state"),
    [
        (0.995, 1, "open"),  # confident, but below min_votes
        (0.005, 1, "open"),
        (0.99, 2, "accepted"),  # at the target exactly
        (0.9899, 2, "open"),
        (0.01, 2, "rejected"),  # at 1 - target exactly
        (0.0101, 2, "open"),
        (0.5, 5, "open"),
        (0.5, 6, "disputed"),
        (0.995, 6, "accepted"),  # decided at max_votes is decided, not disputed
        (0.001, 7, "rejected"),
    ],
)
def test_decide_item_boundaries(posterior: float, votes: int, state: str) -> None:
    assert decide_item(posterior=posterior, votes=votes, **POLICY) == ItemDecision(
        state=state, posterior=posterior
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"posterior": -0.1},
        {"votes": -1},
        {"min_votes": 0},
        {"max_votes": 1},
        {"target_confidence": 0.5},
        {"target_confidence": 1.0},
    ],
)
def test_decide_item_refuses_bad_input(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        decide_item(**{"posterior": 0.5, "votes": 3, **POLICY, **kwargs})


# confidence_table (ImageNet's baseline)


def test_confidence_table_of_full_counts() -> None:
    sample = [(10, 0, True)] * 3 + [(0, 10, False)] * 5 + [(5, 5, False)]
    table = confidence_table(sample, smoothing=0.0)
    assert table[(10, 0)] == pytest.approx(1.0)
    assert table[(0, 10)] == pytest.approx(0.0)
    assert table[(5, 5)] == pytest.approx(0.0)
    # One yes among the first vote: the 3 right items always, the (5, 5) item half the time.
    assert table[(1, 0)] == pytest.approx(3 / 3.5)


def test_confidence_table_weighs_partial_counts_hypergeometrically() -> None:
    table = confidence_table([(2, 1, True), (1, 2, False)], smoothing=0.0)
    # (1, 0): the first item gives yes first with probability 2/3, the second 1/3.
    assert table[(1, 0)] == pytest.approx((2 / 3) / (2 / 3 + 1 / 3))
    # (2, 0) only the first item can show.
    assert table[(2, 0)] == pytest.approx(1.0)
    assert (0, 3) not in table


def test_confidence_table_smoothing_keeps_thin_cells_near_a_half() -> None:
    table = confidence_table([(3, 0, True)], smoothing=1.0)
    assert table[(3, 0)] == pytest.approx(1.5 / 2.0)


def test_confidence_table_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        confidence_table([(-1, 3, True)])
