"""Annotator reliability: each volunteer's estimated accuracy in a project.

The estimate is a Beta posterior mean: a prior worth some answers at some accuracy (the
project's, fitted to its volunteers at each re-aggregation, prior_refit(); PRIOR_STRENGTH
answers at PRIOR_ACCURACY until then), plus gold answers (weight GOLD_WEIGHT: their truth is
known) and agreement with decisions that stand without the volunteer's own vote (leave-one-out,
weight 1: a decision's vote never vouches for itself). The same answers feed the volunteer's
confusion counts (annotate.services.confusions).
Counters change in the transactions that change their causes; nothing is recomputed in full.

Lock order: stats rows are locked last (after any image row) and in user-id order.
"""

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import F
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
    *,
    gold_votes: int,
    gold_correct: int,
    decided_votes: int,
    agreed_votes: int,
    prior: tuple[float, float] = (PRIOR_ACCURACY, PRIOR_STRENGTH),
) -> float:
    """`prior`: (mean, strength), the project's (project_prior())."""
    mean, strength = prior
    hits = mean * strength + GOLD_WEIGHT * gold_correct + agreed_votes
    total = strength + GOLD_WEIGHT * gold_votes + decided_votes
    return hits / total


def project_prior(project: Project) -> tuple[float, float]:
    return project.reliability_prior_accuracy, project.reliability_prior_strength


# The fitted prior's bounds (in answers), and what a fit needs: volunteers with at least
# FIT_MIN_ANSWERS counted answers each, FIT_MIN_VOLUNTEERS of them.
MIN_STRENGTH, MAX_STRENGTH = 2.0, 100.0
FIT_MIN_ANSWERS, FIT_MIN_VOLUNTEERS = 5.0, 5


def fit_prior(hits: list[float], answers: list[float]) -> tuple[float, float] | None:
    """The empirical-Bayes Beta prior of the volunteers' accuracy, from each one's counted
    answers and hits (gold weighted as in the estimate): the mean is the pooled rate, the
    strength s from the spread of their rates beyond the binomial noise of their answers
    (the moment estimator of the beta-binomial's intra-class correlation rho = 1 / (s + 1):
    E[n (p - m)^2] = m (1 - m) (1 + (n - 1) rho)). None when too few volunteers say.

    A fixed weak prior lets some 20 answers read a volunteer of true accuracy 0.65 as 0.9 (the
    consensus bench's crowd (c)); the crowd's own spread says how far they may move it."""
    found = [(x, n) for x, n in zip(hits, answers, strict=True) if n >= FIT_MIN_ANSWERS]
    if len(found) < FIT_MIN_VOLUNTEERS:
        return None
    total = sum(n for _, n in found)
    mean = sum(x for x, _ in found) / total
    if not 0.0 < mean < 1.0:
        return None
    spread = sum((x - n * mean) ** 2 / n for x, n in found) / (mean * (1.0 - mean))
    rho = (spread - len(found)) / max(sum(n - 1.0 for _, n in found), 1e-9)
    rho = min(max(rho, 1.0 / (MAX_STRENGTH + 1.0)), 1.0 / (MIN_STRENGTH + 1.0))
    return mean, 1.0 / rho - 1.0


def prior_refit(*, project: Project) -> tuple[float, float]:
    """Fit the project's reliability prior to its volunteers' records (fit_prior(); kept as
    it was when too few say) and re-estimate every record with it. Returns the prior."""
    records = list(
        AnnotatorStats.objects.filter(project=project).values_list(
            "gold_votes", "gold_correct", "decided_votes", "agreed_votes"
        )
    )
    fitted = fit_prior(
        [GOLD_WEIGHT * correct + agreed for _, correct, _, agreed in records],
        [GOLD_WEIGHT * gold + decided for gold, _, decided, _ in records],
    )
    if fitted is None:
        return project_prior(project)
    mean, strength = fitted
    Project.objects.filter(pk=project.pk).update(
        reliability_prior_accuracy=mean, reliability_prior_strength=strength
    )
    project.reliability_prior_accuracy, project.reliability_prior_strength = mean, strength
    AnnotatorStats.objects.filter(project=project).update(
        estimated_accuracy=(mean * strength + GOLD_WEIGHT * F("gold_correct") + F("agreed_votes"))
        / (strength + GOLD_WEIGHT * F("gold_votes") + F("decided_votes"))
    )
    return fitted


@dataclass
class StatsDelta:
    votes: int = 0
    decided_votes: int = 0
    agreed_votes: int = 0
    gold_votes: int = 0
    gold_correct: int = 0


def stats_added_statement(
    *,
    project_id: int,
    deltas: dict[int, StatsDelta],
    prior: tuple[float, float] = (PRIOR_ACCURACY, PRIOR_STRENGTH),
) -> tuple[str, list[Any]] | None:
    """stats_apply() as one statement, for deltas that only add (None when one takes away):
    an upsert that adds each delta and re-estimates the accuracy in the database, a volunteer
    with no record yet starting from zero. Its rows are locked in user-id order, so it may run
    inside rows.write_together() with other writes.

    (Why not for deltas that take away: the database checks each proposed row against the
    counters' `>= 0` constraints before it finds the conflict, so a negative delta cannot
    travel in the row; stats_apply() reads, locks and updates instead.)

    An existing record is re-estimated with the project's prior, read in the statement; a new
    one's estimate, from its deltas alone, with `prior` (the project's, where the caller
    holds it)."""
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
                prior=prior,
            ),
        )
        for user_id in sorted(deltas)
    ]
    if connection.vendor == "postgresql":
        # Each array as its text form: psycopg's list adaptation cost more than the statement.
        columns = ("{" + ",".join(map(repr, column)) + "}" for column in zip(*records, strict=True))
        return stats_sql.add_from_arrays(GOLD_WEIGHT), [now, now, project_id, *columns]
    params = [value for record in records for value in (now, now, project_id, *record)]
    return stats_sql.add_values(len(records), GOLD_WEIGHT), params


def stats_apply(
    *, project_id: int, deltas: dict[int, StatsDelta], prior: tuple[float, float] | None = None
) -> None:
    """Add `deltas` (by user id) to the project's annotator stats and re-estimate accuracy
    with the project's reliability prior (`prior`, read when not given and needed); counters
    never go below zero.

    Call inside a transaction; rows are locked in user-id order so two decisions sharing
    voters never deadlock.
    """
    added = stats_added_statement(
        project_id=project_id, deltas=deltas, prior=prior or (PRIOR_ACCURACY, PRIOR_STRENGTH)
    )
    if added is not None:
        rows.execute(*added)
        return
    if not deltas:
        return
    if prior is None:
        prior = project_prior(
            Project.objects.only("reliability_prior_accuracy", "reliability_prior_strength").get(
                pk=project_id
            )
        )
    user_ids = sorted(deltas)
    now = rows.moment(timezone.now())
    # Volunteers with no record yet start at zero and the prior; then every row is read
    # locked, in user-id order.
    rows.execute(
        stats_sql.create_missing(len(user_ids)),
        [value for user_id in user_ids for value in (now, now, project_id, user_id, prior[0])],
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
            prior=prior,
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


def accuracies(
    *, project_id: int, user_ids: list[int], default: float = PRIOR_ACCURACY
) -> dict[int, float]:
    """Estimated accuracy of each user (`default`, the project's prior mean, for those with no
    record yet)."""
    known = {}
    if user_ids:
        known = dict(rows.fetch_all(stats_sql.accuracies(len(user_ids)), [project_id, *user_ids]))
    return {user_id: known.get(user_id, default) for user_id in user_ids}


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
