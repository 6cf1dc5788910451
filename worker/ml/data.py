"""The image cache as a dataset: small RGB JPEGs written at ingest, decoded by Pillow.

Items are uint8 tensors of one fixed size; conversion to float and normalisation happen on
the device, once per batch, so loader processes stay light and batches cross to a GPU at a
quarter of the float size.
"""

from collections.abc import Iterator, Sequence

import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from worker.ml.config import TrainConfig

# ImageNet statistics: what torchvision's pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A sample is (path of a cached image, class index); index -1 marks "no class of this model".
Sample = tuple[str, int]


def train_transform(size: int, hflip: bool = True) -> v2.Transform:
    crop = v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True)
    return v2.Compose([crop, v2.RandomHorizontalFlip()] if hflip else [crop])


def eval_transform(size: int) -> v2.Transform:
    # The usual 0.875 centre crop ratio (224 of 256 in the ImageNet recipe).
    return v2.Compose([v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)])


# Training sets up to this many images keep their decoded copies in memory (~100 kB each at
# the cache's 160 px): a small set is read for every one of many epochs, and decoding each
# JPEG again cost about as much CPU as the training step itself.
DECODED_IN_MEMORY_MAX = 4096


class CachedImageDataset(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, samples: Sequence[Sample], transform: v2.Transform, keep: bool = False):
        self.samples = list(samples)
        self.transform = transform
        self.decoded: dict[int, torch.Tensor] | None = {} if keep else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        image = self.decoded.get(index) if self.decoded is not None else None
        if image is None:
            # torchvision's own decoders are deprecated (0.29); Pillow uses libjpeg-turbo too.
            with PIL.Image.open(path) as img:
                image = pil_to_tensor(img.convert("RGB"))
            if self.decoded is not None:
                self.decoded[index] = image
        return self.transform(image), target


def make_loader(
    samples: Sequence[Sample], config: TrainConfig, *, training: bool, device: torch.device
) -> DataLoader[tuple[torch.Tensor, int]]:
    transform = (
        train_transform(config.image_size, config.hflip)
        if training
        else eval_transform(config.image_size)
    )
    generator = torch.Generator().manual_seed(config.seed) if training else None
    return DataLoader(
        CachedImageDataset(
            samples, transform, keep=training and len(samples) <= DECODED_IN_MEMORY_MAX
        ),
        batch_size=config.batch_size,
        shuffle=training,
        # A last batch of one would break BatchNorm in training mode.
        drop_last=training and len(samples) > config.batch_size,
        num_workers=config.num_workers,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
        generator=generator,
    )


def endless(
    samples: Sequence[Sample], config: TrainConfig, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches of `samples` without end, reshuffled each pass."""
    loader = make_loader(samples, config, training=True, device=device)
    while True:
        yield from loader


class Normalize(torch.nn.Module):
    """uint8 batch on the device -> normalised float batch."""

    mean: torch.Tensor  # buffers, registered below
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch.float() - self.mean) / self.std
