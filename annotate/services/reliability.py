"""Annotator reliability: each volunteer's estimated accuracy in a project.

The estimate is a Beta posterior mean: a prior worth PRIOR_STRENGTH answers at PRIOR_ACCURACY,
plus gold answers (weight GOLD_WEIGHT: their truth is known) and agreement with decisions that
stand without the volunteer's own vote (leave-one-out, weight 1: a decision's vote never
vouches for itself). The same answers feed the volunteer's confusion counts
(annotate.services.confusions).
Counters change in the transactions that change their causes; nothing is recomputed in full.

Lock order: stats rows are locked last (after any image row) and in user-id order.
"""

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone

from annotate import rows
from annotate.models import AnnotatorStats, Decision, Project, User, Vote
from annotate.rows import stats as stats_sql
from annotate.rows.stats import COUNT_FIELDS, STATS_FIELDS
from annotate.services import confusions

PRIOR_ACCURACY = 0.7
PRIOR_STRENGTH = 4.0
GOLD_WEIGHT = confusions.GOLD_WEIGHT


def estimated_accuracy(
    *, gold_votes: int, gold_correct: int, decided_votes: int, agreed_votes: int
) -> float:
    hits = PRIOR_ACCURACY * PRIOR_STRENGTH + GOLD_WEIGHT * gold_correct + agreed_votes
    total = PRIOR_STRENGTH + GOLD_WEIGHT * gold_votes + decided_votes
    return hits / total


@dataclass
class StatsDelta:
    votes: int = 0
    decided_votes: int = 0
    agreed_votes: int = 0
    gold_votes: int = 0
    gold_correct: int = 0


# The estimate's constants as the stats statements take them (annotate.rows.stats).
_ESTIMATE = (PRIOR_ACCURACY * PRIOR_STRENGTH, PRIOR_STRENGTH, GOLD_WEIGHT)


def stats_added_statement(
    *, project_id: int, deltas: dict[int, StatsDelta]
) -> tuple[str, list[Any]] | None:
    """stats_apply() as one statement, for deltas that only add (None when one takes away):
    an upsert that adds each delta and re-estimates the accuracy in the database, a volunteer
    with no record yet starting from zero. Its rows are locked in user-id order, so it may run
    inside rows.write_together() with other writes.

    (Why not for deltas that take away: the database checks each proposed row against the
    counters' `>= 0` constraints before it finds the conflict, so a negative delta cannot
    travel in the row; stats_apply() reads, locks and updates instead.)"""
    if not deltas or any(
        getattr(delta, field) < 0 for delta in deltas.values() for field in COUNT_FIELDS
    ):
        return None
    now = rows.moment(timezone.now())
    records = [
        (
            user_id,
            *(getattr(deltas[user_id], field) for field in COUNT_FIELDS),
            estimated_accuracy(
                gold_votes=deltas[user_id].gold_votes,
                gold_correct=deltas[user_id].gold_correct,
                decided_votes=deltas[user_id].decided_votes,
                agreed_votes=deltas[user_id].agreed_votes,
            ),
        )
        for user_id in sorted(deltas)
    ]
    if connection.vendor == "postgresql":
        # Each array as its text form: psycopg's list adaptation cost more than the statement.
        columns = ("{" + ",".join(map(repr, column)) + "}" for column in zip(*records, strict=True))
        return stats_sql.add_from_arrays(*_ESTIMATE), [now, now, project_id, *columns]
    params = [value for record in records for value in (now, now, project_id, *record)]
    return stats_sql.add_values(len(records), *_ESTIMATE), params


def stats_apply(*, project_id: int, deltas: dict[int, StatsDelta]) -> None:
    """Add `deltas` (by user id) to the project's annotator stats and re-estimate accuracy;
    counters never go below zero.

    Call inside a transaction; rows are locked in user-id order so two decisions sharing
    voters never deadlock.
    """
    added = stats_added_statement(project_id=project_id, deltas=deltas)
    if added is not None:
        rows.execute(*added)
        return
    if not deltas:
        return
    user_ids = sorted(deltas)
    now = rows.moment(timezone.now())
    # Volunteers with no record yet start at zero and the prior; then every row is read
    # locked, in user-id order.
    rows.execute(
        stats_sql.create_missing(len(user_ids)),
        [
            value
            for user_id in user_ids
            for value in (now, now, project_id, user_id, PRIOR_ACCURACY)
        ],
    )
    stats_columns = rows.columns(AnnotatorStats, "s")
    found = rows.fetch_all(stats_sql.locked_records(len(user_ids)), [project_id, *user_ids])
    changed = []
    for row in map(stats_columns.build, found):
        delta = deltas[row.user_id]
        for field in COUNT_FIELDS:
            setattr(row, field, max(0, getattr(row, field) + getattr(delta, field)))
        row.estimated_accuracy = estimated_accuracy(
            gold_votes=row.gold_votes,
            gold_correct=row.gold_correct,
            decided_votes=row.decided_votes,
            agreed_votes=row.agreed_votes,
        )
        changed.append([*(getattr(row, field) for field in STATS_FIELDS), now, row.pk])
    rows.execute_many(stats_sql.update_record(), changed)


def _matches(vote_label_id: int | None, decision: Decision | None) -> bool:
    return decision is not None and vote_label_id == decision.label_id


# Decisions that no vote made: nothing was counted for their voters.
_NOT_FROM_VOTES = (Decision.Rule.GOLD, Decision.Rule.VERIFIED)


def counted_voters(*, votes: list[tuple[int, int | None]], decision: Decision) -> set[int]:
    """The voters whose record a decision counts: for a reviewer's, every one; for a crowd
    decision, those it stands without (leave-one-out, confusions.standing_voters)."""
    if decision.rule in _NOT_FROM_VOTES:
        return set()
    if decision.rule == Decision.Rule.REVIEW:
        return {user_id for user_id, _ in votes}
    return set(confusions.standing_voters(votes, decision.label_id))


def decision_deltas(
    *,
    image_id: int,
    previous: Decision | None,
    current: Decision,
    votes: list[tuple[int, int | None]] | None = None,
) -> dict[int, StatsDelta]:
    """How a new decision changes the record of everyone who voted on the image (`votes`:
    its (user id, label id) votes, read here when not given): what the previous decision
    counted is taken back, and the new one counts the voters it stands without."""
    if votes is None:
        votes = image_votes(image_id=image_id)
    deltas: dict[int, StatsDelta] = defaultdict(StatsDelta)
    before = set() if previous is None else counted_voters(votes=votes, decision=previous)
    now = counted_voters(votes=votes, decision=current)
    for user_id, label_id in votes:
        delta = deltas[user_id]
        if user_id in before:
            delta.decided_votes -= 1
            delta.agreed_votes -= int(_matches(label_id, previous))
        if user_id in now:
            delta.decided_votes += 1
            delta.agreed_votes += int(_matches(label_id, current))
    return deltas


def image_votes(*, image_id: int) -> list[tuple[int, int | None]]:
    return list(Vote.objects.filter(image_id=image_id).values_list("user_id", "label_id"))


def accuracies(*, project_id: int, user_ids: list[int]) -> dict[int, float]:
    """Estimated accuracy of each user (the prior for those with no record yet)."""
    known = {}
    if user_ids:
        known = dict(rows.fetch_all(stats_sql.accuracies(len(user_ids)), [project_id, *user_ids]))
    return {user_id: known.get(user_id, PRIOR_ACCURACY) for user_id in user_ids}


def counted_answers(*, project_id: int, user_id: int) -> float:
    """How many answers a volunteer's estimate rests on: gold (weighted) and decisions that
    stand without their vote."""
    row = (
        AnnotatorStats.objects.filter(project_id=project_id, user_id=user_id)
        .values_list("gold_votes", "decided_votes")
        .first()
    )
    return 0.0 if row is None else GOLD_WEIGHT * row[0] + row[1]


def gold_rate_for(*, project: Project, stats: AnnotatorStats | None) -> float:
    """The share of gold images to serve this volunteer now: high while new, falling with
    experience toward `gold_rate_min`; back at `gold_rate` while estimated unreliable."""
    if project.gold_rate <= 0:
        return 0.0
    if stats is None:
        return project.gold_rate
    if stats.estimated_accuracy < project.reliability_threshold:
        return project.gold_rate
    decay: float = 0.5 ** (stats.votes / project.gold_half_life)
    return project.gold_rate_min + (project.gold_rate - project.gold_rate_min) * decay


def gold_due(*, project: Project, user: User, rng: random.Random | None = None) -> bool:
    """Whether this lease should be a gold image, drawn at the volunteer's gold rate.

    The draw is made first against the project's `gold_rate`, which no volunteer's rate
    exceeds: most leases then need no read of the volunteer's record (and a project without
    gold finds none to serve)."""
    draw = (rng or random).random()
    if draw >= project.gold_rate:
        return False
    row = rows.fetch_one(stats_sql.record(), [project.pk, user.pk])
    stats = None if row is None else rows.columns(AnnotatorStats, "s").build(row)
    return draw < gold_rate_for(project=project, stats=stats)
