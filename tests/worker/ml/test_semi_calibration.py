"""Issue 22 in worker.ml: pseudo-labels, cross-validated calibration, warm starts, the CPU
default architecture."""

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.ml_data import write_colour_samples
from worker.ml import TrainConfig, engine, selftrain, train
from worker.ml.calibration import calibrate, reliability
from worker.ml.checkpoints import load_checkpoint
from worker.ml.config import resolve_arch
from worker.ml.data import CachedImageDataset, eval_transform
from worker.ml.semi import consistency_loss, pseudo_labels

TINY: dict[str, Any] = {
    "image_size": 32,
    "batch_size": 8,
    "epochs": 3,
    "pretrained": False,
    "num_threads": 1,
}


def test_only_weak_views_at_or_above_the_threshold_become_pseudo_labels():
    # Softmax rows of known confidence: log-probabilities are logits of those probabilities.
    probabilities = torch.tensor(
        [[0.96, 0.02, 0.02], [0.94, 0.03, 0.03], [0.05, 0.95, 0.0], [0.2, 0.3, 0.5]]
    )
    logits = probabilities.clamp_min(1e-9).log()
    targets, mask = pseudo_labels(logits, threshold=0.95)
    assert targets.tolist() == [0, 0, 1, 2]
    assert mask.tolist() == [True, False, True, False]
    # A lower threshold takes the less sure rows too; 1.0 takes none.
    assert pseudo_labels(logits, threshold=0.5)[1].tolist() == [True, True, True, True]
    assert pseudo_labels(logits, threshold=1.0)[1].tolist() == [False] * 4


def test_masked_rows_add_nothing_to_the_consistency_loss():
    strong = torch.tensor([[4.0, 0.0], [0.0, 4.0], [9.0, -9.0]], requires_grad=True)
    targets = torch.tensor([0, 0, 1])
    mask = torch.tensor([True, False, False])
    loss = consistency_loss(strong, targets, mask)
    only_first = torch.nn.functional.cross_entropy(strong[:1], targets[:1]) / 3
    assert float(loss.detach()) == pytest.approx(float(only_first.detach()))
    loss.backward()
    assert strong.grad is not None and strong.grad[1:].abs().sum() == 0
    assert float(consistency_loss(strong, targets, torch.zeros(3, dtype=torch.bool)).detach()) == 0


def overconfident(count, seed=0):
    """Right 70% of the time with near-certain logits."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 4, (count,), generator=generator)
    right = torch.rand(count, generator=generator) < 0.7
    predicted = torch.where(right, targets, (targets + 1) % 4)
    noise = torch.rand(count, 4, generator=generator)
    return torch.nn.functional.one_hot(predicted, 4).float() * 8 + noise, targets


def test_cross_validated_calibration_softens_overconfident_logits():
    logits, targets = overconfident(400)
    raw_ece, _ = reliability(torch.softmax(logits, dim=1), targets)
    result = calibrate(logits, targets, folds=5, method="cross-validation")
    assert raw_ece > 0.25  # claims ~0.999, right 70% of the time
    assert result.temperature > 1
    assert result.ece < 0.06 and result.ece < raw_ece / 4
    assert (result.size, result.method) == (400, "cross-validation")
    # Each band: mean claimed confidence, share right, count; the counts add up.
    assert sum(band["count"] for band in result.reliability) == 400
    for band in result.reliability:
        assert band["low"] <= band["claimed"] <= band["high"]
        assert 0 <= band["measured"] <= 1


def test_the_figures_of_cross_validation_are_not_graded_on_the_fitting_images():
    # Ten images: the temperature fitted on all of them grades them better than it should;
    # cross-validation fits each fold's temperature without that fold.
    logits, targets = overconfident(10, seed=3)
    cross = calibrate(logits, targets, folds=5)
    fitted = torch.softmax(logits / cross.temperature, dim=1)
    self_graded, _ = reliability(fitted, targets)
    assert cross.ece != pytest.approx(self_graded)


def test_unknown_targets_are_left_out_of_calibration():
    logits, targets = overconfident(100)
    with_unknown = torch.cat([targets[:90], torch.full((10,), -1)])
    assert calibrate(logits, with_unknown, folds=3).size == 90


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return write_colour_samples(tmp_path_factory.mktemp("colours"), per_class=14)


def test_training_with_a_small_holdout_calibrates_out_of_fold_and_reports_it(colours, tmp_path):
    result = train(
        colours[:30],
        colours[30:],
        num_classes=3,
        config=TrainConfig(**TINY | {"calibration_folds": 3}),
        checkpoint_path=str(tmp_path / "m.pt"),
        unlabeled_paths=[path for path, _ in colours[30:]],
    )
    # 12 held-out images (< calibration_min_holdout): 30 out-of-fold predictions join them.
    assert result.calibration_method == "cross-validation (3 folds) and holdout"
    assert result.calibration_size == 42
    assert sum(band["count"] for band in result.reliability) == 42
    assert 0 <= result.ece <= 1
    assert result.unlabeled_size == 12 and result.arch == "small_cnn"


def test_no_unlabeled_images_are_read_when_semi_supervised_is_off(colours, tmp_path):
    result = train(
        colours[:30],
        colours[30:],
        num_classes=3,
        config=TrainConfig(**TINY | {"semi_supervised": False, "calibration_folds": 0}),
        checkpoint_path=str(tmp_path / "m.pt"),
        unlabeled_paths=["/no/such/file.jpg"],  # would fail if read
    )
    assert result.unlabeled_size == 0 and result.pseudo_label_share == 0
    assert result.calibration_method == "holdout" and result.calibration_size == 12


def test_a_warm_start_begins_at_a_lower_loss_and_trains_fewer_steps(colours, tmp_path):
    config = TINY | {"calibration_folds": 0, "semi_supervised": False, "epochs": 6}
    cold = train(
        colours[:30],
        colours[30:],
        num_classes=3,
        config=TrainConfig(**config),
        checkpoint_path=str(tmp_path / "cold.pt"),
    )
    warm = train(
        colours[:30],
        colours[30:],
        num_classes=3,
        config=TrainConfig(**config | {"warm_start": str(tmp_path / "cold.pt")}),
        checkpoint_path=str(tmp_path / "warm.pt"),
    )
    assert warm.weights_source == "warm:cold.pt" and cold.weights_source == "scratch"
    assert warm.start_loss < cold.start_loss / 2
    assert warm.steps < cold.steps / 2
    assert warm.holdout.top1 >= cold.holdout.top1 - 1 / 12


def test_no_warm_start_from_a_model_of_other_classes(colours, tmp_path):
    config = TINY | {"calibration_folds": 0, "semi_supervised": False, "epochs": 1}
    train(
        colours[:30],
        colours[30:],
        num_classes=3,
        config=TrainConfig(**config),
        checkpoint_path=str(tmp_path / "three.pt"),
    )
    four = train(
        colours[:30],
        colours[30:],
        num_classes=4,
        config=TrainConfig(**config | {"warm_start": str(tmp_path / "three.pt")}),
        checkpoint_path=str(tmp_path / "four.pt"),
    )
    assert four.weights_source == "scratch"
    model, payload = load_checkpoint(str(tmp_path / "four.pt"), torch.device("cpu"))
    assert payload["num_classes"] == 4


def test_the_default_architecture_follows_the_device():
    config = TrainConfig()
    assert config.arch == "auto"
    assert resolve_arch(config, torch.device("cpu")) == "small_cnn"
    assert resolve_arch(config, torch.device("cuda")) == "resnet18"
    assert resolve_arch(TrainConfig(arch="resnet50"), torch.device("cpu")) == "resnet50"


def test_each_fold_model_trains_its_share_of_the_steps(colours, tmp_path, monkeypatch):
    calls: list[tuple[int, float]] = []
    real = selftrain.fit_by_method

    def spy(model, normalize, samples, *args, **kwargs):
        calls.append((len(samples), kwargs.get("share", 1.0)))
        return real(model, normalize, samples, *args, **kwargs)

    monkeypatch.setattr(engine, "fit_by_method", spy)
    train(
        colours[:30],
        colours[30:],
        num_classes=3,
        config=TrainConfig(**TINY | {"semi_supervised": False, "calibration_folds": 3}),
        checkpoint_path=str(tmp_path / "m.pt"),
    )
    # The model itself, then three fold models on 20 of the 30 images for 2/3 of the steps:
    # as many epochs, not as many steps.
    assert calls == [(30, 1.0)] + [(20, pytest.approx(20 / 30))] * 3


def test_a_small_training_set_is_decoded_once(colours, tmp_path):
    path = tmp_path / "one.jpg"
    path.write_bytes(Path(colours[0][0]).read_bytes())
    kept = CachedImageDataset([(str(path), 0)], eval_transform(32), keep=True)
    first = kept[0][0]
    path.unlink()  # a second read would fail
    assert torch.equal(kept[0][0], first)
    with pytest.raises(FileNotFoundError):
        CachedImageDataset([(str(path), 0)], eval_transform(32))[0]
