"""The ML code behind plain data: what annotate.services.ml calls through worker.tasks.

Arguments and answers are lists, dicts and numbers, so the services need nothing of PyTorch
(and never import this package: the task hands them this backend).
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from worker.ml import engine
from worker.ml.config import TrainConfig


class TorchBackend:
    def train(
        self,
        train_samples: Sequence[tuple[str, int]],
        holdout_samples: Sequence[tuple[str, int]],
        *,
        num_classes: int,
        config: dict[str, Any],
        checkpoint_path: str,
        on_progress: Callable[[int, int, int], None] | None = None,
        unlabeled_paths: Sequence[str] = (),
    ) -> dict[str, Any]:
        result = engine.train(
            train_samples,
            holdout_samples,
            num_classes=num_classes,
            config=TrainConfig.from_dict(config),
            checkpoint_path=checkpoint_path,
            on_progress=on_progress,
            unlabeled_paths=unlabeled_paths,
        )
        return asdict(result)

    def evaluate(
        self, checkpoint_path: str, samples: Sequence[tuple[str, int]], *, config: dict[str, Any]
    ) -> dict[str, Any]:
        return asdict(engine.evaluate(checkpoint_path, samples, TrainConfig.from_dict(config)))

    def predict(
        self, checkpoint_path: str, paths: Sequence[str], *, config: dict[str, Any]
    ) -> list[list[float]]:
        return engine.predict(checkpoint_path, paths, TrainConfig.from_dict(config)).tolist()
