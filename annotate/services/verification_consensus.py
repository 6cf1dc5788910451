"""Verification consensus: does this candidate image really show its label? (PRODUCT.md §10)

ImageNet asked, per synset, "which of these images show <synset>?" and gave each candidate a
dynamic number of yes/no votes: an initial sample of candidates got ten or more votes each,
which gave the synset a table of P(image is right | its yes and no counts), and the other
candidates were asked until that probability passed a threshold. `confidence_table` is that
table, kept as the benchmark's baseline.

What the service decides with is the same question answered with Bayes and more evidence:

- the label's prior (`label_prior`): the expected share of right candidates among the label's
  candidates, shrunk toward the project's overall share, so a new label borrows the crowd's;
- each voter's reliability (`voter_reliability`): a sensitivity P(yes | right) and a specificity
  P(no | wrong), learned from the voter's gold answers and from votes rated against what the
  earlier votes on the same item had settled (`rating_reference`), so a careful voter's yes
  counts for more than a careless one's and a spammer's counts for nothing;
- the candidate's posterior (`candidate_posterior`): prior odds times each vote's likelihood
  ratio, the voters taken as independent given the truth;
- the decision (`decide_item`): accepted at posterior >= target, rejected at <= 1 - target,
  never before `min_votes`; disputed (for review) once `max_votes` votes left it undecided.

Everything here is plain arithmetic on numbers the caller reads from the database: no Django, no
queries, so the benchmark runs the very code the service runs.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# A volunteer with no rated answers yet: better than chance, as a crowd of accuracies between
# 0.55 and 0.95 is on average, and worth a few answers, so that gold and rated votes soon speak
# for the volunteer.
PRIOR_SENSITIVITY = 0.7
PRIOR_SPECIFICITY = 0.7
RELIABILITY_PRIOR_STRENGTH = 4.0

# A vote rates its voter only when the votes before it had settled its item with at least this
# probability (see rating_reference). Lower rates more votes against a noisier reference, which
# makes voters look worse than they are; higher rates fewer. In the simulated crowd (1,000
# synsets) 0.9, 0.95 and 0.99 gave 22.9, 22.1 and 21.7 votes per accepted image at 99.91%,
# 99.89% and 99.85% precision; 0.95 keeps the margin.
RATING_CONFIDENCE = 0.95

# A label's prior is worth this many candidates at the pool's share.
LABEL_PRIOR_STRENGTH = 10.0
# Without any candidate voted on in the project, a candidate is as likely right as wrong.
POOL_PRIOR = 0.5

# No single vote may be near-certain: a reliability is used at most at this value, so one vote's
# likelihood ratio is at most 0.99 / 0.01 = 99 (and its reciprocal for the other answer).
RELIABILITY_CEILING = 0.99
RELIABILITY_FLOOR = 1.0 - RELIABILITY_CEILING
# Nor may a prior settle an item before anyone votes: it is kept within these bounds.
PRIOR_FLOOR = 0.001

# ImageNet's published precision. The posteriors are calibrated (bench/verify_cost.py prints
# claimed against measured per band), so accepting at 0.997 measures at least that.
DEFAULT_TARGET_CONFIDENCE = 0.997
# Enough votes for a contested candidate: in the simulated crowd, 20 left 4% of candidates
# disputed, 10 left a third, and cost more human votes per accepted image.
DEFAULT_MAX_VOTES = 20

State = Literal["open", "accepted", "rejected", "disputed"]


@dataclass(frozen=True)
class VoterReliability:
    """How a volunteer answers "does this image show the label?".

    sensitivity: P(yes | the candidate is right); specificity: P(no | the candidate is wrong).
    A voter is informative when sensitivity + specificity > 1 (a spammer answering at random
    has sensitivity + specificity = 1, whatever their rate of yes)."""

    sensitivity: float
    specificity: float


def voter_reliability(
    *,
    true_yes: int,
    false_no: int,
    true_no: int,
    false_yes: int,
    prior_strength: float = RELIABILITY_PRIOR_STRENGTH,
    prior_sensitivity: float = PRIOR_SENSITIVITY,
    prior_specificity: float = PRIOR_SPECIFICITY,
) -> VoterReliability:
    """A voter's sensitivity and specificity: Beta-smoothed shares of their settled answers.

    Counts: true_yes (said yes, the item is right), false_no (said no, it is right), true_no
    (said no, it is wrong), false_yes (said yes, it is wrong). Each share starts from a prior
    worth `prior_strength` answers, so a voter with few settled answers stays near the prior.

    Contract (leave-one-out): count only answers rated against a truth this voter's own vote had
    no part in: gold answers (known truth), and votes whose item the *earlier* votes alone had
    settled (rating_reference(), applied when the vote arrives). Counting a voter's agreement
    with decisions their own vote helped make would let them confirm themselves; counting
    agreement with decided items at all favours agreement, since items are decided sooner when
    their voters agree (see rating_reference). The function cannot check this; it only counts
    what it is given."""
    counts = {
        "true_yes": true_yes,
        "false_no": false_no,
        "true_no": true_no,
        "false_yes": false_yes,
    }
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be a count (0 or more), not {value}.")
    if not prior_strength > 0:
        raise ValueError(f"prior_strength must be above 0, not {prior_strength}.")
    for name, share in (
        ("prior_sensitivity", prior_sensitivity),
        ("prior_specificity", prior_specificity),
    ):
        if not 0.0 < share < 1.0:
            raise ValueError(f"{name} must lie strictly between 0 and 1, not {share}.")
    sensitivity = (prior_sensitivity * prior_strength + true_yes) / (
        prior_strength + true_yes + false_no
    )
    specificity = (prior_specificity * prior_strength + true_no) / (
        prior_strength + true_no + false_yes
    )
    return VoterReliability(sensitivity=sensitivity, specificity=specificity)


def label_prior(
    *,
    accepted: float,
    rejected: float,
    pool_prior: float = POOL_PRIOR,
    strength: float = LABEL_PRIOR_STRENGTH,
) -> float:
    """P(a candidate of this label is right), before its votes.

    From the label's candidates, shrunk toward `pool_prior`, the share of right candidates over
    the project (or over the candidates' source: search results are mostly wrong, a good model's
    mostly right), with the weight of `strength` candidates: a new label borrows the pool's
    share, a label with hundreds of candidates speaks for itself.

    `accepted` and `rejected` may be counts or expected counts. Pass expected ones: over every
    candidate of the label with at least one vote, open, decided or disputed, the sum of their
    posteriors and the sum of one minus them (a reviewed candidate counts as the reviewer
    settled it). Counts of decided candidates alone feed back on themselves: in a label of
    mostly wrong candidates the rejections come first, the prior falls, right candidates are
    then rejected too, and it falls further (the simulated crowd: recall 3% instead of 95%).
    The mean of calibrated posteriors has no such pull: it is the share, in expectation."""
    if accepted < 0 or rejected < 0:
        raise ValueError(f"accepted and rejected must be counts, not {accepted} and {rejected}.")
    if not 0.0 < pool_prior < 1.0:
        raise ValueError(f"pool_prior must lie strictly between 0 and 1, not {pool_prior}.")
    if not strength > 0:
        raise ValueError(f"strength must be above 0, not {strength}.")
    return (pool_prior * strength + accepted) / (strength + accepted + rejected)


def vote_log_likelihood_ratio(*, said_yes: bool, reliability: VoterReliability) -> float:
    """log P(this answer | right) / P(this answer | wrong), the vote's weight in log-odds.

    Each reliability is first clamped into [RELIABILITY_FLOOR, RELIABILITY_CEILING], so no vote is
    certain. A voter who is no better than chance (sensitivity + specificity <= 1: a spammer, or
    one whose answers run against the truth) weighs nothing either way: their answers are not
    turned around, because an estimate that says "contrary" is more likely an unlucky one."""
    sensitivity = min(max(reliability.sensitivity, RELIABILITY_FLOOR), RELIABILITY_CEILING)
    specificity = min(max(reliability.specificity, RELIABILITY_FLOOR), RELIABILITY_CEILING)
    if sensitivity + specificity <= 1.0:
        return 0.0
    if said_yes:
        return math.log(sensitivity) - math.log(1.0 - specificity)
    return math.log(1.0 - sensitivity) - math.log(specificity)


def candidate_posterior(*, prior: float, answers: Sequence[tuple[bool, VoterReliability]]) -> float:
    """P(the candidate is right | its votes): the prior's log-odds plus each vote's
    log-likelihood ratio, the voters independent given the truth.

    `answers` holds (said yes, that voter's reliability) per vote. The prior is kept within
    [PRIOR_FLOOR, 1 - PRIOR_FLOOR], so a prior alone never makes an item certain."""
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be a probability (0 to 1), not {prior}.")
    prior = min(max(prior, PRIOR_FLOOR), 1.0 - PRIOR_FLOOR)
    log_odds = math.log(prior) - math.log(1.0 - prior)
    for said_yes, reliability in answers:
        log_odds += vote_log_likelihood_ratio(said_yes=said_yes, reliability=reliability)
    # The logistic function, written so that neither branch overflows.
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(log_odds)
    return odds / (1.0 + odds)


def rating_reference(
    *, posterior_before: float, confidence: float = RATING_CONFIDENCE
) -> bool | None:
    """What a new vote on an item is rated against, for its voter's reliability: True (count it
    as an answer on a right item: a yes is a true_yes, a no a false_no), False (on a wrong item:
    a no is a true_no, a yes a false_yes), or None (it rates no one).

    `posterior_before` is the item's posterior from its prior and the votes before this one.
    The vote counts when those alone had settled the item with at least `confidence`. Only
    earlier votes decide, because whether this vote was asked at all depended on them and on
    nothing else: given the truth, the rated answer is a fair draw of the voter's behaviour.
    Rating a vote against the item's final decision instead would not be: an item is decided
    early when its voters agree and stays open while they disagree, so the decided items seen
    so far over-represent agreement, and every voter looks better than they are (the simulated
    crowd: sensitivities estimated at 0.90 on average part-way through a run, for a crowd of
    0.75, and 99.3% precision where 99.7% was claimed). Gold items rate every answer against
    their known truth."""
    if not 0.0 <= posterior_before <= 1.0:
        raise ValueError(f"posterior_before must be a probability, not {posterior_before}.")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0.5 and 1, not {confidence}.")
    if posterior_before >= confidence:
        return True
    if posterior_before <= 1.0 - confidence:
        return False
    return None


@dataclass(frozen=True)
class ItemDecision:
    """What the votes so far say about a candidate, and the posterior they say it with."""

    state: State
    posterior: float


def decide_item(
    *, posterior: float, votes: int, min_votes: int, max_votes: int, target_confidence: float
) -> ItemDecision:
    """Accepted once posterior >= target_confidence, rejected once posterior <= 1 - target, both
    only with at least `min_votes` votes; disputed when `max_votes` votes left it undecided;
    open otherwise (it needs another vote)."""
    if not 0.0 <= posterior <= 1.0:
        raise ValueError(f"posterior must be a probability (0 to 1), not {posterior}.")
    if votes < 0:
        raise ValueError(f"votes must be a count (0 or more), not {votes}.")
    if min_votes < 1 or max_votes < min_votes:
        raise ValueError(
            f"Need 1 <= min_votes <= max_votes, not min_votes={min_votes}, max_votes={max_votes}."
        )
    if not 0.5 < target_confidence < 1.0:
        raise ValueError(
            f"target_confidence must lie strictly between 0.5 and 1, not {target_confidence}."
        )
    if votes >= min_votes:
        if posterior >= target_confidence:
            return ItemDecision(state="accepted", posterior=posterior)
        if posterior <= 1.0 - target_confidence:
            return ItemDecision(state="rejected", posterior=posterior)
    if votes >= max_votes:
        return ItemDecision(state="disputed", posterior=posterior)
    return ItemDecision(state="open", posterior=posterior)


def confidence_table(
    settled: Sequence[tuple[int, int, bool]], *, smoothing: float = 1.0
) -> dict[tuple[int, int], float]:
    """ImageNet's per-synset table: P(right | y yes and n no votes), from an initial sample.

    `settled` holds (yes votes, no votes, right) for each sampled candidate of one synset, each
    with many votes (ImageNet asked ten or more), `right` being what the caller takes as its
    truth (gold, or the sample's own majority as ImageNet had to). The votes on an item are taken
    as exchangeable, so an item with Y yes and N no also stands for every (y, n) with y <= Y and
    n <= N: weighted by the chance that y + n of its votes drawn at random hold y yes
    (hypergeometric), it counts toward P(right | y, n) for items asked only y + n times.

    Each cell is (right weight + smoothing / 2) / (weight + smoothing): with little evidence it
    stays near one half rather than claiming certainty. Cells no item reaches are absent."""
    if smoothing < 0:
        raise ValueError(f"smoothing must be 0 or more, not {smoothing}.")
    right_weight: defaultdict[tuple[int, int], float] = defaultdict(float)
    weight: defaultdict[tuple[int, int], float] = defaultdict(float)
    for yes_total, no_total, right in settled:
        if yes_total < 0 or no_total < 0:
            raise ValueError(f"Vote counts must be 0 or more, not ({yes_total}, {no_total}).")
        for yes in range(yes_total + 1):
            for no in range(no_total + 1):
                if yes == no == 0:
                    continue
                share = (
                    math.comb(yes_total, yes)
                    * math.comb(no_total, no)
                    / math.comb(yes_total + no_total, yes + no)
                )
                weight[(yes, no)] += share
                if right:
                    right_weight[(yes, no)] += share
    return {
        cell: (right_weight[cell] + smoothing / 2.0) / (total + smoothing)
        for cell, total in weight.items()
        if total + smoothing > 0
    }
