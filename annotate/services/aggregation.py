"""Batch re-aggregation: Dawid-Skene EM over all the votes of a project.

Run on a schedule. Images whose crowd decision Dawid-Skene would change are flagged for
review; the project's answer frequencies (the dynamic rule's prior) and each volunteer's
batch accuracy estimate are refreshed.
"""

import logging
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import Count

from annotate.flag_reasons import DAWID_SKENE_PREFERS_LABEL, DAWID_SKENE_PREFERS_NONE, flag_reason
from annotate.models import AnnotatorStats, Decision, Image, Project, Vote
from annotate.services.consensus import answer_keys_for

logger = logging.getLogger(__name__)


@dataclass
class DawidSkeneResult:
    posteriors: np.ndarray  # items x classes
    class_priors: np.ndarray  # classes
    confusions: np.ndarray  # workers x true class x answered class
    iterations: int


def dawid_skene(
    items: np.ndarray,
    workers: np.ndarray,
    answers: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    smoothing: float = 0.01,
) -> DawidSkeneResult:
    """Dawid & Skene (1979): each worker has a full confusion matrix; EM alternates between
    the posterior of each item's true class and the workers' matrices and class priors.

    Starts from majority-vote posteriors. `smoothing` is a small pseudo-count that keeps a
    worker's unseen answers possible.
    """
    posteriors = np.zeros((n_items, n_classes))
    np.add.at(posteriors, (items, answers), 1.0)
    posteriors /= posteriors.sum(axis=1, keepdims=True).clip(min=1e-12)
    previous = None
    iteration = 0  # how many EM rounds ran, reported in the result
    while iteration < max_iterations:
        iteration += 1
        # M-step: class priors and confusion matrices from the current posteriors.
        class_priors = posteriors.mean(axis=0).clip(min=1e-12)
        class_priors /= class_priors.sum()
        confusions = np.full((n_workers, n_classes, n_classes), smoothing)
        # numpy's stubs do not accept a slice inside ufunc.at's index tuple; numpy does.
        np.add.at(confusions, (workers, slice(None), answers), posteriors[items])  # type: ignore[arg-type]
        confusions /= confusions.sum(axis=2, keepdims=True)
        # E-step: log posterior of each item's class given all its answers.
        log_post = np.tile(np.log(class_priors), (n_items, 1))
        np.add.at(log_post, items, np.log(confusions[workers, :, answers]))
        log_post -= log_post.max(axis=1, keepdims=True)
        posteriors = np.exp(log_post)
        posteriors /= posteriors.sum(axis=1, keepdims=True)
        if previous is not None and np.abs(posteriors - previous).max() < tolerance:
            break
        previous = posteriors
    return DawidSkeneResult(posteriors, class_priors, confusions, iteration)


@dataclass
class ReaggregationReport:
    images: int = 0
    votes: int = 0
    flagged: int = 0
    unflagged: int = 0


def project_reaggregate(*, project: Project) -> ReaggregationReport:
    """Re-score the project's crowd decisions with Dawid-Skene; flag disagreements."""
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
    if not image_ids:
        return report
    image_of, items = np.unique(np.frombuffer(image_ids, dtype=np.int64), return_inverse=True)
    user_of, workers = np.unique(np.frombuffer(user_ids, dtype=np.int64), return_inverse=True)
    answers = np.frombuffer(label_ids, dtype=np.int64)
    result = dawid_skene(
        items, workers, answers, n_items=len(image_of), n_workers=len(user_of), n_classes=len(keys)
    )
    report.images, report.votes = len(image_of), len(answers)
    best = result.posteriors.argmax(axis=1)
    batch_choice = {
        int(image_id): keys[int(k)] for image_id, k in zip(image_of, best, strict=False)
    }
    confidence = {
        int(image_id): float(p)
        for image_id, p in zip(image_of, result.posteriors.max(axis=1), strict=False)
    }

    crowd_decided = Decision.objects.filter(
        image__project=project,
        is_current=True,
        rule__in=[Decision.Rule.MAJORITY, Decision.Rule.DYNAMIC],
    ).values_list("image_id", "label_id")
    to_flag, agreeing = [], []
    for image_id, label_id in crowd_decided.iterator(chunk_size=10_000):
        if image_id not in batch_choice:
            continue
        if batch_choice[image_id] != label_id:
            to_flag.append(image_id)
        else:
            agreeing.append(image_id)
    with transaction.atomic():
        for chunk in _chunks(to_flag):
            for image_id in chunk:
                choice = batch_choice[image_id]
                sure = f"{confidence[image_id]:.0%}"
                reason = (
                    flag_reason(DAWID_SKENE_PREFERS_NONE, confidence=sure)
                    if choice is None
                    else flag_reason(DAWID_SKENE_PREFERS_LABEL, label=choice, confidence=sure)
                )
                Image.objects.filter(pk=image_id, flagged_for_review=False).update(
                    flagged_for_review=True, flag_reason=reason
                )
        report.flagged = len(to_flag)
        for chunk in _chunks(agreeing):
            report.unflagged += Image.objects.filter(
                pk__in=chunk,
                flagged_for_review=True,
                state__in=[Image.State.CONSENSUS, Image.State.EXCLUDED],
            ).update(flagged_for_review=False, flag_reason="")
        # A worker's accuracy: the diagonal of its confusion matrix, weighted by class prior.
        accuracy = (np.diagonal(result.confusions, axis1=1, axis2=2) * result.class_priors).sum(
            axis=1
        )
        for user_id, value in zip(user_of, accuracy, strict=False):
            AnnotatorStats.objects.filter(project=project, user_id=int(user_id)).update(
                batch_accuracy=float(value)
            )
    logger.info("re-aggregated project %s: %s", project.pk, report)
    return report


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
