"""Cached images packed into tar shards (the WebDataset layout), for a trainer that should read
a few large objects in sequence rather than one object per image.

A shard is a plain tar of `<key>.jpg` and `<key>.cls` members (the JPEG, then its class index
as text), up to `shard_bytes` each. Reading streams each shard once from start to end; loader
processes take every n-th shard, and a bounded buffer shuffles samples across the shards being
read, so an epoch's order varies without random access. Plain PyTorch: the shards are local
files or any binary stream an opener returns (an object store's body).
"""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import PIL.Image
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from worker.ml.data import Sample

SHARD_BYTES = 256 << 20


def write_shards(
    samples: Sequence[Sample], folder: Path, shard_bytes: int = SHARD_BYTES
) -> list[Path]:
    """Pack the cached images into shards under `folder`, in the order given; returns their
    paths. A shard closes once it holds `shard_bytes` (a single larger image gets its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    tar: tarfile.TarFile | None = None
    size = 0
    try:
        for index, (path, target) in enumerate(samples):
            data = Path(path).read_bytes()
            if tar is None or size + len(data) > shard_bytes:
                if tar is not None:
                    tar.close()
                shards.append(folder / f"shard-{len(shards):06d}.tar")
                tar = tarfile.open(shards[-1], "w")
                size = 0
            key = f"{index:09d}"
            for name, payload in ((f"{key}.jpg", data), (f"{key}.cls", str(target).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            size += len(data)
    finally:
        if tar is not None:
            tar.close()
    return shards


def read_shard(stream: IO[bytes]) -> Iterator[tuple[bytes, int]]:
    """(JPEG bytes, class index) of a shard, read once from start to end."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        image: bytes | None = None
        for member in tar:
            data = tar.extractfile(member)
            if data is None:
                continue
            if member.name.endswith(".jpg"):
                image = data.read()
            elif member.name.endswith(".cls") and image is not None:
                yield image, int(data.read())
                image = None


def _open_local(shard: str) -> IO[bytes]:
    return open(shard, "rb")


class ShardDataset(IterableDataset[tuple[torch.Tensor, int]]):
    """The samples of `shards`, decoded and transformed as CachedImageDataset does them.

    Each loader process reads its own shards (every n-th); with `shuffle`, the shard order
    changes each epoch and a buffer of `buffer` samples mixes them."""

    def __init__(
        self,
        shards: Sequence[str],
        transform: v2.Transform,
        *,
        shuffle: bool = False,
        buffer: int = 1000,
        seed: int = 0,
        opener: Callable[[str], IO[bytes]] = _open_local,
    ):
        self.shards = list(shards)
        self.transform = transform
        self.shuffle = shuffle
        self.buffer = buffer
        self.seed = seed
        self.opener = opener
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_shards(self) -> list[str]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(shards)
        worker = get_worker_info()
        if worker is not None:
            shards = shards[worker.id :: worker.num_workers]
        return shards

    def _samples(self) -> Iterator[tuple[bytes, int]]:
        for shard in self._my_shards():
            stream = self.opener(shard)  # a file, or an object store's streaming body
            try:
                yield from read_shard(stream)
            finally:
                stream.close()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        samples = self._samples()
        if self.shuffle:
            samples = _buffered_shuffle(samples, self.buffer, random.Random(self.seed + self.epoch))
        for data, target in samples:
            with PIL.Image.open(io.BytesIO(data)) as img:
                image = pil_to_tensor(img.convert("RGB"))
            yield self.transform(image), target


def _buffered_shuffle(
    items: Iterator[tuple[bytes, int]], size: int, rng: random.Random
) -> Iterator[tuple[bytes, int]]:
    buffer: list[tuple[bytes, int]] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer
