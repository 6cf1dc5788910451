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

from django.db.models import F

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


def stats_apply(*, project_id: int, deltas: dict[int, StatsDelta]) -> None:
    """Add `deltas` (by user id) to the project's annotator stats and re-estimate accuracy.

    Call inside a transaction; rows are locked in user-id order so two decisions sharing
    voters never deadlock.
    """
    if not deltas:
        return
    if len(deltas) == 1:
        (user_id, delta), = deltas.items()
        if delta == StatsDelta(votes=delta.votes):
            # The common case, a vote that decides nothing: the estimate does not depend on
            # the vote count, so one UPDATE does it.
            if AnnotatorStats.objects.filter(project_id=project_id, user_id=user_id).update(
                votes=F("votes") + delta.votes
            ):
                return
    user_ids = sorted(deltas)
    rows = {
        row.user_id: row
        for row in AnnotatorStats.objects.select_for_update()
        .filter(project_id=project_id, user_id__in=user_ids)
        .order_by("user_id")
    }
    missing = [user_id for user_id in user_ids if user_id not in rows]
    for user_id in missing:
        rows[user_id], _ = AnnotatorStats.objects.select_for_update().get_or_create(
            project_id=project_id, user_id=user_id, defaults={"estimated_accuracy": PRIOR_ACCURACY}
        )
    for user_id in user_ids:
        row, delta = rows[user_id], deltas[user_id]
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
    # One UPDATE for all of them (the rows are locked above, in user-id order).
    AnnotatorStats.objects.bulk_update(
        [rows[user_id] for user_id in user_ids],
        ["votes", "decided_votes", "agreed_votes", "gold_votes", "gold_correct", "estimated_accuracy"],
    )


def _matches(vote_label_id: int | None, decision: Decision | None) -> bool:
    return decision is not None and vote_label_id == decision.label_id


def decision_deltas(
    *, image_id: int, previous: Decision | None, current: Decision
) -> dict[int, StatsDelta]:
    """How a new decision changes the record of everyone who voted on the image."""
    deltas: dict[int, StatsDelta] = defaultdict(StatsDelta)
    for user_id, label_id in Vote.objects.filter(image_id=image_id).values_list("user_id", "label_id"):
        delta = deltas[user_id]
        if previous is None:
            delta.decided_votes += 1
        delta.agreed_votes += int(_matches(label_id, current)) - int(_matches(label_id, previous))
    return deltas


def accuracies(*, project_id: int, user_ids: list[int]) -> dict[int, float]:
    """Estimated accuracy of each user (the prior for those with no record yet)."""
    known = dict(
        AnnotatorStats.objects.filter(project_id=project_id, user_id__in=user_ids).values_list(
            "user_id", "estimated_accuracy"
        )
    )
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
    stats = AnnotatorStats.objects.filter(project=project, user=user).first()
    return (rng or random).random() < gold_rate_for(project=project, stats=stats)
