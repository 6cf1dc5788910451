"""Semi-supervised learning from the unlabeled pool, FixMatch-style (Sohn et al., 2020).

Each unlabeled image is seen twice per step: a weakly augmented view (the labeled images'
crop and flip) and a strongly augmented one (RandAugment and a cut-out). Where the model is
at least `threshold` sure of the weak view, its answer becomes the strong view's target.
Pseudo-labels live for one step only: they are never stored, nor treated as ground truth.

Two departures from the paper, for CPU budgets of a few hundred steps: the weak view is
judged in eval mode without gradients (cheap, and steadier than batch statistics of a
half-trained model), and only the strong views that got a pseudo-label go through the network,
without moving batch norm's running statistics (strong views would skew them away from the
images the model is used on; with few steps that cost accuracy and calibration).
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from worker.ml.config import TrainConfig
from worker.ml.data import CachedImageDataset, train_transform


class WeakStrongPair:
    """uint8 image -> a (2, C, H, W) tensor: its weak view, then its strong view."""

    def __init__(self, size: int, hflip: bool):
        self.weak = train_transform(size, hflip)
        self.strong = v2.Compose(
            [
                train_transform(size, hflip),
                v2.RandAugment(num_ops=2, magnitude=9),
                # Cut-out: a grey patch hides part of the object.
                v2.RandomErasing(p=1.0, scale=(0.02, 0.2), value=127),
            ]
        )

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.weak(image), self.strong(image)])


def unlabeled_batches(
    paths: Sequence[str], config: TrainConfig, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless (batch, 2, C, H, W) uint8 batches of weak/strong pairs, reshuffled each pass."""
    batch_size = config.batch_size * config.unlabeled_ratio
    loader = DataLoader(
        # The dataset's targets are unused: -1 for every image.
        CachedImageDataset(
            [(path, -1) for path in paths], WeakStrongPair(config.image_size, config.hflip)
        ),
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(paths) > batch_size,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed + 1),
    )
    while True:
        for pairs, _ in loader:
            yield pairs


def pseudo_labels(weak_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the most probable class, whether its probability reaches `threshold`) per row."""
    confidence, targets = torch.softmax(weak_logits.detach().float(), dim=1).max(dim=1)
    return targets, confidence >= threshold


def consistency_loss(
    strong_logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy toward the pseudo-labels, averaged over all unlabeled rows (masked rows
    count zero), as in FixMatch: few confident rows early on mean a small pull."""
    per_row = F.cross_entropy(strong_logits, targets, reduction="none")
    return (per_row * mask.float()).mean()


@torch.no_grad()
def teacher_logits(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The model's logits for the weak views in eval mode; it goes back to training mode."""
    model.eval()
    try:
        logits: torch.Tensor = model(batch)
        return logits
    finally:
        model.train()


@contextmanager
def frozen_batch_norm_statistics(model: nn.Module) -> Iterator[None]:
    """Forward passes inside leave batch norm's running mean and variance as they were
    (momentum 0), while still normalising by the batch's own statistics."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
