"""Build a torchvision classifier: from a local checkpoint, pretrained weights, or scratch."""

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torchvision import models

from worker.ml.config import TrainConfig

logger = logging.getLogger(__name__)

# Seconds to wait for the weights server: without this a host that drops packets would hang
# the training task until its time limit.
DOWNLOAD_TIMEOUT_SECONDS = 30


@dataclass
class BuiltModel:
    model: nn.Module
    # "checkpoint:<path>", "pretrained:<weights>" or "scratch": recorded with the version.
    weights_source: str


class SmallConvNet(nn.Module):
    """A strided stem and three 3x3 convolution blocks (batch norm, ReLU, pooling between)
    with a linear head: ~0.1 M parameters, as fast as mobilenet_v3_small on a CPU at 64 px
    and more accurate on small images (bench/ml_label_efficiency.py --archs)."""

    def __init__(self, num_classes: int = 1000, width: int = 32):
        super().__init__()

        def block(inputs: int, outputs: int, stride: int = 1) -> list[nn.Module]:
            return [
                nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(3, width // 2, stride=2),
            *block(width // 2, width),
            nn.MaxPool2d(2),
            *block(width, width * 2),
            nn.MaxPool2d(2),
            *block(width * 2, width * 4),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.dropout(self.features(x)))
        return logits


def new_model(arch: str) -> nn.Module:
    """An untrained network of `arch` (ImageNet's 1000 outputs until replace_head)."""
    if arch == "small_cnn":
        return SmallConvNet()
    model: nn.Module = models.get_model(arch, weights=None)
    return model


def replace_head(model: nn.Module, arch: str, num_classes: int) -> None:
    """Swap the ImageNet classifier for one with `num_classes` outputs."""
    # (A Module's submodules are typed Tensor | Module; these are torchvision's layers.)
    if arch.startswith("resnet") or arch == "small_cnn":
        model.fc = nn.Linear(cast(nn.Linear, model.fc).in_features, num_classes)
    elif arch.startswith("mobilenet_v3"):
        classifier = cast(nn.Sequential, model.classifier)
        last = cast(nn.Linear, classifier[-1])
        classifier[-1] = nn.Linear(last.in_features, num_classes)
    else:
        raise ValueError(f"no classifier head known for {arch}")


def _pretrained_state_dict(arch: str) -> tuple[dict[str, Any], str]:
    """torchvision's default ImageNet weights for `arch` (from its cache, or downloaded)."""
    weights = models.get_model_weights(arch).DEFAULT
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        return weights.get_state_dict(progress=False, check_hash=True), str(weights)
    finally:
        socket.setdefaulttimeout(previous)


def _checkpoint_state_dict(path: str) -> dict[str, Any]:
    """Our checkpoints hold {"state_dict": ...}; a bare state_dict is accepted too."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} holds no state_dict")
    return state


def _load_backbone(model: nn.Module, state: dict[str, Any]) -> list[str]:
    """Load every tensor whose name and shape match; the classifier head of another class
    count is left freshly initialised. Returns the names left out."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(usable))
    if len(usable) < len(own) / 2:
        raise ValueError("the checkpoint does not fit this architecture")
    model.load_state_dict(usable, strict=False)
    return missing


def build_model(config: TrainConfig, num_classes: int) -> BuiltModel:
    """`config.arch` is a concrete architecture here (engine resolves "auto")."""
    model = new_model(config.arch)
    if config.init_checkpoint:
        # An explicit local checkpoint is a deliberate choice: failing to read it is an error.
        state = _checkpoint_state_dict(config.init_checkpoint)
        replace_head(model, config.arch, num_classes)
        fresh = _load_backbone(model, state)
        logger.info(
            "model %s starts from the local checkpoint %s (fresh: %s)",
            config.arch,
            config.init_checkpoint,
            ", ".join(fresh) or "nothing",
        )
        return BuiltModel(model, f"checkpoint:{Path(config.init_checkpoint).name}")
    if config.pretrained and config.arch != "small_cnn":  # no published weights for ours
        try:
            state, weights_name = _pretrained_state_dict(config.arch)
        except (OSError, RuntimeError, ValueError) as error:
            # No network (URLError is an OSError), a broken cache or a bad hash.
            logger.warning(
                "pretrained weights for %s could not be loaded (%s: %s); "
                "falling back to training from scratch",
                config.arch,
                type(error).__name__,
                error,
            )
        else:
            model.load_state_dict(state)
            replace_head(model, config.arch, num_classes)
            logger.info("model %s starts from torchvision's %s", config.arch, weights_name)
            return BuiltModel(model, f"pretrained:{weights_name}")
    else:
        logger.info("model %s trains from scratch (pretrained weights not requested)", config.arch)
    replace_head(model, config.arch, num_classes)
    return BuiltModel(model, "scratch")


def warm_state(config: TrainConfig, arch: str, num_classes: int) -> dict[str, Any] | None:
    """The active model's weights when they fit this training (same architecture, input size
    and classes), else None: a cold start."""
    if not config.warm_start:
        return None
    try:
        payload = torch.load(config.warm_start, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as error:
        logger.warning("no warm start: %s can't be read (%s)", config.warm_start, error)
        return None
    found = (payload.get("arch"), payload.get("num_classes"), payload.get("image_size"))
    if found != (arch, num_classes, config.image_size):
        logger.info("no warm start: the active model is %s, this training %s", found, arch)
        return None
    state: dict[str, Any] = payload["state_dict"]
    return state
