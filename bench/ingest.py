"""Ingest speed: images/s through the service code, beside a bare baseline from the same run.

    python bench/ingest.py [--images 5000] [--workers 2] [--size 500x375]

The baseline is the least any ingest must do: read each file, SHA-256 it, decode it fully with
Pillow and write a copy, on `--workers` processes. The ingest is `ingest.images_import` (what
`manage.py import_images` runs) into a fresh project: the same checks, the perceptual hash, the
CNN's copy and the display copy (the generated JPEGs carry no metadata, so each is its own
display copy, as any upright RGB JPEG within DISPLAY_MAX_SIDE without metadata is; a camera
photo's EXIF costs one more file written), the files written through Django's storage, rows
and near-duplicate lookup in the database. Target (issue 3): at least 60% of the baseline.
Runs on DATABASE_URL (migrated here) with media in a temporary folder; the project it makes is
deleted at the end.
"""

import argparse
import hashlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def photo_like(seed: int, size: tuple[int, int]) -> bytes:
    """A JPEG with the texture and about the file size of a photo of that size."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    w, h = size
    base = Image.new("RGB", (w // 25, h // 25))
    cells = (w // 25) * (h // 25)
    base.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(cells)])
    img = base.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(10, 90)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    noise = Image.merge("RGB", [Image.effect_noise(size, 40) for _ in range(3)])
    img = Image.blend(img.filter(ImageFilter.SMOOTH), noise, 0.45)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write_one(args: tuple[int, str, tuple[int, int]]) -> int:
    seed, folder, size = args
    data = photo_like(seed, size)
    Path(folder, f"img_{seed:06d}.jpg").write_bytes(data)
    return len(data)


def _baseline_one(args: tuple[str, str]) -> None:
    from PIL import Image

    source, target = args
    with open(source, "rb") as f:
        data = f.read()
    hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
    with open(target, "wb") as f:
        f.write(data)


def baseline(files: list[Path], out: Path, workers: int) -> float:
    jobs = [(str(f), str(out / f.name)) for f in files]
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_baseline_one, jobs, chunksize=32))
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", default="500x375")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/ingest turns")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotate.models import Project
    from annotate.services import ingest

    call_command("migrate", verbosity=0)
    source = work / "source"
    source.mkdir()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        sizes = list(
            pool.map(_write_one, [(i, str(source), size) for i in range(args.images)], chunksize=32)
        )
    files = sorted(source.iterdir())
    mean_kib = sum(sizes) / len(sizes) / 1024
    print(
        f"{args.images} generated JPEGs of {size[0]}x{size[1]}, mean {mean_kib:.0f} KiB; "
        f"{args.workers} worker processes on {os.cpu_count()} CPUs; "
        f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
    )
    projects = []
    try:
        base_rates, ingest_rates = [], []
        # Baseline and ingest take turns, so that a noisy neighbour on the machine hits both.
        for attempt in range(args.rounds):
            out = work / f"baseline{attempt}"
            out.mkdir()
            base_rates.append(baseline(files, out, args.workers))
            shutil.rmtree(out)
            projects.append(Project.objects.create(name=f"bench ingest {time.time_ns()}"))
            started = time.perf_counter()
            result = ingest.images_import(project=projects[-1], path=source, workers=args.workers)
            ingest_rates.append(args.images / (time.perf_counter() - started))
            assert len(result.created) == args.images, (len(result.created), result.rejected[:3])
        started = time.perf_counter()
        again = ingest.images_import(project=projects[-1], path=source, workers=args.workers)
        rerun_rate = args.images / (time.perf_counter() - started)
        assert again.duplicates == args.images and not again.created
        base, rate = sum(base_rates) / len(base_rates), sum(ingest_rates) / len(ingest_rates)
        print(
            f"baseline (read + SHA-256 + Pillow decode + write): {base:7.1f} images/s "
            f"(rounds: {', '.join(f'{r:.1f}' for r in base_rates)})"
        )
        print(
            f"ingest (images_import: checks, hashes, CNN and display copies, rows): {rate:7.1f} "
            "images/s "
            f"(rounds: {', '.join(f'{r:.1f}' for r in ingest_rates)})"
        )
        print(f"ingest / baseline: {100 * rate / base:.0f}% (target >= 60%)")
        print(f"re-run of the same import (adds nothing): {rerun_rate:7.1f} images/s")
    finally:
        for project in projects:
            project.delete()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
