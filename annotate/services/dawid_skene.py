"""Dawid-Skene EM and the crowd's mistake concentration: the numerical part of the batch
re-aggregation (annotate.services.aggregation), plain NumPy over answer arrays, no database.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class DawidSkeneResult:
    posteriors: np.ndarray  # items x classes
    class_priors: np.ndarray  # classes
    confusions: np.ndarray  # workers x true class x answered class
    iterations: int
    converged: bool


# Dirichlet smoothing (issue 16): each worker's confusion row starts from CONFUSION_STRENGTH
# answers of a PRIOR_ACCURACY one-coin voter, each class's prior from CLASS_STRENGTH items. Without
# them a worker seen on a few items, or a class seldom decided ("none of these"), gets
# certainties no data supports, and EM runs off to them.
CONFUSION_STRENGTH = 2.0
PRIOR_ACCURACY = 0.7
CLASS_STRENGTH = 1.0


def dawid_skene(
    items: np.ndarray,
    workers: np.ndarray,
    answers: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    max_iterations: int = 500,
    tolerance: float = 1e-3,
    confusion_strength: float = CONFUSION_STRENGTH,
    class_strength: float = CLASS_STRENGTH,
    init: np.ndarray | None = None,
) -> DawidSkeneResult:
    """Dawid & Skene (1979): each worker has a full confusion matrix; EM alternates between
    the posterior of each item's true class and the workers' matrices and class priors (their
    MAP estimates under the Dirichlet smoothing above).

    Starts from `init` (items x classes posteriors, e.g. the dynamic rule's) or else from
    majority vote; stops when no posterior moves by more than `tolerance` (converged) or after
    `max_iterations`.
    """
    if init is not None:
        posteriors = np.array(init, dtype=float)
    else:
        posteriors = np.zeros((n_items, n_classes))
        np.add.at(posteriors, (items, answers), 1.0)
    posteriors /= posteriors.sum(axis=1, keepdims=True).clip(min=1e-12)
    off = confusion_strength * (1.0 - PRIOR_ACCURACY) / max(n_classes - 1, 1)
    pseudo = np.full((n_classes, n_classes), off)
    np.fill_diagonal(pseudo, confusion_strength * PRIOR_ACCURACY)
    iteration, converged = 0, False
    class_priors = np.full(n_classes, 1.0 / n_classes)
    confusions = np.tile(pseudo / pseudo.sum(axis=1, keepdims=True), (n_workers, 1, 1))
    while iteration < max_iterations:
        iteration += 1
        # M-step: class priors and confusion matrices from the current posteriors.
        class_priors = posteriors.sum(axis=0) + class_strength
        class_priors /= class_priors.sum()
        confusions = np.tile(pseudo, (n_workers, 1, 1))
        # numpy's stubs do not accept a slice inside ufunc.at's index tuple; numpy does.
        np.add.at(confusions, (workers, slice(None), answers), posteriors[items])  # type: ignore[arg-type]
        confusions /= confusions.sum(axis=2, keepdims=True)
        # E-step: log posterior of each item's class given all its answers.
        log_post = np.tile(np.log(class_priors), (n_items, 1))
        np.add.at(log_post, items, np.log(confusions[workers, :, answers]))
        log_post -= log_post.max(axis=1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(axis=1, keepdims=True)
        change = float(np.abs(updated - posteriors).max())
        posteriors = updated
        if change < tolerance:
            converged = True
            break
    return DawidSkeneResult(posteriors, class_priors, confusions, iteration, converged)


def one_coin_init(
    items: np.ndarray,
    answers: np.ndarray,
    accuracies: np.ndarray,
    *,
    n_items: int,
    n_classes: int,
) -> np.ndarray:
    """Each item's posterior under the one-coin model with each answer's voter accuracy (the
    reliability estimates): where EM starts."""
    accuracy = np.clip(accuracies, 1.0 / n_classes, 0.995)
    wrong = np.log((1.0 - accuracy) / max(n_classes - 1, 1))
    log_post = np.zeros((n_items, n_classes))
    np.add.at(log_post, items, np.broadcast_to(wrong[:, None], (len(items), n_classes)))
    np.add.at(log_post, (items, answers), np.log(accuracy) - wrong)
    log_post -= log_post.max(axis=1, keepdims=True)
    found: np.ndarray = np.exp(log_post)
    normalized: np.ndarray = found / found.sum(axis=1, keepdims=True)
    return normalized


def mistake_concentration(
    posteriors: np.ndarray,
    answers: np.ndarray,
    *,
    n_classes: int,
    counted: np.ndarray | None = None,
) -> float:
    """The Dirichlet concentration of the crowd's mistakes, from DS's posteriors of the items
    of the answers given: how often two mistakes on the same true answer agree (P), and the
    concentration at which a Polya urn repeats a mistake that often,
    P = (c / (K - 1) + 1) / (c + 1). Mistakes spread evenly give a large one, mistakes that go
    to one look-alike a small one. `counted`: which answers count (default all): the
    project's counts only its reliable volunteers', as a spammer's random answers say
    nothing of where the others' mistakes go, and made them read as spread on the bench's
    crowd (c) (concentration 3 for the honest volunteers' 1.3: decisions overclaimed)."""
    if counted is not None:
        posteriors, answers = posteriors[counted], answers[counted]
    expected = np.zeros((n_classes, n_classes))  # true x given, expected answers
    np.add.at(expected.T, answers, posteriors)
    np.fill_diagonal(expected, 0.0)
    mistakes = expected.sum(axis=1)
    usable = mistakes >= 2.0
    if not usable.any() or n_classes < 3:
        return 1.0
    rows, totals = expected[usable], mistakes[usable]
    # Pairs of mistakes on one true answer that agree, over all pairs (no mistake paired with
    # itself), pooled over the answers weighted by their pairs, and PRIOR_PAIRS pairs that
    # agree half the time (about the default concentration of 1): a young project's few
    # mistakes, which a re-aggregation soon after its start measures, move it only as far
    # as they weigh. Read as spread when they are not, mistakes make decisions overclaim.
    agreeing = (rows * np.clip(rows - 1.0, 0.0, None)).sum() + PRIOR_ALIKE * PRIOR_PAIRS
    pairs = (totals * (totals - 1.0)).sum() + PRIOR_PAIRS
    uniform = 1.0 / (n_classes - 1)
    alike = min(max(float(agreeing / pairs), uniform + 1e-3), 0.99)
    return float(np.clip((1.0 - alike) / (alike - uniform), MIN_CONCENTRATION, MAX_CONCENTRATION))


MIN_CONCENTRATION, MAX_CONCENTRATION = 0.3, 100.0
PRIOR_ALIKE, PRIOR_PAIRS = 0.5, 50.0
