"""Model checkpoints: written to a temporary name beside the target and renamed, so a reader (or
a killed training) never sees half a file. They hold {"format", "arch", "num_classes",
"image_size", "temperature", "state_dict", "config"}.
"""

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.ml.factory import new_model, replace_head

CHECKPOINT_FORMAT = 1


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
    model = new_model(payload["arch"])
    replace_head(model, payload["arch"], payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload
