"""worker.ml on its own: plain PyTorch, no database, no Celery."""

import logging
import math
import urllib.error
from typing import Any

import pytest
import torch
from torchvision import models

from tests.ml_data import write_colour_samples
from worker.ml import (
    TrainConfig,
    calibration,
    checkpoints,
    engine,
    evaluate,
    factory,
    predict,
    train,
)
from worker.ml.factory import build_model

# Small and quick: 32 px crops, one thread (the test machine is shared).
TINY: dict[str, Any] = {
    "arch": "resnet18",
    "image_size": 32,
    "batch_size": 8,
    "epochs": 3,
    "pretrained": False,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def colour_samples(tmp_path_factory):
    return write_colour_samples(tmp_path_factory.mktemp("colours"), per_class=14)


@pytest.fixture(scope="module")
def trained(colour_samples, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "m.pt"
    result = train(
        colour_samples[:30],
        colour_samples[30:],
        num_classes=3,
        config=TrainConfig(**TINY),
        checkpoint_path=str(path),
    )
    return result, path


def test_training_learns_distinct_classes_and_reports_held_out_figures(trained, colour_samples):
    result, path = trained
    holdout = colour_samples[30:]
    assert (result.train_size, result.holdout_size, result.holdout.count) == (30, 12, 12)
    # Chance is 1/3; colours this distinct are learnt in a few steps.
    assert result.holdout.top1 >= 0.75
    assert result.holdout.top5 is None  # three classes: top-5 does not apply
    assert sum(c["support"] for c in result.holdout.per_class.values()) == len(holdout)
    assert result.weights_source == "scratch" and result.device == "cpu"
    assert 0.5 <= result.temperature <= 20
    assert path.exists() and not list(path.parent.glob("*.tmp-*"))


def test_predict_gives_calibrated_rows_in_input_order(trained, colour_samples):
    result, path = trained
    holdout = colour_samples[30:]
    probabilities = predict(str(path), [p for p, _ in holdout], TrainConfig(**TINY))
    assert probabilities.shape == (len(holdout), 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(holdout)), atol=1e-5)
    hits = sum(
        int(row.argmax()) == target
        for row, (_, target) in zip(probabilities, holdout, strict=False)
    )
    assert hits / len(holdout) == pytest.approx(result.holdout.top1)


def test_evaluate_counts_a_class_the_model_lacks_as_a_miss(trained, colour_samples):
    _, path = trained
    holdout = colour_samples[30:]
    full = evaluate(str(path), holdout, TrainConfig(**TINY))
    unknown = evaluate(
        str(path), [(p, -1) for p, _ in holdout[:4]] + holdout[4:], TrainConfig(**TINY)
    )
    assert unknown.top1 <= full.top1 - 4 / len(holdout) + 1e-6


def test_temperature_scaling_softens_overconfident_logits():
    torch.manual_seed(0)
    targets = torch.randint(0, 3, (300,))
    # Right 70% of the time but with near-certain logits: badly overconfident.
    predicted = torch.where(torch.rand(300) < 0.7, targets, (targets + 1) % 3)
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 12
    temperature = calibration.fit_temperature(logits, targets)
    assert temperature > 3
    calibrated = torch.softmax(logits / temperature, dim=1).max(dim=1).values.mean()
    assert abs(float(calibrated) - 0.7) < 0.05


def test_model_from_a_local_checkpoint_keeps_its_backbone(tmp_path, caplog):
    source = models.resnet18(num_classes=1000)
    checkpoint = tmp_path / "local.pth"
    torch.save(source.state_dict(), checkpoint)
    config = TrainConfig(**TINY | {"init_checkpoint": str(checkpoint), "pretrained": True})
    with caplog.at_level(logging.INFO, logger="worker.ml.factory"):
        built = build_model(config, num_classes=3)
    assert built.weights_source == "checkpoint:local.pth"
    assert torch.equal(built.model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert built.model.fc.out_features == 3  # a fresh head for this project's classes
    assert "local checkpoint" in caplog.text


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    checkpoint = tmp_path / "other.pth"
    torch.save(models.mobilenet_v3_small().state_dict(), checkpoint)
    with pytest.raises(ValueError, match="does not fit"):
        build_model(TrainConfig(**TINY | {"init_checkpoint": str(checkpoint)}), num_classes=3)


def test_without_pretrained_weights_it_says_so_and_trains_from_scratch(monkeypatch, caplog):
    def offline(arch):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(factory, "_pretrained_state_dict", offline)
    with caplog.at_level(logging.WARNING, logger="worker.ml.factory"):
        built = build_model(TrainConfig(**TINY | {"pretrained": True}), num_classes=4)
    assert built.weights_source == "scratch"
    assert "falling back to training from scratch" in caplog.text
    assert built.model.fc.out_features == 4


def test_pretrained_weights_are_used_when_they_can_be_loaded(monkeypatch):
    imagenet = models.resnet18(num_classes=1000)
    monkeypatch.setattr(
        factory,
        "_pretrained_state_dict",
        lambda arch: (imagenet.state_dict(), "ResNet18_Weights.IMAGENET1K_V1"),
    )
    built = build_model(TrainConfig(**TINY | {"pretrained": True}), num_classes=2)
    assert built.weights_source == "pretrained:ResNet18_Weights.IMAGENET1K_V1"
    assert torch.equal(built.model.conv1.weight, imagenet.conv1.weight)


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "resnet50", "small_cnn"])
def test_the_other_architectures_build_with_the_right_head(arch):
    built = build_model(TrainConfig(**TINY | {"arch": arch}), num_classes=5)
    with torch.inference_mode():
        assert built.model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_a_failed_checkpoint_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    checkpoints.save_checkpoint({"format": 1, "weights": torch.ones(3)}, str(path))
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(engine.torch, "save", crash)
    with pytest.raises(OSError):
        checkpoints.save_checkpoint({"format": 1, "weights": torch.zeros(3)}, str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_small_data_set_still_gets_the_minimum_number_of_steps(colour_samples, tmp_path):
    steps = []
    config = TrainConfig(
        **TINY | {"epochs": 1, "min_steps": 7, "learning_rate": 0.0, "calibration_folds": 0}
    )
    result = train(
        colour_samples[:24],
        colour_samples[24:28],
        num_classes=3,
        config=config,
        checkpoint_path=str(tmp_path / "m.pt"),
        on_progress=lambda *step: steps.append(step),
    )
    # 24 images in batches of 8: 3 steps an epoch, so 3 epochs reach 7 steps.
    assert result.epochs == 3 and len(steps) == 9 and steps[-1] == (2, 3, 3)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        TrainConfig(arch="vgg11")


def test_metrics_of_an_empty_set():
    result = engine.metrics(torch.empty(0, 3), torch.empty(0, dtype=torch.long), 1.0, 3)
    assert (result.count, result.top1, math.isinf(result.nll)) == (0, 0.0, True)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)]
)
def test_the_workers_training_runs_in_the_configured_precision(
    colour_samples, tmp_path, monkeypatch, precision, dtype
):
    # The training loop itself (worker.ml.fitting) takes the fast path of a GPU trainer:
    # bfloat16 autocast (which a CPU runs too), while weights and losses stay float32.
    seen: set[torch.dtype] = set()
    built = factory.build_model

    def spying(config, num_classes):
        result = built(config, num_classes)
        conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
        # The training passes (evaluation takes the device's default: float32 on a CPU).
        conv.register_forward_hook(
            lambda module, args, out: seen.add(out.dtype) if module.training else None
        )
        return result

    monkeypatch.setattr(engine, "build_model", spying)
    result = train(
        colour_samples[:30],
        colour_samples[30:],
        num_classes=3,
        # The small ConvNet and no calibration folds: bfloat16 on a CPU is slow (with the
        # ResNet and its three fold models this one test took 25 s).
        config=TrainConfig(
            **{
                **TINY,
                "arch": "small_cnn",
                "epochs": 1,
                "precision": precision,
                "calibration_min_holdout": 0,
            }
        ),
        checkpoint_path=str(tmp_path / "m.pt"),
    )
    assert seen == {dtype}
    assert math.isfinite(result.holdout.nll)
    weights = torch.load(tmp_path / "m.pt", weights_only=False)["state_dict"]
    assert {w.dtype for w in weights.values() if w.is_floating_point()} == {torch.float32}


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
