"""Self-training (worker.ml.selftrain), the default semi-supervised method: which pool images
become pseudo-labels, and that training uses them only from the unlabeled pool."""

from typing import Any

import pytest
import torch

from tests.ml_data import write_colour_samples
from worker.ml import TrainConfig, selftrain, train
from worker.ml.selftrain import select_pseudo_labels

TINY: dict[str, Any] = {
    "image_size": 32,
    "batch_size": 8,
    "epochs": 4,
    "pretrained": False,
    "num_threads": 1,
    "calibration_folds": 0,
}


def rows(*confidences: tuple[int, float], classes: int = 3) -> torch.Tensor:
    """Probability rows: (predicted class, its probability), the rest spread evenly."""
    table = []
    for label, confidence in confidences:
        row = [(1 - confidence) / (classes - 1)] * classes
        row[label] = confidence
        table.append(row)
    return torch.tensor(table)


def test_only_rows_at_or_above_the_threshold_become_pseudo_labels():
    probabilities = rows((0, 0.96), (0, 0.949), (1, 0.95), (1, 0.5), (2, 0.97), (2, 0.3))
    assert select_pseudo_labels(probabilities, 0.95, per_class=10) == [(0, 0), (2, 1), (4, 2)]
    # A threshold above every row: none.
    assert select_pseudo_labels(probabilities, 0.995, per_class=10) == []


def test_no_class_gets_more_pseudo_labels_than_the_median_class():
    # Class 0: five sure rows; class 1: one; class 2: three. Median 3: class 0 keeps its three
    # most confident, the others all of theirs.
    probabilities = rows(
        (0, 0.97),
        (0, 0.99),
        (0, 0.96),
        (0, 0.98),
        (0, 0.995),
        (1, 0.97),
        (2, 0.96),
        (2, 0.97),
        (2, 0.98),
    )
    chosen = select_pseudo_labels(probabilities, 0.95, per_class=10)
    assert [row for row, label in chosen if label == 0] == [1, 3, 4]
    assert [label for _, label in chosen].count(1) == 1
    assert [label for _, label in chosen].count(2) == 3
    # `per_class` caps every class below that.
    assert len(select_pseudo_labels(probabilities, 0.95, per_class=1)) == 3


def test_too_few_pseudo_labels_are_none():
    probabilities = rows((0, 0.99), (1, 0.99), (2, 0.99))
    assert len(select_pseudo_labels(probabilities, 0.9, per_class=5, at_least=3)) == 3
    assert select_pseudo_labels(probabilities, 0.9, per_class=5, at_least=4) == []


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return write_colour_samples(tmp_path_factory.mktemp("colours"), per_class=30)


def test_self_training_learns_pseudo_labels_of_the_unlabeled_pool_only(
    colours, tmp_path, monkeypatch
):
    labeled, holdout, pool = colours[:18], colours[18:30], colours[30:]
    truth = dict(pool)
    decided: list[list[tuple[str, int]]] = []
    judge = selftrain.pseudo_labels_of_pool

    def spy(*args, **kwargs):
        found = judge(*args, **kwargs)
        decided.append(found)
        return found

    monkeypatch.setattr(selftrain, "pseudo_labels_of_pool", spy)
    result = train(
        labeled,
        holdout,
        num_classes=3,
        config=TrainConfig(
            **TINY | {"min_steps": 40, "pseudo_threshold": 0.6, "self_training_rounds": 1}
        ),
        checkpoint_path=str(tmp_path / "m.pt"),
        unlabeled_paths=list(truth),
    )
    # Judged once (one round), and only pool images got pseudo-labels.
    assert len(decided) == 1
    chosen = decided[0]
    assert chosen and {path for path, _ in chosen} <= set(truth)
    assert not {path for path, _ in chosen} & {path for path, _ in labeled + holdout}
    # The colours are easy: the pseudo-labels are mostly right.
    assert sum(truth[path] == label for path, label in chosen) >= 0.8 * len(chosen)
    assert result.pseudo_label_share == pytest.approx(len(chosen) / len(pool))
    assert result.unlabeled_size == len(pool) and result.holdout.count == 12


def test_without_sure_pool_images_self_training_is_supervised(colours, tmp_path, monkeypatch):
    # A threshold no probability reaches: the pool is judged, nothing is taken from it.
    decided = _record_judgments(monkeypatch)
    result = train(
        colours[:18],
        colours[18:30],
        num_classes=3,
        config=TrainConfig(**TINY | {"pseudo_threshold": 1.0}),
        checkpoint_path=str(tmp_path / "m.pt"),
        unlabeled_paths=[path for path, _ in colours[30:]],
    )
    assert decided == [[]] and result.pseudo_label_share == 0


def test_fixmatch_remains_a_choice(colours, tmp_path, monkeypatch):
    monkeypatch.setattr(
        selftrain, "self_train", lambda *a, **k: pytest.fail("self-training was not asked for")
    )
    result = train(
        colours[:18],
        colours[18:30],
        num_classes=3,
        config=TrainConfig(**TINY | {"semi_method": "fixmatch", "epochs": 2}),
        checkpoint_path=str(tmp_path / "m.pt"),
        unlabeled_paths=[path for path, _ in colours[30:]],
    )
    assert result.unlabeled_size == 60


def test_unknown_semi_supervised_method_is_refused():
    with pytest.raises(ValueError, match="semi_method"):
        TrainConfig(semi_method="mixmatch")


def test_each_round_judges_the_pool_again_and_its_pseudo_labels_replace_the_last(
    colours, tmp_path, monkeypatch
):
    # Each round a different share of the pool: the last round's pseudo-labels are used.
    decided, result, pool = _three_rounds(
        colours, tmp_path, monkeypatch, lambda round_, found: found[: 10 * (round_ + 1)]
    )
    assert len(decided) == 3
    assert [len(found) for found in decided] == [10, 20, 30]
    assert result.pseudo_label_share == pytest.approx(30 / len(pool))


def test_a_pool_smaller_than_the_labels_gives_pseudo_labels_only_below_the_minimum_share(
    colours, tmp_path, monkeypatch
):
    # 30 labeled images, a pool of 20: the minimum share decides whether it is used.
    decided = _record_judgments(monkeypatch)
    for min_share in (0.0, 1.0):
        train(
            colours[:30],
            colours[30:42],
            num_classes=3,
            config=TrainConfig(
                **TINY
                | {
                    "min_steps": 40,
                    "pseudo_threshold": 0.6,
                    "pseudo_min_share": min_share,
                    "self_training_rounds": 1,
                }
            ),
            checkpoint_path=str(tmp_path / "m.pt"),
            unlabeled_paths=[path for path, _ in colours[42:62]],
        )
    assert len(decided) == 2
    assert decided[0] and decided[1] == []


def test_rounds_and_batch_share_are_checked():
    with pytest.raises(ValueError, match="self_training_rounds"):
        TrainConfig(self_training_rounds=0)
    with pytest.raises(ValueError, match="pseudo_batch_share"):
        TrainConfig(pseudo_batch_share=1.0)


def test_a_round_sure_of_nothing_keeps_the_last_pseudo_labels(colours, tmp_path, monkeypatch):
    # The first round finds some; the later ones none.
    decided, result, pool = _three_rounds(
        colours, tmp_path, monkeypatch, lambda round_, found: [] if round_ else found[:12]
    )
    # Judged in every round (pseudo-labels were in use), the first round's kept.
    assert [len(found) for found in decided] == [12, 0, 0]
    assert result.pseudo_label_share == pytest.approx(12 / len(pool))


def _three_rounds(colours, tmp_path, monkeypatch, pick):
    """A three-round self-training on 18 labels, each round's judgment of the pool passed
    through pick(round, found): the judgments taken, the result and the pool."""
    pool = [path for path, _ in colours[30:]]
    decided = _record_judgments(monkeypatch, pick)
    result = train(
        colours[:18],
        colours[18:30],
        num_classes=3,
        config=TrainConfig(
            **TINY
            | {
                "min_steps": 60,
                "pseudo_threshold": 0.6,
                "self_training_rounds": 3,
                "pseudo_min_share": 0,
            }
        ),
        checkpoint_path=str(tmp_path / "m.pt"),
        unlabeled_paths=pool,
    )
    return decided, result, pool


def _record_judgments(monkeypatch, pick=lambda round_, found: found):
    """Each judgment of the pool, as pick(round, found) makes it (what the round then takes),
    recorded in the list returned."""
    decided: list[list[tuple[str, int]]] = []
    judge = selftrain.pseudo_labels_of_pool

    def spy(*args, **kwargs):
        found = pick(len(decided), judge(*args, **kwargs))
        decided.append(found)
        return found

    monkeypatch.setattr(selftrain, "pseudo_labels_of_pool", spy)
    return decided
