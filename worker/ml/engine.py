"""Training (with its calibration), held-out evaluation and batch prediction.

Checkpoints are written to a temporary name and renamed, so a reader (or a killed training)
never sees half a file. They hold {"format", "arch", "num_classes", "image_size",
"temperature", "state_dict", "config"}.
"""

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from worker.ml.accel import accel_for, to_device
from worker.ml.calibration import Calibration, calibrate
from worker.ml.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from worker.ml.config import (
    TrainConfig,
    apply_threads,
    resolve_arch,
    resolve_device,
    resolve_image_size,
)
from worker.ml.data import Normalize, Sample, make_loader
from worker.ml.factory import build_model, new_model, replace_head, warm_state
from worker.ml.selftrain import fit_by_method

logger = logging.getLogger(__name__)

# Called after each training step with (epoch, step, steps per epoch); the caller decides
# what to do with it (the service records a heartbeat).
ProgressCallback = Callable[[int, int, int], None]


@dataclass
class EvalResult:
    count: int
    top1: float
    # Top-5 accuracy where it applies (more than five classes), else None.
    top5: float | None
    # Mean negative log-likelihood of the calibrated probabilities (samples of known class).
    nll: float
    # class index -> {"support", "precision", "recall"}
    # {"support": n, "recall": r, "precision": p}; recall and precision None where undefined.
    per_class: dict[int, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class TrainResult:
    checkpoint_path: str
    weights_source: str
    device: str
    seconds: float
    train_size: int
    holdout_size: int
    epochs: int
    temperature: float
    holdout: EvalResult
    # The architecture trained ("auto" resolved by device).
    arch: str = ""
    unlabeled_size: int = 0
    steps: int = 0
    # Labeled-batch loss of the first step: lower from a warm start.
    start_loss: float = 0.0
    # Share of the unlabeled views that got a pseudo-label over the last training epoch.
    pseudo_label_share: float = 0.0
    ece: float = 0.0
    reliability: list[dict[str, float]] = field(default_factory=list)
    calibration_method: str = ""
    calibration_size: int = 0


def _seed(config: TrainConfig) -> None:
    torch.manual_seed(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def train_one_epoch(
    model: nn.Module,
    normalize: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    device: torch.device,
    *,
    epoch: int,
    on_progress: ProgressCallback | None = None,
) -> float:
    model.train()
    total_loss, seen = 0.0, 0
    for step, (images, targets) in enumerate(loader):
        images = normalize(images.to(device, non_blocking=True))
        targets = targets.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(targets)
        seen += len(targets)
        if on_progress is not None:
            on_progress(epoch, step + 1, len(loader))
    return total_loss / max(seen, 1)


@torch.inference_mode()
def collect_logits(
    model: nn.Module,
    normalize: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, int]],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets of every sample, in loader order (eval loaders do not shuffle)."""
    model.eval()
    accel = accel_for(device)  # bfloat16 on a GPU that has it; float32 logits either way
    logits, targets = [], []
    for images, batch_targets in loader:
        with accel.autocast():
            logits.append(model(normalize(to_device(images, accel))).float().cpu())
        targets.append(batch_targets)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(targets)


def metrics(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, num_classes: int
) -> EvalResult:
    """Accuracy and per-class figures. A target of -1 (a class this model lacks) counts wrong."""
    count = len(targets)
    if count == 0:
        return EvalResult(count=0, top1=0.0, top5=None, nll=math.inf)
    predicted = logits.argmax(dim=1)
    correct = predicted == targets
    top5 = None
    if num_classes > 5:
        top = logits.topk(5, dim=1).indices
        top5 = float((top == targets.unsqueeze(1)).any(dim=1).float().mean())
    known = targets >= 0
    nll = (
        float(F.cross_entropy(logits[known] / temperature, targets[known]))
        if known.any()
        else math.inf
    )
    per_class: dict[int, dict[str, float | None]] = {}
    for index in range(num_classes):
        support = int((targets == index).sum())
        predicted_as = int((predicted == index).sum())
        hits = int((correct & (targets == index)).sum())
        per_class[index] = {
            "support": support,
            "recall": hits / support if support else None,
            "precision": hits / predicted_as if predicted_as else None,
        }
    return EvalResult(
        count=count, top1=float(correct.float().mean()), top5=top5, nll=nll, per_class=per_class
    )


def _fold_logits(
    init_state: dict[str, Any],
    samples: Sequence[Sample],
    holdout: Sequence[Sample],
    unlabeled_paths: Sequence[str],
    config: TrainConfig,
    num_classes: int,
    device: torch.device,
    on_progress: ProgressCallback | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-fold logits of every training sample: `config.calibration_folds` models, each
    trained by the cold recipe on the other folds, predict the fold they never saw. Each
    trains for its share of the data of the steps (or budget): as many epochs as the main
    model, so about as sure of itself, at (k-1)/k of the cost."""
    folds = config.calibration_folds
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(config.seed))
    logits, targets = [], []
    for fold in range(folds):
        held = {int(i) for i in order[fold::folds]}
        model = new_model(config.arch)
        replace_head(model, config.arch, num_classes)
        model.load_state_dict(init_state)
        model.to(device)
        normalize = Normalize().to(device)
        rest = [s for i, s in enumerate(samples) if i not in held]
        fit_by_method(
            model,
            normalize,
            rest,
            holdout,
            unlabeled_paths,
            config,
            device,
            share=len(rest) / len(samples),
            on_progress=on_progress,
        )
        loader = make_loader(
            [samples[i] for i in sorted(held)], config, training=False, device=device
        )
        fold_logits, fold_targets = collect_logits(model, normalize, loader, device)
        logits.append(fold_logits)
        targets.append(fold_targets)
    return torch.cat(logits), torch.cat(targets)


def train(
    train_samples: Sequence[Sample],
    holdout_samples: Sequence[Sample],
    *,
    num_classes: int,
    config: TrainConfig,
    checkpoint_path: str,
    on_progress: ProgressCallback | None = None,
    unlabeled_paths: Sequence[str] = (),
) -> TrainResult:
    """Train on `train_samples` (and, semi-supervised, on `unlabeled_paths`), calibrate, measure
    on `holdout_samples`, write the checkpoint to `checkpoint_path` (atomically) and return
    its figures.

    The temperature is fitted on the held-out images; while they are fewer than
    `calibration_min_holdout`, also on out-of-fold predictions over the training images."""
    if not train_samples:
        raise ValueError("nothing to train on")
    apply_threads(config)
    _seed(config)
    device = resolve_device(config)
    config = replace(
        config,
        arch=resolve_arch(config, device),
        image_size=resolve_image_size(config, device),
    )
    unlabeled = list(unlabeled_paths)[: config.max_unlabeled] if config.semi_supervised else []
    started = time.monotonic()
    cold = build_model(config, num_classes)
    cold_state = copy.deepcopy(cold.model.state_dict())
    warm_weights = warm_state(config, config.arch, num_classes)
    model = cold.model
    weights_source = cold.weights_source
    if warm_weights is not None:
        model.load_state_dict(warm_weights)
        weights_source = f"warm:{Path(config.warm_start).name}"
    model.to(device)
    normalize = Normalize().to(device)
    warm = warm_weights is not None
    fitted = fit_by_method(
        model,
        normalize,
        train_samples,
        holdout_samples,
        unlabeled,
        config,
        device,
        share=config.warm_epochs_share if warm else 1.0,
        warm=warm,
        on_progress=on_progress,
    )
    logger.info(
        "%s trained %d steps (%d epochs, %.1fs): last epoch loss %.4f, pseudo-labels %.0f%%",
        config.arch,
        fitted.steps,
        fitted.epochs,
        fitted.seconds,
        fitted.last_epoch_loss,
        100 * fitted.pseudo_label_share,
    )
    holdout_loader = make_loader(holdout_samples, config, training=False, device=device)
    logits, targets = collect_logits(model, normalize, holdout_loader, device)
    pool_logits, pool_targets, method = logits, targets, "holdout"
    folds = config.calibration_folds
    if len(holdout_samples) < config.calibration_min_holdout and folds >= 2:
        if len(train_samples) >= 2 * folds:
            fold_logits, fold_targets = _fold_logits(
                cold_state,
                train_samples,
                holdout_samples,
                unlabeled,
                config,
                num_classes,
                device,
                on_progress,
            )
            pool_logits = torch.cat([logits, fold_logits])
            pool_targets = torch.cat([targets, fold_targets])
            method = f"cross-validation ({folds} folds) and holdout"
    calibration: Calibration = calibrate(pool_logits, pool_targets, method=method)
    temperature = calibration.temperature
    holdout = metrics(logits, targets, temperature, num_classes)
    save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": config.arch,
            "num_classes": num_classes,
            "image_size": config.image_size,
            "temperature": temperature,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "config": config.to_dict(),
        },
        checkpoint_path,
    )
    seconds = time.monotonic() - started
    logger.info(
        "trained %s on %d images (+%d unlabeled) in %.1fs on %s: held-out top-1 %.3f "
        "(%d images), T=%.2f, ECE %.3f (%s, %d images)",
        config.arch,
        len(train_samples),
        len(unlabeled),
        seconds,
        device,
        holdout.top1,
        holdout.count,
        temperature,
        calibration.ece,
        calibration.method,
        calibration.size,
    )
    return TrainResult(
        checkpoint_path=checkpoint_path,
        weights_source=weights_source,
        device=str(device),
        seconds=seconds,
        train_size=len(train_samples),
        holdout_size=len(holdout_samples),
        epochs=fitted.epochs,
        temperature=temperature,
        holdout=holdout,
        arch=config.arch,
        unlabeled_size=len(unlabeled),
        steps=fitted.steps,
        start_loss=fitted.start_loss,
        pseudo_label_share=fitted.pseudo_label_share,
        ece=calibration.ece,
        reliability=calibration.reliability,
        calibration_method=calibration.method,
        calibration_size=calibration.size,
    )


def _checkpoint_config(payload: dict[str, Any], config: TrainConfig) -> TrainConfig:
    """The caller's loader settings with the checkpoint's own input size."""
    return TrainConfig.from_dict(
        config.to_dict() | {"arch": payload["arch"], "image_size": payload["image_size"]}
    )


def evaluate(checkpoint_path: str, samples: Sequence[Sample], config: TrainConfig) -> EvalResult:
    """Figures of a stored model on `samples` (class indices of that model; -1: unknown)."""
    apply_threads(config)
    device = resolve_device(config)
    model, payload = load_checkpoint(checkpoint_path, device)
    loader = make_loader(
        samples, _checkpoint_config(payload, config), training=False, device=device
    )
    logits, targets = collect_logits(model, Normalize().to(device), loader, device)
    return metrics(logits, targets, payload["temperature"], payload["num_classes"])


def predict(checkpoint_path: str, paths: Sequence[str], config: TrainConfig) -> torch.Tensor:
    """Calibrated class probabilities, one row per path, in order."""
    apply_threads(config)
    device = resolve_device(config)
    model, payload = load_checkpoint(checkpoint_path, device)
    loader = make_loader(
        [(path, -1) for path in paths],
        _checkpoint_config(payload, config),
        training=False,
        device=device,
    )
    logits, _ = collect_logits(model, Normalize().to(device), loader, device)
    if len(logits) == 0:
        return torch.empty(0, payload["num_classes"])
    return torch.softmax(logits / payload["temperature"], dim=1)
