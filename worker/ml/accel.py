"""The fast path of a GPU trainer: mixed precision (bfloat16 autocast), channels-last memory
layout and batches moved to the device without blocking, as plain functions of a device and a
dtype, so that each path runs on a CPU as well (autocast supports bfloat16 there too) and is
tested without a GPU.

bfloat16 keeps float32's exponent range, so unlike float16 it needs no loss scaling; weights,
optimizer state and the loss stay float32 (autocast only runs the matrix products and
convolutions in bfloat16). Channels-last lets cuDNN use its NHWC tensor-core kernels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Accel:
    device: torch.device
    # The autocast dtype (torch.bfloat16), or None for plain float32.
    dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self) -> AbstractContextManager[object]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def accel_for(
    device: torch.device, precision: str = "auto", channels_last: bool | None = None
) -> Accel:
    """`precision`: "bf16", "fp32", or "auto" (bf16 on a GPU that has it, else fp32); channels
    last by default on CUDA only (on a CPU it rarely pays)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return Accel(
        device=device,
        dtype=torch.bfloat16 if precision == "bf16" else None,
        channels_last=device.type == "cuda" if channels_last is None else channels_last,
    )


def prepare_model(model: nn.Module, accel: Accel) -> nn.Module:
    """The model on the device, in the memory layout of the batches it will get."""
    model = model.to(accel.device)
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)  # its 4-d weights, reordered
    return model


def to_device(images: torch.Tensor, accel: Accel) -> torch.Tensor:
    """A uint8 batch from the loader onto the device (asynchronously from pinned memory), in
    the model's layout; still uint8 (normalising on the device is cheaper than moving floats)."""
    return images.to(accel.device, non_blocking=True).contiguous(memory_format=accel.memory_format)


def train_steps(
    model: nn.Module,
    normalize: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    accel: Accel,
) -> Iterator[float]:
    """One optimizer step per batch; yields each step's loss (reading it synchronises with the
    device: callers that want speed read it rarely)."""
    model.train()
    for images, targets in batches:
        inputs = normalize(to_device(images, accel))
        targets = targets.to(accel.device, non_blocking=True)
        with accel.autocast():
            logits = model(inputs)
        # The loss in float32 whatever the forward pass ran in.
        loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        yield float(loss.detach())


@torch.inference_mode()
def infer(
    model: nn.Module,
    normalize: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    accel: Accel,
) -> torch.Tensor:
    """float32 logits of every batch, on the CPU, in order."""
    model.eval()
    out = []
    for images, _ in batches:
        with accel.autocast():
            logits = model(normalize(to_device(images, accel)))
        out.append(logits.float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)
