"""The one configuration object of training and inference."""

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

# Models the factory builds: torchvision's model names, and our small ConvNet ("small_cnn").
# "auto" picks by device: CPU_ARCH on a CPU, GPU_ARCH on CUDA.
ARCHITECTURES = ("auto", "small_cnn", "resnet18", "mobilenet_v3_small", "resnet50")
# The fastest architecture that is not less accurate on bench/ml_label_efficiency.py --archs
# (README: the CPU default); a GPU has the time for a residual network.
CPU_ARCH = "small_cnn"
SEMI_METHODS = ("self_training", "fixmatch")
GPU_ARCH = "resnet18"
CPU_IMAGE_SIZE = 64
GPU_IMAGE_SIZE = 128


@dataclass
class TrainConfig:
    arch: str = "auto"
    # Side of the square crop the network sees; the cache holds copies with a shorter side of
    # 160, so 128 leaves room for random crops without upscaling. 0: by device, CPU_IMAGE_SIZE
    # on a CPU (a quarter of the pixels of 128, so about a quarter of the time), else 128.
    image_size: int = 0
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
    # "auto": bfloat16 autocast and channels-last on a GPU that has bfloat16, plain float32
    # elsewhere (worker.ml.accel); "bf16" or "fp32" to choose.
    precision: str = "auto"
    seed: int = 0
    # Deterministic algorithms and a seeded order: reproducible runs, somewhat slower.
    deterministic: bool = False
    # Try torchvision's ImageNet weights; without them (no network) train from scratch.
    pretrained: bool = True
    # A local checkpoint to start from (ours, or a plain state_dict of the same architecture).
    init_checkpoint: str = ""
    top_k: int = 5
    # Train for this many CPU seconds of the process instead of `epochs` (0: by epochs), the
    # learning rate following the elapsed share; the bench gives each arm the same budget.
    time_budget_s: float = 0.0
    # Horizontal flips as augmentation: right for photos and shapes, wrong for digits/text.
    hflip: bool = True
    # Semi-supervised learning from the unlabeled images: pseudo-labels where the model is at
    # least `pseudo_threshold` sure (self-training: calibrated, of the whole pool each round;
    # FixMatch: of each weakly augmented view), their loss weighted by `unlabeled_weight`.
    semi_supervised: bool = True
    # "self_training" (worker.ml.selftrain: pseudo-labels of the whole pool, each round, from the
    # model trained on the labels for `self_training_split` of the run) or "fixmatch"
    # (worker.ml.semi). Self-training is the default: at CPU budgets FixMatch is worse than no
    # unlabeled images at all (README, issue 22).
    semi_method: str = "self_training"
    self_training_split: float = 0.4
    # Judgings of the pool: the first at `self_training_split`, the others spread over the
    # rest of the run, each by the model the previous pseudo-labels improved (each round
    # restarts the learning rate's warm-up and decay, so a judge has converged).
    self_training_rounds: int = 3
    # Pseudo-labels are taken only when at least this share of the verified labels' number
    # (0: any number).
    pseudo_min_share: float = 1.0
    # The most pseudo-labels per batch (a share of it).
    pseudo_batch_share: float = 0.75
    pseudo_threshold: float = 0.95
    unlabeled_weight: float = 1.0
    # Unlabeled images per labeled one in a step (FixMatch's mu; 7 in the paper, less on CPU).
    unlabeled_ratio: int = 1
    # The first share of the run is supervised only: a model that is not yet sure of anything
    # gives no pseudo-label, so unlabeled batches would cost time and teach nothing.
    semi_start_share: float = 0.3
    # The most unlabeled images a training reads (a sample of the pool beyond that).
    max_unlabeled: int = 20000
    # Calibration: with fewer held-out images than this, the temperature is fitted on
    # out-of-fold predictions of `calibration_folds` models trained on the other folds.
    calibration_min_holdout: int = 300
    calibration_folds: int = 3
    # A warm start: the active model's checkpoint, used when it has the same architecture,
    # input size and classes; it then trains for `warm_epochs_share` of the epochs (or budget).
    warm_start: str = ""
    warm_epochs_share: float = 0.35

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.arch!r}; use one of {', '.join(ARCHITECTURES)}"
            )
        if self.image_size < 0:
            raise ValueError("image_size must be at least 1 (0: by device)")
        for name in ("batch_size", "epochs", "top_k", "unlabeled_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.pseudo_threshold <= 1:
            raise ValueError("pseudo_threshold must be in (0, 1]")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError("precision must be auto, bf16 or fp32")
        if self.semi_method not in SEMI_METHODS:
            raise ValueError(f"semi_method must be one of {', '.join(SEMI_METHODS)}")
        if not 0 < self.self_training_split < 1:
            raise ValueError("self_training_split must be in (0, 1)")
        if self.self_training_rounds < 1:
            raise ValueError("self_training_rounds must be at least 1")
        if not 0 < self.pseudo_batch_share < 1:
            raise ValueError("pseudo_batch_share must be in (0, 1)")
        if not 0 < self.warm_epochs_share <= 1:
            raise ValueError("warm_epochs_share must be in (0, 1]")

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


def resolve_arch(config: TrainConfig, device: torch.device) -> str:
    if config.arch != "auto":
        return config.arch
    return GPU_ARCH if device.type == "cuda" else CPU_ARCH


def resolve_image_size(config: TrainConfig, device: torch.device) -> int:
    if config.image_size:
        return config.image_size
    return GPU_IMAGE_SIZE if device.type == "cuda" else CPU_IMAGE_SIZE


def apply_threads(config: TrainConfig) -> None:
    threads = config.num_threads or os.cpu_count() or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
