"""Export benchmark: an ImageNet-style export of N and 4N decided images, beside `tar -cf` of
the same source files in the same run, and the export process's peak memory at N and 4N.

    python bench/export.py --n 5000            # N = 5000 and 4N = 20000
    python bench/export.py --n 2000 --repeat 5 # the quickest of 5 rounds (a shared machine)

It makes its own data: a temporary DATA_DIR and, unless DATABASE_URL is set, a SQLite
database there (with DATABASE_URL it creates and drops a database `bench_export_<pid>` on that
PostgreSQL server). Images are distinct JPEGs of about --kb kilobytes. Each export runs in a
fresh process (`--child`), so its peak RSS is its own; the figure "over start" subtracts the
RSS the process had before exporting (Django, PIL and torch loaded). The export's worker
processes (EXPORT_PROCESSES, which read, hash and write the images) are reported apart: the
largest peak RSS among them.
Exports strip metadata (the default): every generated file has bytes after its end, which
go, so each file is cut and joined anew. Beside each size, an export with `blur_faces` runs on
a project of its first --blur-n files (every image decoded and searched for faces).
Targets (issue 6, issue 17): export >= 0.5x the images/s of `tar -cf` with metadata stripped;
peak memory at 4N <= 1.2x at N.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    import django

    django.setup()


# --- data -----------------------------------------------------------------------------------


def base_jpegs(count: int, kb: int, rng: random.Random) -> list[bytes]:
    """`count` different JPEGs of about `kb` KB: smooth gradients plus noise."""
    from PIL import Image, ImageFilter

    side = int((kb * 1024 / 0.35) ** 0.5 / 1.2)
    out = []
    for _ in range(count):
        noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        img = noise.filter(ImageFilter.GaussianBlur(1.2)).resize((int(side * 1.2), side))
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def make_project(name: str, n: int, classes: int, bases: list[bytes]) -> int:
    """A project of `n` decided images in `classes` classes, written straight to storage and
    the database in bulk (the ingest path would dominate the set-up time)."""
    import hashlib

    from django.conf import settings

    from annotate.models import Decision, Image, Label, Project

    project = Project.objects.create(name=name)
    labels = Label.objects.bulk_create(
        Label(project=project, wnid=f"n{9000000 + i:08d}", name=f"class {i}, thing {i}", position=i)
        for i in range(classes)
    )
    folder = Path(settings.MEDIA_ROOT) / "bench" / str(project.pk)
    folder.mkdir(parents=True)
    batch: list[Image] = []
    labels_of: list = []

    def flush() -> None:
        created = Image.objects.bulk_create(batch)
        Decision.objects.bulk_create(
            Decision(
                image=image, label=label, rule=Decision.Rule.MAJORITY, confidence=1.0, votes_count=3
            )
            for image, label in zip(created, labels_of, strict=False)
        )
        batch.clear()
        labels_of.clear()

    for i in range(n):
        # Bytes after the JPEG's end marker are ignored by decoders: each file is distinct.
        data = bases[i % len(bases)] + f"image {i} of {name}".encode()
        sha = hashlib.sha256(data).hexdigest()
        relative = f"bench/{project.pk}/{i}.jpg"
        (Path(settings.MEDIA_ROOT) / relative).write_bytes(data)
        batch.append(
            Image(
                project=project,
                file=relative,
                original_name=f"{i}.jpg",
                sha256=sha,
                size_bytes=len(data),
                format="JPEG",
                width=1,
                height=1,
                state=Image.State.CONSENSUS,
            )
        )
        labels_of.append(labels[i % classes])
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return project.pk


# --- measuring --------------------------------------------------------------------------------


def child(project_id: int, mode: str, out: Path, blur_faces: bool = False) -> None:
    """One export in this fresh process; prints JSON with its time and memory."""
    django_setup()
    import torch  # noqa: F401 - loaded before the baseline, as a worker has it loaded

    from annotate.models import Project
    from annotate.services import export as export_service

    start_rss = rss_mb()
    workers_peak = [0.0]
    real_close = export_service._Copiers.close

    def close_noting_peaks(copiers) -> None:
        """The worker processes' own peak RSS (VmHWM), read before they end: their
        ru_maxrss would count the exporting process's memory they were forked from."""
        for process in copiers.processes:
            with open(f"/proc/{process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        workers_peak[0] = max(workers_peak[0], int(line.split()[1]) / 1024)
        real_close(copiers)

    # Replaced for this process only (setattr: a method patched on purpose, for the bench).
    setattr(export_service._Copiers, "close", close_noting_peaks)  # noqa: B010
    os.sync()  # no dirty pages of an earlier step to write back while this one is timed
    export = export_service.export_create(
        project=Project.objects.get(pk=project_id), enqueue=False, blur_faces=blur_faces
    )
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    if mode == "job":  # what the Celery job does: one tar file under EXPORT_DIR
        outcome = export_service.export_run(export_id=export.pk, run_token="bench")
    else:  # the command without --tar: a dataset folder
        outcome = export_service.export_run(export_id=export.pk, run_token="bench", destination=out)
    seconds = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    assert outcome == "done", outcome
    export.refresh_from_db()
    result = {
        "seconds": seconds,
        "peak_rss": peak_rss_mb(),
        "start_rss": start_rss,
        "workers_peak_rss": workers_peak[0],
        "export_id": export.pk,
        "location": export.location,
        "bytes": export.size_bytes,
        "stripped": export.counts["metadata"]["images_stripped"],
        "faces": export.counts["faces"]["faces"],
    }
    if mode == "job":
        # The download: the tar read in chunks, written to a file.
        download = export_service.export_download(export=export)
        os.sync()
        started = time.perf_counter()
        with open(out, "wb") as f:
            for chunk in download.chunks:
                f.write(chunk)
        result["stream_seconds"] = time.perf_counter() - started
        result["stream_bytes"] = out.stat().st_size
        result["peak_rss_after_stream"] = peak_rss_mb()
    print(json.dumps(result))


def run_child(env: dict, project_id: int, mode: str, out: Path, blur: bool = False) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(project_id), "--mode", mode, "--out", str(out)]
        + (["--blur-faces"] if blur else []),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if os.environ.get("BENCH_PROFILE"):
        print(done.stderr[-6000:])
    if done.returncode != 0:
        sys.exit(f"export child failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tar_cf(source_root: Path, relative: str, out: Path, fsync: bool = False) -> float:
    """`tar -cf` of the source files; with `fsync`, also until the tar is on disk, as the
    export's job makes sure of its tar before it renames it into place and says done."""
    os.sync()  # start with no dirty pages left by an earlier step, as each export does
    started = time.perf_counter()
    subprocess.run(["tar", "-cf", str(out), "-C", str(source_root), relative], check=True)
    if fsync:
        with open(out, "rb") as f:
            os.fsync(f.fileno())
    return time.perf_counter() - started


def line(label: str, seconds: float, images: int, megabytes: float, base: float | None) -> str:
    text = (
        f"  {label:<28} {seconds:7.2f} s {images / seconds:9.0f} img/s "
        f"{megabytes / seconds:8.1f} MB/s"
    )
    if base is not None:
        text += f"   {base / seconds:5.2f}x tar -cf"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="N (the second size is 4N)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--kb", type=int, default=40, help="approximate size of each JPEG")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="job", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--blur-faces", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--blur-n",
        type=int,
        default=1000,
        help="blur_faces is timed on the first this many images of each size (it searches "
        "every image for faces: slow, and its speed per image is the figure)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run tar and each export this many times, in rounds, and report the quickest of "
        "each (on a machine shared with other jobs)",
    )
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.mode, args.out, args.blur_faces)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env = dict(
        os.environ,
        DATA_DIR=str(data_dir),
        EXPORT_DIR=str(data_dir / "exports"),
        DJANGO_SETTINGS_MODULE="annotate.settings",
        LOG_LEVEL="WARNING",
    )
    env.pop("REDIS_URL", None)
    database = None
    if os.environ.get("DATABASE_URL"):
        import psycopg

        base_url = os.environ["DATABASE_URL"]
        database = f"bench_export_{os.getpid()}"
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        env["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + database
    os.environ.update(env)
    try:
        django_setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(
            f"bench/export.py: N={args.n} and 4N={4 * args.n} decided JPEGs (~{args.kb} KB), "
            f"{args.classes} classes, "
            f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[1]}, "
            f"{os.cpu_count()} CPUs"
        )
        rng = random.Random(1)
        bases = base_jpegs(200, args.kb, rng)
        sizes = [args.n, 4 * args.n]
        projects = {n: make_project(f"bench {n}", n, args.classes, bases) for n in sizes}
        blur_sizes = {n: min(n, args.blur_n) for n in sizes}
        blur_projects = {
            n: make_project(
                f"bench blur {n}",
                blur_sizes[n],
                max(1, min(args.classes, blur_sizes[n] // 10)),
                bases,
            )
            for n in sizes
        }
        from django.db import connections

        connections.close_all()
        peaks = {}
        for n in sizes:
            source = Path(settings.MEDIA_ROOT)
            relative = f"bench/{projects[n]}"
            megabytes = sum(p.stat().st_size for p in (source / relative).iterdir()) / 1e6
            scratch = data_dir / "scratch"
            scratch.mkdir(exist_ok=True)
            tar_cf(source, relative, scratch / "warm.tar")  # warm the page cache
            (scratch / "warm.tar").unlink()
            rounds: dict[str, list] = {"tar": [], "sync": [], "job": [], "again": [], "folder": []}
            for round_ in range(args.repeat):
                if round_:  # the next "first" export finds no side stored, as the first did
                    from annotate.models import SplitAssignment

                    SplitAssignment.objects.filter(image__project_id=projects[n]).delete()
                    connections.close_all()
                rounds["tar"].append(tar_cf(source, relative, scratch / "source.tar"))
                (scratch / "source.tar").unlink()
                rounds["sync"].append(tar_cf(source, relative, scratch / "source.tar", fsync=True))
                (scratch / "source.tar").unlink()
                job = run_child(env, projects[n], "job", scratch / "download.tar")
                (scratch / "download.tar").unlink()
                shutil.rmtree(Path(job["location"]).parent)
                # Again: the sides are stored now, as for every export after a project's first
                # with the same seed and fraction.
                again = run_child(env, projects[n], "job", scratch / "download.tar")
                (scratch / "download.tar").unlink()
                shutil.rmtree(Path(again["location"]).parent)
                folder = run_child(env, projects[n], "folder", scratch / "dataset")
                shutil.rmtree(scratch / "dataset")
                rounds["job"].append(job)
                rounds["again"].append(again)
                rounds["folder"].append(folder)
            # With --repeat, the quickest of each: what the machine can do when the others
            # running on it leave it alone for a moment.
            tar_seconds, tar_sync_seconds = min(rounds["tar"]), min(rounds["sync"])
            job, again, folder = (
                min(rounds[kind], key=lambda r: r["seconds"]) for kind in ("job", "again", "folder")
            )
            # blur_faces on its own (smaller) project of the same files: its images per second
            # beside those of the export without it.
            blur = run_child(env, blur_projects[n], "job", scratch / "download.tar", blur=True)
            (scratch / "download.tar").unlink()
            shutil.rmtree(Path(blur["location"]).parent)
            print(
                f"N={n}: {n} images, {megabytes:.1f} MB of source files"
                + (f" (best of {args.repeat} rounds of each)" if args.repeat > 1 else "")
            )
            print(line("tar -cf (source files)", tar_seconds, n, megabytes, None))
            print(line("tar -cf, then fsync", tar_sync_seconds, n, megabytes, None))
            # The export job makes its tar durable before it says done (its data is written back
            # while it runs): it cannot take less than the disk takes to write those bytes.
            disk = max(tar_sync_seconds - tar_seconds, 1e-6)
            print(
                f"  disk floor: the tar's fsync took {disk:.2f} s ({megabytes / disk:.0f} MB/s "
                f"written); a durable export of these bytes takes at least that: at most "
                f"{tar_seconds / disk:.2f}x tar -cf, whatever its CPU"
            )
            print(
                line("export job (first)", job["seconds"], n, megabytes, tar_seconds)
                + f"   {tar_sync_seconds / job['seconds']:5.2f}x tar -cf+fsync"
            )
            print(
                line("export job, sides stored", again["seconds"], n, megabytes, tar_seconds)
                + f"   {tar_sync_seconds / again['seconds']:5.2f}x tar -cf+fsync"
            )
            print(line("export command (folder)", folder["seconds"], n, megabytes, tar_seconds))
            blur_n = blur_sizes[n]
            print(
                line(
                    f"export job, blur_faces ({blur_n})",
                    blur["seconds"],
                    blur_n,
                    megabytes * blur_n / n,
                    tar_seconds * blur_n / n,
                )
                + f"   ({blur['faces']} faces found)"
            )
            print(
                f"  metadata stripped: on (the default); {job['stripped']} of {n} files had "
                "some (the generated files carry bytes after their end, which go)"
            )
            print(
                line(
                    "download stream",
                    job["stream_seconds"],
                    n,
                    job["stream_bytes"] / 1e6,
                    tar_seconds,
                )
            )
            print(
                f"  peak RSS of the export process: {job['peak_rss']:.1f} MB "
                f"(+{job['peak_rss'] - job['start_rss']:.1f} MB over its start; "
                f"{job['peak_rss_after_stream']:.1f} MB after the download stream); "
                f"folder export: {folder['peak_rss']:.1f} MB; "
                f"largest worker process: {job['workers_peak_rss']:.1f} MB"
            )
            if args.repeat > 1:
                print(
                    "  each round's first export / its tar -cf: "
                    + " ".join(
                        f"{t / r['seconds']:.2f}x"
                        for t, r in zip(rounds["tar"], rounds["job"], strict=True)
                    )
                    + "; sides stored: "
                    + " ".join(
                        f"{t / r['seconds']:.2f}x"
                        for t, r in zip(rounds["tar"], rounds["again"], strict=True)
                    )
                )
            peaks[n] = job
        small, large = (peaks[n] for n in sizes)
        print(
            f"memory 4N/N: peak RSS {large['peak_rss'] / small['peak_rss']:.3f}x "
            f"(target <= 1.2x); growth over start "
            f"{large['peak_rss'] - large['start_rss']:.1f} MB at 4N vs "
            f"{small['peak_rss'] - small['start_rss']:.1f} MB at N; largest worker process "
            f"{large['workers_peak_rss'] / small['workers_peak_rss']:.3f}x"
        )
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(data_dir, ignore_errors=True)
        if database:
            import psycopg

            with psycopg.connect(
                os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", autocommit=True
            ) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database}")


if __name__ == "__main__":
    main()
