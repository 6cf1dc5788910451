"""Training, held-out evaluation, temperature calibration and batch prediction.

Checkpoints are written to a temporary name and renamed, so a reader (or a killed training)
never sees half a file. They hold {"format", "arch", "num_classes", "image_size",
"temperature", "state_dict", "config"}.
"""

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from worker.ml.config import TrainConfig, apply_threads, resolve_device
from worker.ml.data import Normalize, Sample, make_loader
from worker.ml.factory import build_model, replace_head

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
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
    logits, targets = [], []
    for images, batch_targets in loader:
        logits.append(model(normalize(images.to(device, non_blocking=True))).float().cpu())
        targets.append(batch_targets)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(targets)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Temperature scaling (Guo et al., 2017): the T minimising held-out NLL of softmax(z/T),
    so that a confidence of 0.9 is right about 90% of the time. Argmax, hence accuracy, is
    unchanged."""
    known = targets >= 0
    if known.sum() < 2:
        return 1.0
    logits, targets = logits[known].double(), targets[known]
    log_t = torch.zeros(1, dtype=torch.double, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    # A small held-out set that the model gets all right drives T toward 0 (ever sharper,
    # overconfident probabilities); sharpening beyond 2x is never trusted.
    return float(log_t.detach().exp().clamp(0.5, 20.0))


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


def save_checkpoint(payload: dict[str, Any], path: str) -> None:
    """Write to a temporary name beside `path`, flush it to disk, then rename: atomic."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of format {CHECKPOINT_FORMAT}")
    from torchvision import models

    model = models.get_model(payload["arch"], weights=None)
    replace_head(model, payload["arch"], payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


def train(
    train_samples: Sequence[Sample],
    holdout_samples: Sequence[Sample],
    *,
    num_classes: int,
    config: TrainConfig,
    checkpoint_path: str,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train on `train_samples`, calibrate and measure on `holdout_samples`, write the
    checkpoint to `checkpoint_path` (atomically) and return its figures."""
    if not train_samples:
        raise ValueError("nothing to train on")
    apply_threads(config)
    _seed(config)
    device = resolve_device(config)
    started = time.monotonic()
    built = build_model(config, num_classes)
    model = built.model.to(device)
    normalize = Normalize().to(device)
    loader = make_loader(train_samples, config, training=True, device=device)
    epochs = max(config.epochs, math.ceil(config.min_steps / max(1, len(loader))))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.learning_rate,
            total_steps=max(1, epochs * len(loader)),
            pct_start=0.2,
        )
        if config.learning_rate > 0
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    )
    for epoch in range(epochs):
        loss = train_one_epoch(
            model,
            normalize,
            loader,
            optimizer,
            scheduler,
            device,
            epoch=epoch,
            on_progress=on_progress,
        )
        logger.info("epoch %d/%d: training loss %.4f", epoch + 1, epochs, loss)
    holdout_loader = make_loader(holdout_samples, config, training=False, device=device)
    logits, targets = collect_logits(model, normalize, holdout_loader, device)
    temperature = fit_temperature(logits, targets)
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
        "trained %s on %d images in %.1fs on %s: held-out top-1 %.3f (%d images), T=%.2f",
        config.arch,
        len(train_samples),
        seconds,
        device,
        holdout.top1,
        holdout.count,
        temperature,
    )
    return TrainResult(
        checkpoint_path=checkpoint_path,
        weights_source=built.weights_source,
        device=str(device),
        seconds=seconds,
        train_size=len(train_samples),
        holdout_size=len(holdout_samples),
        epochs=epochs,
        temperature=temperature,
        holdout=holdout,
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
