"""Semi-supervised learning by self-training: the default method (bench/ml_label_efficiency.py;
FixMatch, worker.ml.semi, needs far more steps than a CPU worker has).

1. The model trains on the verified labels alone for `self_training_split` of the run.
2. Then it judges the unlabeled pool (eval mode, no augmentation). Its probabilities are
   calibrated with a temperature fitted on the held-out images' true labels; per class, the
   most confident images at or above `pseudo_threshold` become pseudo-labels, at most as
   many per class as the median class has (a model that prefers one class does not get to
   teach that preference), and none unless they are at least `pseudo_min_share` of the
   verified labels' number (measured on demo-like data, a pool of 15 per class against 32
   labels per class: the few pseudo-labels it gave cost accuracy).
3. It goes on training on batches of verified labels and pseudo-labels (in proportion to
   their numbers, at most `pseudo_batch_share` pseudo-labels; their loss weighted by
   `unlabeled_weight`), the learning rate warming up and decaying once more. A step costs
   what a supervised one does; with too few images sure enough it goes on with the verified
   labels alone, one last cycle.
4. `self_training_rounds` rounds: the model each round ends with judges the whole pool
   again (sure of more images, and right about more); its pseudo-labels replace the last.

Pseudo-labels exist for one training only: never stored, never ground truth. The held-out
images are never trained on, so they still grade and calibrate the final model.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from worker.ml.calibration import fit_temperature
from worker.ml.config import TrainConfig
from worker.ml.data import Sample, make_loader
from worker.ml.fitting import FitResult, fit


@torch.inference_mode()
def _logits(
    model: nn.Module,
    normalize: nn.Module,
    samples: Sequence[Sample],
    config: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    model.eval()
    rows = [
        model(normalize(images.to(device))).float().cpu()
        for images, _ in make_loader(samples, config, training=False, device=device)
    ]
    model.train()
    return torch.cat(rows) if rows else torch.empty(0, 0)


def select_pseudo_labels(
    probabilities: torch.Tensor, threshold: float, per_class: int, *, at_least: int = 0
) -> list[tuple[int, int]]:
    """(row, class) pairs: the most confident rows of each class at or above `threshold`, at
    most as many per class as the median class has (and `per_class`): pseudo-labels of the
    easy classes alone would teach the model to prefer them. Fewer than `at_least` in all:
    none (a handful of pseudo-labels, seen again every few steps, gets memorised, mistakes
    included)."""
    confidence, predicted = probabilities.max(dim=1)
    sure = [
        torch.nonzero((predicted == label) & (confidence >= threshold)).flatten()
        for label in range(probabilities.shape[1])
    ]
    cap = min(per_class, int(torch.tensor([float(len(rows)) for rows in sure]).median()))
    chosen: list[tuple[int, int]] = []
    for label, rows in enumerate(sure):
        order = confidence[rows].argsort(descending=True)[:cap]
        chosen += [(int(row), label) for row in rows[order]]
    return sorted(chosen) if len(chosen) >= max(at_least, 1) else []


def self_train(
    model: nn.Module,
    normalize: nn.Module,
    samples: Sequence[Sample],
    holdout: Sequence[Sample],
    unlabeled_paths: Sequence[str],
    config: TrainConfig,
    device: torch.device,
    *,
    share: float = 1.0,
    warm: bool = False,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> FitResult:
    """Train `model` in place, as `fit` would, for `share` of the run: on the verified labels,
    then also on pseudo-labels of the unlabeled pool. One learning-rate schedule and one
    time budget (CPU seconds) cover both, and the judging of the pool in between."""
    pool = [(path, -1) for path in unlabeled_paths]
    chosen: list[Sample] = []

    def pseudo_labeled() -> list[Sample]:
        # Each round judges the whole pool again; an empty judgment keeps the last one.
        found = pseudo_labels_of_pool(
            model,
            normalize,
            pool,
            holdout,
            config,
            device,
            at_least=math.ceil(config.pseudo_min_share * len(samples)),
        )
        if found:
            chosen[:] = found
        return found

    fitted = fit(
        model,
        normalize,
        samples,
        (),
        replace(config, semi_supervised=False),
        device,
        share=share,
        warm=warm,
        on_progress=on_progress,
        pseudo_source=pseudo_labeled,
    )
    fitted.pseudo_label_share = len(chosen) / len(pool) if pool else 0.0
    return fitted


def pseudo_labels_of_pool(
    model: nn.Module,
    normalize: nn.Module,
    pool: Sequence[Sample],
    holdout: Sequence[Sample],
    config: TrainConfig,
    device: torch.device,
    *,
    at_least: int = 0,
) -> list[Sample]:
    """(path, class) of the pool images the model is sure of: confidence calibrated by a
    temperature fitted on the held-out images' true labels, at or above `pseudo_threshold`,
    at most an even share of the pool per class."""
    if not pool:
        return []
    temperature = 1.0
    if holdout:
        targets = torch.tensor([target for _, target in holdout])
        temperature = fit_temperature(_logits(model, normalize, holdout, config, device), targets)
    logits = _logits(model, normalize, pool, config, device)
    probabilities = torch.softmax(logits / temperature, dim=1)
    per_class = math.ceil(len(pool) / probabilities.shape[1])
    chosen = select_pseudo_labels(
        probabilities, config.pseudo_threshold, per_class, at_least=at_least
    )
    return [(pool[row][0], label) for row, label in chosen]


def fit_by_method(
    model: nn.Module,
    normalize: nn.Module,
    samples: Sequence[Sample],
    holdout: Sequence[Sample],
    unlabeled_paths: Sequence[str],
    config: TrainConfig,
    device: torch.device,
    **options: Any,
) -> FitResult:
    """`fit`, or `self_train` when semi-supervised by self-training (the held-out images then
    calibrate the confidence that picks pseudo-labels; they are never trained on)."""
    if config.semi_supervised and config.semi_method == "self_training" and unlabeled_paths:
        return self_train(
            model, normalize, samples, holdout, unlabeled_paths, config, device, **options
        )
    return fit(model, normalize, samples, unlabeled_paths, config, device, **options)
