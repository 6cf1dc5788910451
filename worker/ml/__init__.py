"""The CNN of the labeling loop, in plain PyTorch: it knows nothing of Django.

Callers hand it file paths of the preprocessed image cache, class indices and a `TrainConfig`;
it hands back metrics and probabilities. `worker.tasks` wires it to the services.
"""

from worker.ml.config import ARCHITECTURES, TrainConfig
from worker.ml.engine import EvalResult, TrainResult, evaluate, predict, train

__all__ = [
    "ARCHITECTURES",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "predict",
    "train",
]
