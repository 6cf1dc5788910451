"""Batch re-aggregation: Dawid-Skene EM over all the votes of a project.

Run on a schedule. Images whose crowd decision Dawid-Skene confidently contradicts are flagged
for review (and earlier flags rewritten or withdrawn); the project's answer frequencies (the
dynamic rule's prior), the model's measured accuracy per confidence band and each volunteer's
batch accuracy estimate are refreshed.
"""

import logging
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.db.models import Count, Q

from annotate.flag_reasons import DAWID_SKENE_PREFERS, flag_reason
from annotate.models import AnnotatorStats, Decision, Image, Label, Project, Suggestion, Vote
from annotate.services import confusions
from annotate.services.consensus import answer_keys_for, image_posterior
from annotate.services.dawid_skene import (
    PRIOR_ACCURACY,
    dawid_skene,
    mistake_concentration,
    one_coin_init,
)
from annotate.services.posterior import band_name

logger = logging.getLogger(__name__)


@dataclass
class ReaggregationReport:
    images: int = 0
    votes: int = 0
    flagged: int = 0
    unflagged: int = 0
    iterations: int = 0
    converged: bool = False
    # Every crowd decision with FLAG_MIN_VOTES votes that DS disagrees with, flagged or not:
    # image id -> (DS's probability for its own answer, its probability for the decided one,
    # human votes, the calibrated posterior's probability for the decided one now), for the
    # bench's precision/recall of the flag rule.
    disagreements: dict[int, tuple[float, float, int, float]] = field(
        default_factory=dict, repr=False
    )


FLAG_PREFIX = "Dawid-Skene"
# With one vote, DS disagreeing with it is only that voter's confusion matrix talking: on the
# bench every such flag was on a correct decision.
FLAG_MIN_VOTES = 2
# A flag also needs the decision's own calibrated posterior, recomputed with what the project
# knows now, to give the decided answer at most this. On the consensus bench DS alone at 0.9
# was wrong in 28 of its 38 flags; with this gate in 9 of 14 (at 0.5, 5 of 8, losing more
# true flags).
FLAG_DECIDED_MAX = 0.8


def project_reaggregate(*, project: Project) -> ReaggregationReport:
    """Re-score the project's crowd decisions with Dawid-Skene. A decision is flagged for
    review when DS prefers another answer with at least the project's `flag_confidence` and
    the image has at least `min_votes` votes (and FLAG_MIN_VOTES); a re-run rewrites the flags
    it set before, and withdraws those DS no longer supports."""
    report = ReaggregationReport()
    keys = answer_keys_for(project=project)
    key_index = {key: i for i, key in enumerate(keys)}
    image_ids, user_ids, label_ids = array("q"), array("q"), array("q")
    votes = (
        Vote.objects.filter(image__project=project, image__is_gold=False)
        .order_by()
        .values_list("image_id", "user_id", "label_id")
    )
    for image_id, user_id, label_id in votes.iterator(chunk_size=10_000):
        image_ids.append(image_id)
        user_ids.append(user_id)
        label_ids.append(key_index[label_id])
    _refresh_answer_counts(project=project)
    confusions.crowd_compact(project_id=project.pk)
    if not image_ids:
        _withdraw_flags(project=project, keep=set())
        return report
    human_votes = len(image_ids)
    unanimous = _unanimous(image_ids, label_ids, keys)
    _refresh_model_reliability(project=project, unanimous=unanimous)
    # The model's suggestion is one more answer, as it was one more voter in the decisions:
    # DS learns its confusion matrix like anyone's, and does not flag a split vote the model
    # settled merely for not seeing it.
    voted = set(image_ids)
    suggested = Suggestion.objects.filter(
        image__project=project, model_version__active_in__project=project
    ).values_list("image_id", "label_id")
    for image_id, label_id in suggested.iterator(chunk_size=10_000):
        if image_id in voted and label_id in key_index:
            image_ids.append(image_id)
            user_ids.append(MODEL_WORKER)
            label_ids.append(key_index[label_id])
    image_of, items = np.unique(np.frombuffer(image_ids, dtype=np.int64), return_inverse=True)
    user_of, workers = np.unique(np.frombuffer(user_ids, dtype=np.int64), return_inverse=True)
    answers = np.frombuffer(label_ids, dtype=np.int64)
    estimates = dict(
        AnnotatorStats.objects.filter(project=project).values_list("user_id", "estimated_accuracy")
    )
    accuracy = np.array([estimates.get(int(u), PRIOR_ACCURACY) for u in user_of])[workers]
    n_items, n_classes = len(image_of), len(keys)
    result = dawid_skene(
        items,
        workers,
        answers,
        n_items=n_items,
        n_workers=len(user_of),
        n_classes=n_classes,
        init=one_coin_init(items, answers, accuracy, n_items=n_items, n_classes=n_classes),
    )
    report.images, report.votes = n_items, len(answers)
    report.iterations, report.converged = result.iterations, result.converged
    concentration = mistake_concentration(
        result.posteriors[items[:human_votes]],
        answers[:human_votes],
        n_classes=n_classes,
        counted=accuracy[:human_votes] >= project.reliability_threshold,
    )
    Project.objects.filter(pk=project.pk).update(mistake_concentration=concentration)
    project.mistake_concentration = concentration
    votes_per_item = np.bincount(items[:human_votes], minlength=n_items)
    best = result.posteriors.argmax(axis=1)
    found = {
        int(image_id): (i, keys[int(k)], float(result.posteriors[i, k]), int(votes_per_item[i]))
        for i, (image_id, k) in enumerate(zip(image_of, best, strict=True))
    }
    names = dict(Label.objects.filter(project=project).values_list("id", "name"))
    crowd_decided = Decision.objects.filter(
        image__project=project,
        is_current=True,
        rule__in=[Decision.Rule.MAJORITY, Decision.Rule.DYNAMIC],
    ).values_list("image_id", "label_id")
    disputed = {
        image_id: label_id
        for image_id, label_id in crowd_decided.iterator(chunk_size=10_000)
        if image_id in found
        and found[image_id][1] != label_id
        and found[image_id][3] >= max(project.min_votes, FLAG_MIN_VOTES)
    }
    # What the decision's own rule says of each such image now, with what the project has
    # learned of its volunteers, the model and their mistakes since it was made.
    image_votes: dict[int, list[tuple[int, int | None]]] = {image_id: [] for image_id in disputed}
    for image_id, user_id, index in zip(image_ids, user_ids, label_ids, strict=False):
        if image_id in image_votes and user_id != MODEL_WORKER:
            image_votes[image_id].append((user_id, keys[index]))
    reasons: dict[int, str] = {}
    for image_id, label_id in disputed.items():
        row, choice, confidence, count = found[image_id]
        evidence = image_posterior(image_id=image_id, project=project, votes=image_votes[image_id])
        decided_key = confusions.answer_key(label_id)
        now = (
            float(evidence.with_model[evidence.keys.index(decided_key)])
            if decided_key in evidence.keys
            else 0.0
        )
        own = float(result.posteriors[row, key_index[label_id]])
        report.disagreements[image_id] = (confidence, own, count, now)
        if result.converged and confidence >= project.flag_confidence and now <= FLAG_DECIDED_MAX:
            reasons[image_id] = flag_reason(
                DAWID_SKENE_PREFERS,
                choice=_name(names, choice),
                confidence=f"{confidence:.0%}",
                decided=_name(names, label_id),
            )
    with transaction.atomic():
        for image_id, reason in reasons.items():
            Image.objects.filter(pk=image_id).filter(
                Q(flagged_for_review=False) | Q(flag_reason__startswith=FLAG_PREFIX)
            ).update(flagged_for_review=True, flag_reason=reason)
        report.flagged = len(reasons)
        report.unflagged = _withdraw_flags(project=project, keep=set(reasons))
        # A worker's accuracy: the diagonal of its confusion matrix, weighted by class prior.
        batch = (np.diagonal(result.confusions, axis1=1, axis2=2) * result.class_priors).sum(axis=1)
        for user_id, value in zip(user_of, batch, strict=False):
            AnnotatorStats.objects.filter(project=project, user_id=int(user_id)).update(
                batch_accuracy=float(value)
            )
    logger.info("re-aggregated project %s: %s", project.pk, report)
    return report


# A young project is re-aggregated once YOUNG_FIRST images are decided, then each time they
# double, up to YOUNG_LIMIT: until measured, mistakes are taken for look-alike ones and the
# model for a newcomer (on the bench's crowd (a) the first 100 images cost 3.5 votes each
# before the first run, 2.7 after).
YOUNG_FIRST, YOUNG_LIMIT = 20, 800


def reaggregation_due(*, project: Project) -> bool:
    """Whether a young project's decided images have reached YOUNG_FIRST or doubled since its
    last re-aggregation (whose count Project.answer_counts keeps)."""
    before = int(sum((project.answer_counts or {}).values()))
    if before >= YOUNG_LIMIT:
        return False
    decided = Decision.objects.filter(image__project=project, is_current=True).count()
    return decided >= max(YOUNG_FIRST, 2 * before)


def _name(names: dict[int, str], label_id: int | None) -> str:
    return "none of these" if label_id is None else f"\u201c{names.get(label_id, label_id)}\u201d"


def _withdraw_flags(*, project: Project, keep: set[int]) -> int:
    """Clear the flags an earlier re-aggregation set that this one does not keep."""
    earlier = Image.objects.filter(
        project=project, flagged_for_review=True, flag_reason__startswith=FLAG_PREFIX
    ).values_list("id", flat=True)
    withdrawn = [image_id for image_id in earlier if image_id not in keep]
    count = 0
    for chunk in _chunks(withdrawn):
        count += Image.objects.filter(pk__in=chunk).update(flagged_for_review=False, flag_reason="")
    return count


# The model's answers in re-aggregation, as a worker no user id takes.
MODEL_WORKER = 0


def _unanimous(
    image_ids: "array[int]", label_ids: "array[int]", keys: list[int | None]
) -> dict[int, int]:
    """The images at least two volunteers voted on, all for the same label: {image: label}."""
    seen: dict[int, tuple[int, int]] = {}
    split = set()
    for image_id, index in zip(image_ids, label_ids, strict=True):
        count, first = seen.get(image_id, (0, index))
        seen[image_id] = (count + 1, first)
        if first != index:
            split.add(image_id)
    return {
        image_id: label
        for image_id, (count, index) in seen.items()
        if count >= 2 and image_id not in split and (label := keys[index]) is not None
    }


def _refresh_model_reliability(*, project: Project, unanimous: dict[int, int]) -> None:
    """The active model's measured accuracy per confidence band (posterior.band_name), on the
    images two or more volunteers labeled alike (none of them by the model's say): how much
    its suggestion is worth as a vote (annotate.services.posterior.model_accuracy)."""
    bands: dict[str, list[int]] = {}
    suggested = Suggestion.objects.filter(
        image__project=project, model_version__active_in__project=project
    ).values_list("image_id", "label_id", "confidence")
    for image_id, label_id, confidence in suggested.iterator(chunk_size=10_000):
        if image_id in unanimous:
            band = bands.setdefault(band_name(confidence), [0, 0])
            band[0] += int(unanimous[image_id] == label_id)
            band[1] += 1
    Project.objects.filter(pk=project.pk).update(model_reliability=bands)
    project.model_reliability = bands


def _refresh_answer_counts(*, project: Project) -> None:
    counts: Counter[str] = Counter()
    rows = (
        Decision.objects.filter(image__project=project, is_current=True)
        .values("label_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts["none" if row["label_id"] is None else str(row["label_id"])] = row["n"]
    Project.objects.filter(pk=project.pk).update(answer_counts=dict(counts))
    project.answer_counts = dict(counts)


def _chunks(ids: list[int], size: int = 1000) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
