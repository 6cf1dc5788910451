"""The one configuration object of training and inference."""

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

# Models the factory builds; the keys are torchvision's model names.
ARCHITECTURES = ("resnet18", "mobilenet_v3_small", "resnet50")


@dataclass
class TrainConfig:
    arch: str = "resnet18"
    # Side of the square crop the network sees; the cache holds copies with a shorter side of
    # 160, so 128 leaves room for random crops without upscaling.
    image_size: int = 128
    batch_size: int = 32
    epochs: int = 10
    # At least this many optimizer steps whatever the data size: a first model trained on a
    # few dozen images would otherwise take ten steps in ten epochs and learn nothing.
    min_steps: int = 0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # 0: all cores of this machine. Set it to the cores a worker process is given, or several
    # worker processes on one machine fight over the same cores.
    num_threads: int = 0
    # Data loader processes; 0 decodes in the training process (the cached JPEGs are small).
    num_workers: int = 0
    device: str = "auto"  # "auto": CUDA when present, else CPU
    seed: int = 0
    # Deterministic algorithms and a seeded order: reproducible runs, somewhat slower.
    deterministic: bool = False
    # Try torchvision's ImageNet weights; without them (no network) train from scratch.
    pretrained: bool = True
    # A local checkpoint to start from (ours, or a plain state_dict of the same architecture).
    init_checkpoint: str = ""
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.arch!r}; use one of {', '.join(ARCHITECTURES)}"
            )
        for name in ("image_size", "batch_size", "epochs", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a plain dict (JSON from a database row), ignoring keys of other versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def apply_threads(config: TrainConfig) -> None:
    threads = config.num_threads or os.cpu_count() or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
