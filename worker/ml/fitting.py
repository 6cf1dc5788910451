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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from worker.ml.accel import accel_for, prepare_model, to_device
from worker.ml.config import TrainConfig
from worker.ml.data import Sample, endless, make_loader
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


def _mixed_loaders(
    samples: Sequence[Sample],
    pseudo: Sequence[Sample],
    config: TrainConfig,
    device: torch.device,
) -> tuple[DataLoader[tuple[torch.Tensor, int]], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Labeled batches and endless pseudo-labeled ones that together make one batch of
    `batch_size` (a step costs what a supervised one does): pseudo-labels in proportion to
    their number, at most `pseudo_batch_share`, at least one."""
    share = min(config.pseudo_batch_share, len(pseudo) / (len(pseudo) + len(samples)))
    extra = max(1, min(config.batch_size - 2, round(config.batch_size * share)))
    labeled = make_loader(
        samples, replace(config, batch_size=config.batch_size - extra), training=True, device=device
    )
    return labeled, endless(pseudo, replace(config, batch_size=extra), device)


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
    pseudo_source: Callable[[], Sequence[Sample]] | None = None,
) -> FitResult:
    """Train `model` in place for `share` of the configured epochs (or time budget).

    Self-training (worker.ml.selftrain): once `self_training_split` of the run is done,
    `pseudo_source()` gives model-decided (image, class) pairs; from then on part of each
    batch is drawn from them (in proportion, at most `pseudo_batch_share`), their loss weighted by
    `unlabeled_weight`, within the same budget; in `self_training_rounds` rounds, each
    judging the pool again. The learning rate's warm-up and decay run once before that point
    and once in each round (each judge has converged; each student starts at the full
    rate)."""
    loader = make_loader(samples, config, training=True, device=device)
    pseudo_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
    per_epoch = max(1, len(loader))
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    total_steps = max(1, round(epochs * per_epoch * share))
    budget = config.time_budget_s * share
    semi = config.semi_supervised and len(unlabeled_paths) > 0
    unlabeled = unlabeled_batches(unlabeled_paths, config, device) if semi else None
    peak = config.learning_rate * (WARM_LEARNING_RATE_SHARE if warm else 1.0)
    # On a GPU: bfloat16 autocast and channels-last batches; on a CPU (auto) plain float32.
    accel = accel_for(device, config.precision)
    prepare_model(model, accel)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=config.weight_decay)
    model.train()
    started, cpu_started = time.monotonic(), time.process_time()
    step, epoch, start_loss = 0, 0, math.nan
    # The learning rate's cycle (shares of the run): with self-training, a first one for the
    # supervised teacher, a second one, at the full rate again, once pseudo-labels join.
    split, rounds = config.self_training_split, config.self_training_rounds
    judgings = [split + (1 - split) * r / rounds for r in range(rounds)] if pseudo_source else []
    cycle = (0.0, judgings[0] if judgings else 1.0)
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
            if pseudo_source is not None and judgings and done >= judgings[0]:
                judgings.pop(0)
                decided = pseudo_source()
                if not decided and pseudo_batches is None:
                    # Sure of nothing: one last cycle on the labels, no more judgings (each
                    # restart of the learning rate without new images only costs steps).
                    judgings.clear()
                cycle = (done, judgings[0] if judgings else 1.0)
                if decided:
                    loader, pseudo_batches = _mixed_loaders(samples, decided, config, device)
                    break  # the epoch goes on with the mixed batches
            for group in optimizer.param_groups:
                group["lr"] = peak * learning_rate_factor((done - cycle[0]) / (cycle[1] - cycle[0]))
            images = to_device(images, accel)
            targets = targets.to(device, non_blocking=True)
            count = len(targets)
            # The forward passes and losses under autocast (the losses run in float32 there).
            with accel.autocast():
                if pseudo_batches is None:
                    labeled_loss = F.cross_entropy(model(normalize(images)), targets)
                    loss = labeled_loss
                else:
                    # One forward pass over both: batch norm sees the images the model will judge.
                    extra_images, extra_targets = next(pseudo_batches)
                    logits = model(normalize(torch.cat([images, extra_images.to(device)])))
                    labeled_loss = F.cross_entropy(logits[:count], targets)
                    loss = labeled_loss + config.unlabeled_weight * F.cross_entropy(
                        logits[count:], extra_targets.to(device)
                    )
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
