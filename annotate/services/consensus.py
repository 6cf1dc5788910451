"""Consensus: when do the votes on an image decide it (PRODUCT.md section 3).

Two rules. *majority*: a share of the votes (and, when the project says so, a unique plurality
at `max_votes`). *dynamic*: the calibrated posterior over the true answer
(annotate.services.posterior: each volunteer a confusion matrix shrunk toward the one-coin model
with the crowd's mistakes, the model one bounded voter), decided once the top answer reaches the
project's target, so easy images finish with fewer votes and hard ones get more. The model
never decides an answer no volunteer gave, nor one only volunteers below
`reliability_threshold` gave (issue 16).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.utils import timezone

from annotate import rows
from annotate.models import NONE_KEY, Decision, Image, Project, User
from annotate.rows import decisions as decision_sql
from annotate.services import confusions, ml_suggestions, posterior, reliability
from annotate.services.reliability import StatsDelta

# The key for "none of these" among vote counts (a vote whose label is null).
NONE_OF_THESE = None


@dataclass(frozen=True)
class Outcome:
    """What the votes say. `state` is the image's next state; label None means "none of these".
    `model_share`: the share of the decided answer's probability the model added;
    `model_decided`: whether that was most of it."""

    state: str
    label_id: int | None = None
    confidence: float | None = None
    model_share: float = 0.0
    model_decided: bool = False


def majority_outcome(
    counts: Counter[int | None],
    *,
    min_votes: int,
    max_votes: int,
    agreement: float,
    plurality_at_max: bool = False,
) -> Outcome:
    """Majority rule: decided once at least `min_votes` votes are in and one answer holds at
    least `agreement` of them and strictly more than any other; at `max_votes`, decided by a
    unique plurality when `plurality_at_max`, else disputed."""
    total = sum(counts.values())
    if total >= min_votes and counts:
        ranked = counts.most_common(2)
        top_label, top_count = ranked[0]
        share = top_count / total
        unique_top = len(ranked) == 1 or ranked[1][1] < top_count
        if unique_top and (share >= agreement or (plurality_at_max and total >= max_votes)):
            state = Image.State.EXCLUDED if top_label is NONE_OF_THESE else Image.State.CONSENSUS
            return Outcome(state=state, label_id=top_label, confidence=share)
    if total >= max_votes:
        return Outcome(state=Image.State.DISPUTED)
    return Outcome(state=Image.State.OPEN)


def one_coin_posterior(
    answers: list[int], accuracies: list[float], prior: np.ndarray
) -> np.ndarray:
    """Posterior over K answers given each vote's answer index and its voter's accuracy, under
    the one-coin model (each wrong answer equally likely): the starting point of re-aggregation.

    An accuracy at or below chance (1/K) carries no information, so it is clipped there: a
    spammer's votes neither help nor, as an "anti-expert", flip the answer.
    """
    k = len(prior)
    log_posterior = np.log(np.clip(np.asarray(prior, dtype=float), 1e-12, None))
    for answer, accuracy in zip(answers, accuracies, strict=False):
        accuracy = min(max(accuracy, 1.0 / k), 0.995)
        wrong = (1.0 - accuracy) / (k - 1)
        log_posterior += np.log(wrong)
        log_posterior[answer] += np.log(accuracy) - np.log(wrong)
    found: np.ndarray = np.exp(log_posterior - log_posterior.max())
    normalized: np.ndarray = found / found.sum()
    return normalized


def dynamic_outcome(
    posterior: np.ndarray,
    answer_keys: Sequence[int | None],
    *,
    votes: int,
    min_votes: int,
    max_votes: int,
    target_confidence: float,
    allowed: set[int | None] | None = None,
) -> Outcome:
    """Decided once `votes` reach `min_votes` and the top answer's probability the target;
    `allowed`: the answers that may be decided (None: any)."""
    top = int(np.argmax(posterior))
    confidence = float(posterior[top])
    label_id = answer_keys[top] if top < len(answer_keys) else -1  # -1: the other answers
    may = label_id != -1 and (allowed is None or label_id in allowed)
    if votes >= min_votes and confidence >= target_confidence and may:
        state = Image.State.EXCLUDED if label_id is NONE_OF_THESE else Image.State.CONSENSUS
        return Outcome(state=state, label_id=label_id, confidence=confidence)
    if votes >= max_votes:
        return Outcome(state=Image.State.DISPUTED, confidence=confidence)
    return Outcome(state=Image.State.OPEN, confidence=confidence)


def answer_keys_for(*, project: Project) -> list[int | None]:
    """The answers a vote can give, in a fixed order: the labels, then "none of these"."""
    ids = rows.fetch_all(decision_sql.label_ids(), [project.pk])
    return [*(label_id for (label_id,) in ids), None]


def image_votes(*, image_id: int) -> list[tuple[int, int | None]]:
    """(user id, label id) of every vote on the image."""
    return rows.fetch_all(decision_sql.image_votes(), [image_id])


def answer_prior(*, project: Project, answer_keys: list[int | None]) -> np.ndarray:
    """The prior over answers: the project's answer frequencies among decided images (from the
    last re-aggregation), smoothed so that no answer starts impossible."""
    counts = project.answer_counts or {}
    weights = np.array(
        [1.0 + counts.get("none" if key is None else str(key), 0) for key in answer_keys]
    )
    frequencies: np.ndarray = weights / weights.sum()
    return frequencies


def _label(key: int) -> int | None:
    return None if key == NONE_KEY else key


def image_posterior(
    *, image_id: int, project: Project, votes: list[tuple[int, int | None]]
) -> posterior.Evidence:
    """The calibrated posterior of the image's true answer, with and without the model, from
    its (user id, label id) `votes` and what the project knows now of its volunteers."""
    label_keys = answer_keys_for(project=project)
    all_keys = [confusions.answer_key(label) for label in label_keys]
    frequencies = answer_prior(project=project, answer_keys=label_keys)
    found = (
        ml_suggestions.image_model_vote(image_id=image_id)
        if project.model_max_accuracy > 0
        else None
    )
    model, holdout = found if found else (None, None)
    accuracy = reliability.accuracies(project_id=project.pk, user_ids=[u for u, _ in votes])
    return posterior.image_evidence(
        project=project,
        all_keys=all_keys,
        prior_weights=dict(zip(all_keys, frequencies.tolist(), strict=True)),
        votes=[(user_id, confusions.answer_key(label)) for user_id, label in votes],
        accuracy=accuracy,
        model=model,
        model_holdout=holdout,
    )


# One vote decides alone (without the model voting for its answer) only when its voter's
# estimate rests on at least LONE_MIN_ANSWERS counted answers (reliability.counted_answers).
# Before that an estimate reads 0.9 after 4 lucky gold answers, and the target picks the
# estimates that came out high: on the consensus bench's crowd (c), one-vote decisions
# claimed 0.925 and were right 0.78.
LONE_MIN_ANSWERS = 10.0


def _lone_and_unproven(
    *, project: Project, votes: list[tuple[int, int | None]], model_key: int | None
) -> bool:
    if len(votes) != 1 or project.max_votes <= 1:
        return False
    user_id, label_id = votes[0]
    if model_key is not None and model_key == confusions.answer_key(label_id):
        return False
    answers = reliability.counted_answers(project_id=project.pk, user_id=user_id)
    return answers < LONE_MIN_ANSWERS


def dynamic_image_outcome(
    *, image: Image, project: Project, votes: list[tuple[int, int | None]]
) -> Outcome:
    """The dynamic rule on the image's calibrated posterior, the model a bounded voter: what
    the model adds counts only toward an answer some volunteer gave, one of them at or above
    `reliability_threshold`; otherwise the volunteers' votes decide alone; one vote alone
    only from a volunteer with LONE_MIN_ANSWERS counted answers."""
    evidence = image_posterior(image_id=image.pk, project=project, votes=votes)
    keys = [_label(key) for key in evidence.keys]
    unproven = _lone_and_unproven(project=project, votes=votes, model_key=evidence.model_key)

    def outcome(posterior: np.ndarray, allowed: set[int]) -> Outcome:
        if unproven:
            allowed = set()
        return dynamic_outcome(
            posterior,
            keys,
            votes=len(votes),
            min_votes=project.min_votes,
            max_votes=project.max_votes,
            target_confidence=project.target_confidence,
            allowed={_label(key) for key in allowed},
        )

    if evidence.model_key is None:
        return outcome(evidence.humans_only, evidence.voted_keys)
    with_model = outcome(evidence.with_model, evidence.reliable_keys)
    if not decides(with_model):
        # Like any voter the model may hold a decision back (another vote is asked for); it
        # never forces one.
        return with_model
    index = evidence.keys.index(confusions.answer_key(with_model.label_id))
    claimed = float(evidence.with_model[index])
    share = max(0.0, claimed - float(evidence.humans_only[index])) / claimed
    return Outcome(
        state=with_model.state,
        label_id=with_model.label_id,
        confidence=with_model.confidence,
        model_share=share,
        model_decided=share >= 0.5,
    )


def image_outcome(
    *, image: Image, project: Project, votes: list[tuple[int, int | None]]
) -> tuple[Outcome, str]:
    """What the project's policy makes of the image's (user id, label id) votes, and the
    decision rule that applies."""
    if project.mode == Project.Mode.DYNAMIC:
        return dynamic_image_outcome(image=image, project=project, votes=votes), (
            Decision.Rule.DYNAMIC
        )
    counts = Counter(label_id for _, label_id in votes)
    outcome = majority_outcome(
        counts,
        min_votes=project.min_votes,
        max_votes=project.max_votes,
        agreement=project.agreement,
        plurality_at_max=project.plurality_at_max_votes,
    )
    return outcome, Decision.Rule.MAJORITY


def decides(outcome: Outcome) -> bool:
    return outcome.state in (Image.State.CONSENSUS, Image.State.EXCLUDED)


def decision_record(
    *,
    image: Image,
    label_id: int | None,
    rule: str,
    confidence: float | None = None,
    votes_count: int = 0,
    decided_by: User | None = None,
    also: dict[int, StatsDelta] | None = None,
    votes: list[tuple[int, int | None]] | None = None,
) -> Decision:
    """Make `label_id` (None: excluded) the image's current decision, keeping the old one as
    history, and update the voters' agreement (plus the `also` stats changes, in the same
    pass). `votes`: the image's (user id, label id) votes when the caller has read them. Call
    while holding the image row lock."""
    previous = current_decision(image_id=image.pk)
    decision_retire(previous)
    writes = decision_writes(
        image=image,
        previous=previous,
        label_id=label_id,
        rule=rule,
        confidence=confidence,
        votes_count=votes_count,
        decided_by=decided_by,
        also=also,
        votes=votes,
    )
    returned = rows.write_together(writes.statements)
    assert returned is not None  # the decision's INSERT ... RETURNING gives its row
    rows.inserted(writes.decision, returned)
    reliability.stats_apply(project_id=image.project_id, deltas=writes.stats_left)
    return writes.decision


def decision_retire(previous: Decision | None) -> None:
    """Make the image's current decision history, before a new one is written: only one
    decision per image may be current, and the database checks that row by row."""
    if previous is not None:
        rows.execute(
            decision_sql.retire_decision(), [False, rows.moment(timezone.now()), previous.pk]
        )


@dataclass
class DecisionWrites:
    decision: Decision  # not saved yet
    # Its INSERT (... RETURNING id) first, then the voters' stats where one upsert does them:
    # to run with rows.write_together(), alone or after other writes.
    statements: list[tuple[str, list[Any]]]
    # Stats changes that take something away, for reliability.stats_apply() afterwards.
    stats_left: dict[int, StatsDelta]


def decision_writes(
    *,
    image: Image,
    previous: Decision | None,
    label_id: int | None,
    rule: str,
    confidence: float | None,
    votes_count: int,
    decided_by: User | None = None,
    also: dict[int, StatsDelta] | None = None,
    votes: list[tuple[int, int | None]] | None = None,
) -> DecisionWrites:
    """The writes that record a new current decision for the image, replacing `previous` (its
    current decision, read under the image lock, and already retired by decision_retire()),
    and that update its voters' records, merged with the `also` changes."""
    if rule not in Decision.Rule.values:
        raise ValueError(f"unknown decision rule {rule!r}")
    # The database's constraints (one current decision per image; a label or excluded) guard
    # this row; a model full_clean() would cost a query per constraint on the voting path.
    decision = Decision(
        image=image,
        label_id=label_id,
        excluded=label_id is None,
        rule=rule,
        confidence=confidence,
        votes_count=votes_count,
        decided_by=decided_by,
        replaces=previous,
    )
    if votes is None:
        votes = reliability.image_votes(image_id=image.pk)
    deltas = reliability.decision_deltas(
        image_id=image.pk, previous=previous, current=decision, votes=votes
    )
    for user_id, delta in (also or {}).items():
        merged = deltas.setdefault(user_id, StatsDelta())
        for field in ("votes", "decided_votes", "agreed_votes", "gold_votes", "gold_correct"):
            setattr(merged, field, getattr(merged, field) + getattr(delta, field))
    statements = [rows.insert_statement(decision)]
    stats = reliability.stats_added_statement(project_id=image.project_id, deltas=deltas)
    if stats is not None:
        statements.append(stats)
    return DecisionWrites(decision, statements, {} if stats is not None else dict(deltas))


def current_decision(*, image_id: int) -> Decision | None:
    row = rows.fetch_one(decision_sql.current_decision(), [image_id])
    return None if row is None else rows.columns(Decision, "d").build(row)
