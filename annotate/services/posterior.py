"""The dynamic rule's posterior over an image's true answer, calibrated (issue 16).

Each volunteer is a confusion matrix shrunk toward a one-coin model: with accuracy `a` (the
reliability estimate) the true answer i is given with probability a, and a wrong answer j with
(1 - a) * Q(j | i), where Q is the crowd's pooled mistakes (so a volunteer's errors go where
everyone's go: 3 read as 8, not spread evenly over every label). The volunteer's own counts
(confusions.py: gold answers and leave-one-out decisions) then move that prior by as much as
they weigh against SHRINK answers of it. A newcomer borrows what the crowd does.

Only the answers worth telling apart are computed one by one: those voted, "none of these",
the model's suggestion, and the answers whose mistakes often read as a voted one. The other
labels share one bucket, each with a mistake's likelihood at chance.

The model, when the project has one, is one more voter for its top label: its accuracy is the
one measured for its confidence band (Project.model_reliability, from re-aggregation), capped
at the project's `model_max_accuracy`, so it weighs at most as one reliable volunteer. Its
mistakes are drawn from the same urn as the volunteers' (a classifier reads 3 as 8 where people
do): counted as independent of theirs, a weak model agreeing with one volunteer's look-alike
mistake made decisions overclaim by up to 0.05 on the consensus bench.
"""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from annotate import rows
from annotate.models import NONE_KEY, Project
from annotate.rows import confusion as confusion_sql
from annotate.rows.confusion import ROW_TOTAL

# A volunteer's own counts weigh against this many answers of the one-coin-with-crowd prior.
SHRINK = 4.0
MAX_ACCURACY = 0.995
# A model band's measured accuracy weighs against this many answers at the model's accuracy
# over every band, and that against MODEL_PRIOR_STRENGTH answers at MODEL_PRIOR_ACCURACY (a
# new volunteer's prior, annotate.services.reliability).
MODEL_SHRINK = 10.0
MODEL_PRIOR_ACCURACY, MODEL_PRIOR_STRENGTH = 0.7, 4.0


@dataclass
class ConfusionCounts:
    # user id -> true key -> given key -> weight
    volunteer: dict[int, dict[int, dict[int, float]]] = field(default_factory=dict)
    # true key -> given key -> weight (mistakes only; ROW_TOTAL: their sum)
    crowd: dict[int, dict[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Voter:
    user_id: int  # 0 for the model
    key: int  # the answer's key (label id, or NONE_KEY)
    accuracy: float


def read_crowd(*, project_id: int, given_keys: set[int]) -> dict[int, dict[int, float]]:
    """The crowd's mistakes into any of `given_keys`, and every true key's total."""
    keys = [*sorted(given_keys), ROW_TOTAL]
    crowd: dict[int, dict[int, float]] = defaultdict(dict)
    sql = confusion_sql.crowd_columns(len(keys))
    for true_key, given_key, weight in rows.fetch_all(sql, [project_id, *keys]):
        crowd[true_key][given_key] = max(0.0, weight)
    return crowd


def read_volunteers(
    *, project_id: int, user_ids: list[int], true_keys: list[int]
) -> dict[int, dict[int, dict[int, float]]]:
    found: dict[int, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    if user_ids and true_keys:
        sql = confusion_sql.volunteer_rows(len(user_ids), len(true_keys))
        for user_id, true_key, given_key, weight in rows.fetch_all(
            sql, [project_id, *user_ids, *true_keys]
        ):
            found[user_id][true_key][given_key] = max(0.0, weight)
    return found


def crowd_mistake(
    crowd: dict[int, dict[int, float]],
    true: int,
    given: int,
    n_answers: int,
    here: dict[int, float] | None = None,
    concentration: float = 1.0,
) -> float:
    """Q(given | true): the share of the crowd's mistakes on `true` that read as `given`, with
    the mistakes `here` (this image's earlier votes, were `true` the answer) counted in: a
    Polya urn, so that where the crowd's data is thin, two volunteers making the same mistake
    is not taken for two independent coincidences (mistakes go to look-alikes, and the same
    look-alike for everyone)."""
    row = crowd.get(true, {})
    here = here or {}
    uniform = 1.0 / max(n_answers - 1, 1)
    seen = row.get(given, 0.0) + here.get(given, 0.0)
    total = row.get(ROW_TOTAL, 0.0) + sum(here.values())
    return (seen + concentration * uniform) / (total + concentration)


def candidates(
    *, voted: set[int], extra: set[int], crowd: dict[int, dict[int, float]], n_answers: int
) -> list[int]:
    """The answers computed one by one: `voted`, `extra` (none of these, the model's label),
    and those whose mistakes read as a voted answer more often than chance."""
    uniform = 1.0 / max(n_answers - 1, 1)
    # Only a row holding one of the voted answers can beat chance (every answer's total is
    # read: up to one row per label, so the rows without them are skipped cheaply).
    confusable = {
        true
        for true, row in crowd.items()
        for given in voted
        if given in row and true != given and crowd_mistake(crowd, true, given, n_answers) > uniform
    }
    return sorted(voted | extra | confusable)


def posterior(
    *,
    keys: list[int],
    prior: np.ndarray,
    rest_prior: float,
    n_answers: int,
    voters: list[Voter],
    counts: ConfusionCounts,
    concentration: float = 1.0,
) -> np.ndarray:
    """The posterior over `keys` and, last, the bucket of every other answer (whose prior mass
    is `rest_prior`). The model votes with user id 0, its mistakes going where the crowd's go.
    `concentration`: the crowd's mistakes' Dirichlet concentration
    (Project.mistake_concentration)."""
    k = len(keys)
    log_posterior = np.log(np.clip(np.append(prior, rest_prior), 1e-300, None))
    # The mistakes this image's volunteers made so far, were each candidate (and, last, a
    # typical other answer) the true one: given key -> count.
    here: list[dict[int, float]] = [defaultdict(float) for _ in range(k + 1)]
    rest = -1  # no answer key: the other answers' bucket has no crowd data of its own
    for voter in voters:
        accuracy = min(max(voter.accuracy, 1.0 / n_answers), MAX_ACCURACY)
        likelihood = np.empty(k + 1)
        own = counts.volunteer.get(voter.user_id, {}) if voter.user_id else {}
        for index, true in enumerate([*keys, rest]):
            if true == voter.key:
                prior_share = accuracy
            else:
                # The model's mistakes too: a classifier reads 3 as 8 where people do, so a
                # volunteer agreeing with a wrong suggestion is not a coincidence either.
                mistake = crowd_mistake(
                    counts.crowd, true, voter.key, n_answers, here[index], concentration
                )
                prior_share = (1.0 - accuracy) * mistake
                here[index][voter.key] += 1.0
            row = own.get(true)
            if row:
                seen = row.get(voter.key, 0.0)
                likelihood[index] = (seen + SHRINK * prior_share) / (sum(row.values()) + SHRINK)
            else:
                likelihood[index] = prior_share
        log_posterior += np.log(np.clip(likelihood, 1e-300, None))
    found: np.ndarray = np.exp(log_posterior - log_posterior.max())
    normalized: np.ndarray = found / found.sum()
    return normalized


def model_accuracy(*, project: Project, confidence: float, holdout: float | None = None) -> float:
    """What the model's top label is worth as a vote at this claimed confidence: the accuracy
    measured for its band, shrunk toward the model's accuracy measured over every band, which
    starts at its held-out top-1 (`holdout`, measured on verified labels) or, without one,
    where a new volunteer's does (MODEL_PRIOR_ACCURACY); never above the claim nor
    `model_max_accuracy`. The claim only bounds it: an overconfident model (on the bench, a
    weak one claiming 0.9-1.0 for a top-1 of 0.75) is worth what it was measured to be."""
    measured = project.model_reliability or {}
    all_hits = sum(hits for hits, _ in measured.values())
    all_total = sum(total for _, total in measured.values())
    start = holdout if holdout else MODEL_PRIOR_ACCURACY
    overall = (all_hits + MODEL_PRIOR_STRENGTH * start) / (all_total + MODEL_PRIOR_STRENGTH)
    hits, total = measured.get(band_name(confidence)) or (0, 0)
    accuracy = (hits + MODEL_SHRINK * overall) / (total + MODEL_SHRINK)
    return float(min(accuracy, confidence, project.model_max_accuracy))


def band_name(confidence: float) -> str:
    """The model-reliability band of a confidence: its lower edge in steps of 0.05."""
    return f"{min(int(confidence * 20), 19) / 20:.2f}"


@dataclass(frozen=True)
class Evidence:
    keys: list[int]  # candidate answer keys
    with_model: np.ndarray  # posterior over keys and the rest bucket
    humans_only: np.ndarray
    model_key: int | None  # the model's label, when it voted
    reliable_keys: set[int]  # answers voted by someone at or above reliability_threshold
    voted_keys: set[int]


def image_evidence(
    *,
    project: Project,
    all_keys: list[int],
    prior_weights: dict[int, float],
    votes: list[tuple[int, int]],
    accuracy: dict[int, float],
    model: dict[int, float] | None,
    model_holdout: float | None = None,
) -> Evidence:
    """The posterior with and without the model, for (user id, answer key) `votes`.
    `prior_weights`: every answer key's prior weight (need not sum to 1)."""
    n_answers = len(all_keys)
    voted = {key for _, key in votes}
    model_voter = None
    if model and project.model_max_accuracy > 0:
        model_key = max(model, key=lambda label: model[label])
        model_voter = Voter(
            0,
            model_key,
            model_accuracy(
                project=project, confidence=float(model[model_key]), holdout=model_holdout
            ),
        )
    extra = {NONE_KEY} | ({model_voter.key} if model_voter else set())
    crowd = read_crowd(project_id=project.pk, given_keys=voted | extra)
    keys = candidates(voted=voted, extra=extra, crowd=crowd, n_answers=n_answers)
    users = sorted({user_id for user_id, _ in votes})
    counts = ConfusionCounts(
        read_volunteers(project_id=project.pk, user_ids=users, true_keys=keys), crowd
    )
    total = sum(prior_weights.values())
    prior = np.array([prior_weights.get(key, 0.0) for key in keys]) / total
    rest = max(0.0, 1.0 - float(prior.sum()))
    humans = [Voter(user_id, key, accuracy[user_id]) for user_id, key in votes]

    def given(voters: list[Voter]) -> np.ndarray:
        return posterior(
            keys=keys,
            prior=prior,
            rest_prior=rest,
            n_answers=n_answers,
            voters=voters,
            counts=counts,
            concentration=project.mistake_concentration,
        )

    humans_only = given(humans)
    with_model = given([*humans, model_voter]) if model_voter else humans_only
    reliable = {key for user_id, key in votes if accuracy[user_id] >= project.reliability_threshold}
    return Evidence(
        keys, with_model, humans_only, model_voter.key if model_voter else None, reliable, voted
    )
