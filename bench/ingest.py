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
import resource
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


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backend_cpu() -> float | None:
    """CPU seconds of this process's PostgreSQL backend so far (a server on this machine), or
    None (SQLite, or a server elsewhere)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stages(files: list[Path], workdir: Path) -> None:
    """CPU per image of each step, in this process, over `files`: what the baseline does and
    what ingest does besides (its CNN copy, perceptual hash, display copy check, two files)."""
    from PIL import Image

    from annotate.services import imaging, ingest_worker
    from annotate.services.imaging import checks, convert
    from annotate.services.ingest.inspection import limits

    caps = limits()
    datas = [f.read_bytes() for f in files]

    def cpu_ms(step) -> float:
        started = time.process_time()
        for data in datas:
            step(data)
        return (time.process_time() - started) / len(datas) * 1e3

    def full_decode(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as img:
            img.load()

    def draft_decode(data: bytes) -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.draft(None, checks._draft_size(img.size, caps, for_display=False))
        img.load()
        return img

    decoded = {id(data): draft_decode(data) for data in datas}
    small = {key: convert.preprocessed_copy(img, caps.short_side) for key, img in decoded.items()}
    storage = ingest_worker.StorageTarget(
        ingest_worker.FILE_SYSTEM_STORAGE, {"location": str(workdir)}, 0
    ).storage()
    written = iter(range(10**9))
    rows = [
        ("SHA-256", cpu_ms(lambda d: hashlib.sha256(d).hexdigest()), "both"),
        ("decode, full size", cpu_ms(full_decode), "baseline"),
        ("decode at the copies' scale (draft)", cpu_ms(draft_decode), "ingest"),
        (
            "CNN copy: resize",
            cpu_ms(lambda d: convert.preprocessed_copy(decoded[id(d)], caps.short_side)),
            "ingest",
        ),
        ("CNN copy: encode", cpu_ms(lambda d: convert.encode_jpeg(small[id(d)])), "ingest"),
        ("perceptual hash", cpu_ms(lambda d: checks.perceptual_hash(small[id(d)])), "ingest"),
        ("display copy (metadata walk)", cpu_ms(imaging.jpeg_without_metadata), "ingest"),
        (
            "files: original + CNN copy",
            cpu_ms(
                lambda d: [
                    ingest_worker.file_save(storage, f"{kind}/{next(written)}.jpg", d)
                    for kind in ("images", "preprocessed")
                ]
            ),
            "ingest",
        ),
        (
            "whole inspection (one worker's call)",
            cpu_ms(lambda d: checks.inspect(io.BytesIO(d), caps)),
            "ingest",
        ),
    ]
    print(f"CPU per image by step, in one process, over {len(datas)} of the files (ms):")
    for name, ms, who in rows:
        print(f"  {name:<40} {ms:6.2f}   {who}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", default="500x375")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/ingest turns")
    parser.add_argument(
        "--stages", type=int, default=200, help="files timed step by step (0: none)"
    )
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
        base_cpu, ingest_cpu = [], []  # (workers, this process, the database) per image, ms
        # Baseline and ingest take turns, so that a noisy neighbour on the machine hits both.
        for attempt in range(args.rounds):
            out = work / f"baseline{attempt}"
            out.mkdir()
            children = cpu_children()
            base_rates.append(baseline(files, out, args.workers))
            base_cpu.append((cpu_children() - children) / args.images * 1e3)
            shutil.rmtree(out)
            projects.append(Project.objects.create(name=f"bench ingest {time.time_ns()}"))
            children, own, backend = cpu_children(), time.process_time(), backend_cpu()
            started = time.perf_counter()
            result = ingest.images_import(project=projects[-1], path=source, workers=args.workers)
            ingest_rates.append(args.images / (time.perf_counter() - started))
            backend_after = backend_cpu()
            ingest_cpu.append(
                (
                    (cpu_children() - children) / args.images * 1e3,
                    (time.process_time() - own) / args.images * 1e3,
                    (backend_after - backend) / args.images * 1e3
                    if backend is not None and backend_after is not None
                    else float("nan"),
                )
            )
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
        workers_ms, own_ms, db_ms = (min(turn[i] for turn in ingest_cpu) for i in range(3))
        print(
            f"CPU per image (least of the rounds, ms): baseline's workers {min(base_cpu):.2f}; "
            f"ingest's workers {workers_ms:.2f} (their start-up included), the importing "
            f"process {own_ms:.2f}, its PostgreSQL backend {db_ms:.2f}"
        )
        print(f"re-run of the same import (adds nothing): {rerun_rate:7.1f} images/s")
        if args.stages:
            stages(files[: args.stages], work / "stages")
    finally:
        for project in projects:
            project.delete()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
