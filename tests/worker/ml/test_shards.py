"""Tar shards of the image cache (worker.ml.shards): the same samples as the per-file dataset,
each once whatever the loader processes, in an order that a shuffle changes by epoch."""

import torch
from torch.utils.data import DataLoader

from tests.ml_data import write_colour_samples
from worker.ml.data import CachedImageDataset, eval_transform
from worker.ml.shards import ShardDataset, write_shards


def as_list(dataset) -> list[tuple[bytes, int]]:
    return [(image.numpy().tobytes(), int(target)) for image, target in dataset]


def test_shards_hold_the_samples_in_order_and_close_at_their_size(tmp_path):
    (tmp_path / "cache").mkdir()
    samples = write_colour_samples(tmp_path / "cache", per_class=4)
    shards = write_shards(samples, tmp_path / "shards", shard_bytes=4000)
    assert len(shards) > 2 and all(s.stat().st_size > 0 for s in shards)
    transform = eval_transform(32)
    per_file = as_list(CachedImageDataset(samples, transform))
    from_shards = as_list(ShardDataset([str(s) for s in shards], transform))
    assert from_shards == per_file


def test_loader_processes_read_each_sample_once_and_shuffling_changes_the_order(tmp_path):
    (tmp_path / "cache").mkdir()
    samples = write_colour_samples(tmp_path / "cache", per_class=4)
    shards = [str(s) for s in write_shards(samples, tmp_path / "shards", shard_bytes=6000)]
    transform = eval_transform(32)
    expected = sorted(as_list(CachedImageDataset(samples, transform)))
    loader = DataLoader(ShardDataset(shards, transform), batch_size=None, num_workers=2)
    assert sorted(as_list(loader)) == expected
    shuffled = ShardDataset(shards, transform, shuffle=True, buffer=5, seed=1)
    first = as_list(shuffled)
    shuffled.set_epoch(1)
    second = as_list(shuffled)
    assert sorted(first) == sorted(second) == expected
    assert first != second and first != as_list(ShardDataset(shards, transform))
    assert isinstance(next(iter(shuffled))[0], torch.Tensor)
