"""Annotator reliability: each volunteer's estimated accuracy in a project.

The estimate is a Beta posterior mean: a prior worth PRIOR_STRENGTH answers at PRIOR_ACCURACY,
plus gold answers (weight GOLD_WEIGHT: their truth is known) and agreement with decisions
(weight 1: the volunteer's own vote helped make the decision, so it is the weaker evidence).
Counters change in the transactions that change their causes; nothing is recomputed in full.

Lock order: stats rows are locked last (after any image row) and in user-id order.
"""

import random
from collections import defaultdict
from dataclasses import dataclass

from django.utils import timezone

from annotate import rows
from annotate.models import AnnotatorStats, Decision, Project, User, Vote

PRIOR_ACCURACY = 0.7
PRIOR_STRENGTH = 4.0
GOLD_WEIGHT = 2.0


def estimated_accuracy(*, gold_votes: int, gold_correct: int, decided_votes: int, agreed_votes: int) -> float:
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


_STATS_FIELDS = ("votes", "decided_votes", "agreed_votes", "gold_votes", "gold_correct", "estimated_accuracy")


def only_votes_added(delta: StatsDelta) -> bool:
    return delta.votes > 0 and delta == StatsDelta(votes=delta.votes)


def votes_added_statement(*, project_id: int, user_id: int, votes: int) -> tuple[str, list]:
    """The common case of stats_apply(), a vote that decides nothing, as one statement: the
    estimate does not depend on the vote count, so adding to it (or starting the volunteer's
    record at the prior) is all there is to do."""
    now = rows.moment(timezone.now())
    return (
        "INSERT INTO annotate_annotatorstats (created_at, updated_at, project_id, user_id, votes,"
        " decided_votes, agreed_votes, gold_votes, gold_correct, estimated_accuracy)"
        " VALUES (%s, %s, %s, %s, %s, 0, 0, 0, 0, %s) ON CONFLICT (project_id, user_id)"
        " DO UPDATE SET votes = annotate_annotatorstats.votes + excluded.votes",
        [now, now, project_id, user_id, votes, PRIOR_ACCURACY],
    )


def stats_apply(*, project_id: int, deltas: dict[int, StatsDelta]) -> None:
    """Add `deltas` (by user id) to the project's annotator stats and re-estimate accuracy.

    Call inside a transaction; rows are locked in user-id order so two decisions sharing
    voters never deadlock.
    """
    if not deltas:
        return
    if len(deltas) == 1:
        (user_id, delta), = deltas.items()
        if only_votes_added(delta):
            rows.execute(*votes_added_statement(project_id=project_id, user_id=user_id, votes=delta.votes))
            return
    user_ids = sorted(deltas)
    stats_columns = rows.columns(AnnotatorStats, "s")
    marks = ", ".join(["%s"] * len(user_ids))
    found = rows.fetch_all(
        f"SELECT {stats_columns.sql} FROM annotate_annotatorstats s WHERE s.project_id = %s"
        f" AND s.user_id IN ({marks}) ORDER BY s.user_id{rows.lock()}",
        [project_id, *user_ids],
    )
    by_user = {row.user_id: row for row in map(stats_columns.build, found)}
    for user_id in user_ids:
        if user_id not in by_user:  # a volunteer's first vote in this project
            by_user[user_id], _ = AnnotatorStats.objects.select_for_update().get_or_create(
                project_id=project_id, user_id=user_id, defaults={"estimated_accuracy": PRIOR_ACCURACY}
            )
    changed = []
    for user_id in user_ids:
        row, delta = by_user[user_id], deltas[user_id]
        row.votes = max(0, row.votes + delta.votes)
        row.decided_votes = max(0, row.decided_votes + delta.decided_votes)
        row.agreed_votes = max(0, row.agreed_votes + delta.agreed_votes)
        row.gold_votes += delta.gold_votes
        row.gold_correct += delta.gold_correct
        row.estimated_accuracy = estimated_accuracy(
            gold_votes=row.gold_votes,
            gold_correct=row.gold_correct,
            decided_votes=row.decided_votes,
            agreed_votes=row.agreed_votes,
        )
        changed.append([*(getattr(row, field) for field in _STATS_FIELDS), row.pk])
    # The rows are locked above, in user-id order.
    assignments = ", ".join(f"{field} = %s" for field in _STATS_FIELDS)
    rows.execute_many(f"UPDATE annotate_annotatorstats SET {assignments} WHERE id = %s", changed)


def _matches(vote_label_id: int | None, decision: Decision | None) -> bool:
    return decision is not None and vote_label_id == decision.label_id


def decision_deltas(
    *, image_id: int, previous: Decision | None, current: Decision,
    votes: list[tuple[int, int | None]] | None = None,
) -> dict[int, StatsDelta]:
    """How a new decision changes the record of everyone who voted on the image (`votes`:
    its (user id, label id) votes, read here when not given)."""
    if votes is None:
        votes = list(Vote.objects.filter(image_id=image_id).values_list("user_id", "label_id"))
    deltas: dict[int, StatsDelta] = defaultdict(StatsDelta)
    for user_id, label_id in votes:
        delta = deltas[user_id]
        if previous is None:
            delta.decided_votes += 1
        delta.agreed_votes += int(_matches(label_id, current)) - int(_matches(label_id, previous))
    return deltas


def accuracies(*, project_id: int, user_ids: list[int]) -> dict[int, float]:
    """Estimated accuracy of each user (the prior for those with no record yet)."""
    known = {}
    if user_ids:
        marks = ", ".join(["%s"] * len(user_ids))
        known = dict(rows.fetch_all(
            "SELECT user_id, estimated_accuracy FROM annotate_annotatorstats"
            f" WHERE project_id = %s AND user_id IN ({marks})",
            [project_id, *user_ids],
        ))
    return {user_id: known.get(user_id, PRIOR_ACCURACY) for user_id in user_ids}


def gold_rate_for(*, project: Project, stats: AnnotatorStats | None) -> float:
    """The share of gold images to serve this volunteer now: high while new, falling with
    experience toward `gold_rate_min`; back at `gold_rate` while estimated unreliable."""
    if project.gold_rate <= 0:
        return 0.0
    if stats is None:
        return project.gold_rate
    if stats.estimated_accuracy < project.reliability_threshold:
        return project.gold_rate
    decay = 0.5 ** (stats.votes / project.gold_half_life)
    return project.gold_rate_min + (project.gold_rate - project.gold_rate_min) * decay


def gold_due(*, project: Project, user: User, rng: random.Random | None = None) -> bool:
    """Whether this lease should be a gold image, drawn at the volunteer's gold rate."""
    if project.gold_rate <= 0:
        return False
    stats_columns = rows.columns(AnnotatorStats, "s")
    row = rows.fetch_one(
        f"SELECT {stats_columns.sql} FROM annotate_annotatorstats s WHERE s.project_id = %s AND s.user_id = %s",
        [project.pk, user.pk],
    )
    stats = None if row is None else stats_columns.build(row)
    return (rng or random).random() < gold_rate_for(project=project, stats=stats)
