"""The optimisation loop: labeled batches, and with semi-supervised training the unlabeled
pool's weak/strong pairs (worker.ml.semi), under a step count or a time budget.

The learning rate follows the elapsed share of the run (steps, or seconds under a budget):
a short linear warm-up, then cosine decay to zero, so a run cut by its budget still ends
with a small learning rate. A warm start peaks at WARM_LEARNING_RATE_SHARE of the rate: Adam's
first full-size steps would knock trained weights away from where they are good.
"""

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worker.ml.config import TrainConfig
from worker.ml.data import Sample, make_loader
from worker.ml.semi import (
    consistency_loss,
    frozen_batch_norm_statistics,
    pseudo_labels,
    teacher_logits,
    unlabeled_batches,
)

logger = logging.getLogger(__name__)

WARMUP_SHARE = 0.1
WARM_LEARNING_RATE_SHARE = 0.3


@dataclass
class FitResult:
    steps: int
    epochs: int
    seconds: float
    start_loss: float
    last_epoch_loss: float
    # Share of unlabeled views over the pseudo-label threshold in the last epoch.
    pseudo_label_share: float


def learning_rate_factor(progress: float) -> float:
    if progress < WARMUP_SHARE:
        return progress / WARMUP_SHARE
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - WARMUP_SHARE) / (1 - WARMUP_SHARE))))


def fit(
    model: nn.Module,
    normalize: nn.Module,
    samples: Sequence[Sample],
    unlabeled_paths: Sequence[str],
    config: TrainConfig,
    device: torch.device,
    *,
    share: float = 1.0,
    warm: bool = False,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> FitResult:
    """Train `model` in place for `share` of the configured epochs (or time budget)."""
    loader = make_loader(samples, config, training=True, device=device)
    per_epoch = max(1, len(loader))
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    total_steps = max(1, round(epochs * per_epoch * share))
    budget = config.time_budget_s * share
    semi = config.semi_supervised and len(unlabeled_paths) > 0
    unlabeled = unlabeled_batches(unlabeled_paths, config, device) if semi else None
    peak = config.learning_rate * (WARM_LEARNING_RATE_SHARE if warm else 1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=config.weight_decay)
    model.train()
    started, cpu_started = time.monotonic(), time.process_time()
    step, epoch, start_loss = 0, 0, math.nan
    epoch_loss, confident, views = 0.0, 0, 0

    def progress() -> float:
        if budget > 0:
            # CPU seconds of this process (all its threads), not wall time: on a shared
            # machine others' load would otherwise cut one arm of a comparison short.
            return (time.process_time() - cpu_started) / budget
        return step / total_steps

    while progress() < 1:
        epoch_loss, seen, confident, views = 0.0, 0, 0, 0
        for batch_index, (images, targets) in enumerate(loader):
            done = progress()
            if done >= 1:
                break
            for group in optimizer.param_groups:
                group["lr"] = peak * learning_rate_factor(done)
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            count = len(targets)
            labeled_loss = F.cross_entropy(model(normalize(images)), targets)
            loss = labeled_loss
            if unlabeled is not None and done >= config.semi_start_share:
                pairs = next(unlabeled).to(device, non_blocking=True)
                pseudo, mask = pseudo_labels(
                    teacher_logits(model, normalize(pairs[:, 0])), config.pseudo_threshold
                )
                confident += int(mask.sum())
                views += len(mask)
                if int(mask.sum()) >= 2:  # batch norm needs two rows in training mode
                    # Only the strong views with a pseudo-label are worth a forward pass; their
                    # distorted statistics stay out of batch norm's running averages.
                    with frozen_batch_norm_statistics(model):
                        strong = model(normalize(pairs[mask, 1]))
                    share = float(mask.float().mean())
                    loss = loss + config.unlabeled_weight * share * consistency_loss(
                        strong, pseudo[mask], torch.ones_like(pseudo[mask], dtype=torch.bool)
                    )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step == 0:
                start_loss = float(labeled_loss.detach())
            step += 1
            epoch_loss += float(labeled_loss.detach()) * count
            seen += count
            if on_progress is not None:
                on_progress(epoch, batch_index + 1, per_epoch)
        epoch_loss /= max(seen, 1)
        epoch += 1
        logger.info(
            "epoch %d/%s: training loss %.4f",
            epoch,
            "budget" if budget > 0 else math.ceil(total_steps / per_epoch),
            epoch_loss,
        )
    return FitResult(
        steps=step,
        epochs=epoch,
        seconds=time.monotonic() - started,
        start_loss=start_loss,
        last_epoch_loss=epoch_loss,
        pseudo_label_share=confident / views if views else 0.0,
    )
