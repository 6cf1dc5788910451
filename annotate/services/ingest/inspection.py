"""Inspecting candidates (byte cap, identify, pixel cap, full decode, hashes, the CNN's copy;
see imaging.inspect), here or on worker processes, answered in input order."""

import collections
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

from django.conf import settings

from annotate.services import imaging, ingest_worker
from annotate.services.imaging import Inspected
from annotate.services.ingest.candidates import Candidate
from annotate.services.ingest.files import files_delete, storage_target, worker_files

INSPECT_CHUNK = 8  # files per task sent to a worker process


def limits() -> imaging.Limits:
    """The caps and copy sizes of ingest, from the settings."""
    return imaging.Limits(
        max_bytes=settings.IMAGE_MAX_BYTES,
        max_pixels=settings.IMAGE_MAX_PIXELS,
        short_side=settings.PREPROCESSED_SHORT_SIDE,
        max_aspect_ratio=settings.MAX_ASPECT_RATIO,
        display_max_side=settings.DISPLAY_MAX_SIDE,
    )


# A worker's answer for one chunk: ingest_worker.inspect_and_store()'s list.
_Outcomes = Future[list[Inspected | imaging.Known | str]]


def inspections(
    candidates: Iterable[Candidate], *, workers: int, known: frozenset[str], project_id: int
) -> Generator[tuple[Candidate, Inspected | imaging.Known | str], None, None]:
    """Each candidate with its inspection (or the reason it was refused), in input order.

    Files whose SHA-256 is in `known` are not decoded (re-runs of an import are quick). With
    workers > 1 the decoding runs in that many processes, at most a few files ahead of the
    storing, so memory stays flat however many files there are.
    """
    caps = limits()
    if workers <= 1:
        for candidate in candidates:
            if candidate.problem is not None or candidate.source is None:
                yield candidate, candidate.problem or "nothing to read"
            else:
                yield candidate, imaging.inspect_source(candidate.source, caps, known)
        return
    # Files go to the workers in small chunks (less inter-process traffic per file); at most
    # a few chunks per worker are in flight. The workers also write the files, so that this
    # process, which writes the rows one batch after the other, is never the bottleneck.
    window: collections.deque[tuple[list[Candidate], _Outcomes | None]] = collections.deque()
    # spawn, not fork: a forked child would share the parent's database connection.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=ingest_worker.worker_init,
        initargs=(known, storage_target(project_id)),
    ) as pool:
        current: list[tuple[Candidate, Inspected | imaging.Known | str]] = []  # not handed out
        try:
            for chunk in _chunks(candidates, INSPECT_CHUNK):
                items = [(c.name, c.source) for c in chunk if c.problem is None and c.source]
                if any(isinstance(source, imaging.StreamSource) for _, source in items):
                    raise ValueError("open streams cannot be sent to worker processes")
                future = (
                    pool.submit(ingest_worker.inspect_and_store, items, caps) if items else None
                )
                window.append((chunk, future))
                while len(window) > workers * 4:
                    current = _settled(*window.popleft())
                    while current:
                        yield current.pop(0)
            while window:
                current = _settled(*window.popleft())
                while current:
                    yield current.pop(0)
        except BaseException:
            # Stopped half-way: the files workers wrote for what nobody will store go too.
            files_delete(worker_files(outcome for _, outcome in current))
            for _, future in window:
                if future is not None and not future.cancel():
                    try:
                        outcomes = future.result()
                    except Exception:  # the worker failed: it wrote nothing we know of
                        continue
                    files_delete(worker_files(outcomes))
            raise


def _chunks(candidates: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    chunk: list[Candidate] = []
    for candidate in candidates:
        chunk.append(candidate)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _settled(
    chunk: list[Candidate], future: _Outcomes | None
) -> list[tuple[Candidate, Inspected | imaging.Known | str]]:
    outcomes = iter(future.result() if future is not None else ())
    return [
        (candidate, candidate.problem or "nothing to read")
        if candidate.problem is not None or candidate.source is None
        else (candidate, next(outcomes))
        for candidate in chunk
    ]
