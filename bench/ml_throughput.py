"""Throughput of the ML worker's pipeline beside a bare PyTorch loop, in one run.

    python bench/ml_throughput.py [--arch resnet18] [--batch-size 32] [--image-size 128] ...

The pipeline is what a training or suggestion task runs: cached JPEGs (RGB, shorter side 160,
as ingest writes them) -> CachedImageDataset -> DataLoader -> normalise on the device -> model
(worker.ml.engine.collect_logits for inference, train_one_epoch for training). The bare loop
feeds the same model, batch and device from one tensor already in device memory, so the ratio
shows what decoding, augmenting and moving data cost. Defaults follow the worker's ML_*
environment variables (ML_ARCH, ML_BATCH_SIZE, ML_IMAGE_SIZE, ML_THREADS, ML_LOADER_WORKERS,
ML_DEVICE). Target (PRODUCT.md section 8): pipeline >= 0.8 x bare.

On a GPU (`--device cuda`) both sides run the GPU trainer's fast path (worker.ml.accel):
bfloat16 autocast, channels-last and, on the pipeline side, loader worker processes with pinned
memory (`--precision`, `--channels-last/--no-channels-last`, `--loader-workers`; by default
bf16, channels-last and 8 loader workers there). On a CPU the defaults are the worker's plain
float32 path; `--precision bf16 --channels-last` runs the fast path there too.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.ml.accel import Accel, accel_for, infer, prepare_model, train_steps
from worker.ml.config import TrainConfig, apply_threads, resolve_device
from worker.ml.data import Normalize, make_loader
from worker.ml.engine import collect_logits, train_one_epoch
from worker.ml.factory import build_model

CACHE_SHORT_SIDE = 160  # settings.PREPROCESSED_SHORT_SIDE


def write_cache(folder: Path, count: int, seed: int = 0) -> list[tuple[str, int]]:
    """Images like the ingest cache writes: RGB JPEG, quality 90, shorter side 160."""
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        size = (CACHE_SHORT_SIDE * rng.choice([4, 5, 6]) // 4, CACHE_SHORT_SIDE)
        img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(30):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            draw.ellipse(
                (x, y, x + rng.randint(5, 60), y + rng.randint(5, 60)),
                fill=tuple(rng.randrange(256) for _ in range(3)),
            )
        path = folder / f"{i:06d}.jpg"
        img.save(path, "JPEG", quality=90)
        samples.append((str(path), i % 10))
    return samples


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Timer:
    """Wall time and this process's CPU time (all threads). On a shared machine the wall clock
    swings with other people's load; CPU seconds per image do not (with loader workers 0, all
    decoding happens in this process and is counted)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, images: int) -> tuple[float, float]:
        """(images per wall second, images per CPU second)"""
        return images / self.wall, images / self.cpu


def plain(accel: Accel) -> bool:
    """The worker's own float32 path (worker.ml.engine), measured as the tasks run it."""
    return accel.dtype is None and not accel.channels_last


def pipeline_inference(model, samples, config, accel) -> tuple[float, float]:
    device = accel.device
    loader = make_loader(samples, config, training=False, device=device)
    normalize = Normalize().to(device)

    def run(batches):
        if plain(accel):
            return collect_logits(model, normalize, batches, device)[0]
        return infer(model, normalize, batches, accel)

    run(make_loader(samples[: config.batch_size], config, training=False, device=device))
    synchronize(device)
    with Timer() as timer:
        logits = run(loader)
        synchronize(device)
    return timer.rates(len(logits))


def bare_batch(config, accel) -> torch.Tensor:
    shape = (config.batch_size, 3, config.image_size, config.image_size)
    return torch.randn(shape, device=accel.device).contiguous(memory_format=accel.memory_format)


def bare_inference(model, count, config, accel) -> tuple[float, float]:
    batch = bare_batch(config, accel)
    model.eval()
    steps = max(1, count // config.batch_size)
    with torch.inference_mode():
        with accel.autocast():
            model(batch)
        synchronize(accel.device)
        with Timer() as timer:
            for _ in range(steps):
                with accel.autocast():
                    logits = model(batch)
                logits.float().cpu()  # the pipeline brings logits back to the CPU too
            synchronize(accel.device)
    return timer.rates(steps * config.batch_size)


def optimizer_for(model, config):
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


def pipeline_training(model, samples, config, accel) -> tuple[float, float]:
    device = accel.device
    optimizer, scheduler = optimizer_for(model, config)
    normalize = Normalize().to(device)

    def run(batches):
        if plain(accel):
            train_one_epoch(model, normalize, batches, optimizer, scheduler, device, epoch=0)
        else:
            for _ in train_steps(model, normalize, batches, optimizer, accel):
                scheduler.step()

    run(make_loader(samples[: 2 * config.batch_size], config, training=True, device=device))
    loader = make_loader(samples, config, training=True, device=device)
    synchronize(device)
    with Timer() as timer:
        run(loader)
        synchronize(device)
    return timer.rates(len(loader) * config.batch_size)


def bare_training(model, count, config, accel, num_classes) -> tuple[float, float]:
    optimizer, _ = optimizer_for(model, config)
    batch = bare_batch(config, accel)
    targets = torch.randint(0, num_classes, (config.batch_size,), device=accel.device)
    model.train()
    steps = max(1, count // config.batch_size)

    def step():
        with accel.autocast():
            logits = model(batch)
        loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # the pipeline reads the loss every step too

    step()
    synchronize(accel.device)
    with Timer() as timer:
        for _ in range(steps):
            step()
        synchronize(accel.device)
    return timer.rates(steps * config.batch_size)


def main() -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=env("ML_ARCH", "resnet18"))
    parser.add_argument("--batch-size", type=int, default=int(env("ML_BATCH_SIZE", "32")))
    parser.add_argument("--image-size", type=int, default=int(env("ML_IMAGE_SIZE", "128")))
    parser.add_argument(
        "--threads", type=int, default=int(env("ML_THREADS", "0")), help="0: all cores"
    )
    parser.add_argument(
        "--loader-workers",
        type=int,
        default=None,
        help="data loader processes (default: ML_LOADER_WORKERS, or 8 on a GPU)",
    )
    parser.add_argument("--device", default=env("ML_DEVICE", "auto"))
    parser.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="autocast dtype; auto: bf16 on a GPU that has it, else fp32",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory layout (default: on a GPU only)",
    )
    parser.add_argument(
        "--images", type=int, default=0, help="images per measurement (default: by device)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="pipeline/bare pairs measured per figure"
    )
    args = parser.parse_args()

    config = TrainConfig(
        arch=args.arch,
        batch_size=args.batch_size,
        image_size=args.image_size,
        num_threads=args.threads,
        device=args.device,
        pretrained=False,
    )
    apply_threads(config)
    device = resolve_device(config)
    config.num_workers = (
        args.loader_workers
        if args.loader_workers is not None
        else int(env("ML_LOADER_WORKERS", "8" if device.type == "cuda" else "0"))
    )
    accel = accel_for(device, args.precision, args.channels_last)
    count = args.images or (16384 if device.type == "cuda" else 320)
    count -= count % config.batch_size
    num_classes = 10
    device_detail = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    print(
        f"model {config.arch}, batch {config.batch_size}, {config.image_size} px, device {device}"
        f" ({device_detail}), loader workers {config.num_workers}, {count} images per figure,"
        f" precision {accel.dtype or torch.float32}, channels-last {accel.channels_last},"
        f" torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        samples = write_cache(Path(folder), count)
        print(f"wrote {count} cached JPEGs in {time.perf_counter() - started:.1f}s")
        torch.manual_seed(0)
        model = prepare_model(build_model(config, num_classes).model, accel)
        measures = {
            "inference": (
                lambda: pipeline_inference(model, samples, config, accel),
                lambda: bare_inference(model, count, config, accel),
            ),
            "training": (
                lambda: pipeline_training(model, samples, config, accel),
                lambda: bare_training(model, count, config, accel, num_classes),
            ),
        }
        rows = []
        for name, (pipeline, bare) in measures.items():
            # Alternated pairs, so that a shared machine's load hits both sides alike.
            pairs = [(pipeline(), bare()) for _ in range(args.repeats)]
            rows.append((name, pairs))
    cpu_note = "" if device.type == "cuda" else " (ratio per CPU second: robust to other load)"
    print(
        f"{'':10} {'pipeline img/s':>15} {'bare img/s':>11} {'wall ratio':>11} "
        f"{'CPU ratio':>10}{cpu_note}"
    )
    for name, pairs in rows:
        best_pipeline = max(p[0] for p, _ in pairs)
        best_bare = max(b[0] for _, b in pairs)
        wall_ratio = median([p[0] / b[0] for p, b in pairs])
        cpu_ratio = median([p[1] / b[1] for p, b in pairs])
        print(
            f"{name:10} {best_pipeline:15.1f} {best_bare:11.1f} {wall_ratio:11.2f}"
            f" {cpu_ratio:10.2f}"
        )
    print("img/s: best of the repeats; ratios: median over back-to-back pipeline/bare pairs")


if __name__ == "__main__":
    main()
