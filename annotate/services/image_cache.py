"""The ML worker's local copies of stored files: the CNN copies a training or a suggestion run
reads, fetched through the storage API (a local folder or an S3 bucket alike) into a bounded
folder on the worker (IMAGE_CACHE_DIR, at most IMAGE_CACHE_BYTES), least recently used out
first. So an ML worker needs no disk shared with the web hosts: only the storage.

Stored CNN copies never change (their name holds the image's SHA-256), so a copy in the cache is
never stale. Files are written under a temporary name and renamed, so a process reading the
folder (a data loader, another worker process) never sees half a file. Eviction keeps the files
this process handed out for the run under way (`pinned`): a training reads its files for many
epochs, so the cache must hold at least one training set (the README says how to size it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files.storage import Storage, storages

logger = logging.getLogger(__name__)

# Eviction removes files until the cache is this share of its size, so that it does not run
# at every miss once the cache is full.
LOW_WATER = 0.9
COPY_CHUNK = 1 << 20
# Fetches at once on misses (threads: each waits on the network, not the CPU); botocore keeps
# 10 connections per client by default, so more threads would open and drop connections.
FETCH_THREADS = 10


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evicted: int = 0
    fetched_bytes: int = 0

    def line(self) -> str:
        total = self.hits + self.misses
        rate = self.hits / total if total else 0.0
        return (
            f"{self.hits} hits, {self.misses} misses ({rate:.0%} hits), "
            f"{self.fetched_bytes} bytes fetched, {self.evicted} evicted"
        )


class ImageCache:
    """A folder of local copies of stored files, at most `max_bytes` (least recently used out
    first; a hit refreshes a file's modification time, which is what "used" means here)."""

    def __init__(self, root: Path, max_bytes: int, storage: Storage | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.storage = storage
        self.stats = CacheStats()
        self._pinned: set[Path] = set()
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        self._size = sum(size for _, size, _ in self._entries())

    def _storage(self) -> Storage:
        # The backend itself, not the lazy default_storage proxy (whose class is not S3's).
        backend: Storage = self.storage if self.storage is not None else storages["default"]
        return backend

    def _local(self, name: str) -> Path:
        # A digest of the name, not the name: any stored name makes one safe file name, and
        # two levels of folders keep each folder small.
        digest = hashlib.sha256(name.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}{Path(name).suffix[:10]}"

    def _entries(self) -> Iterator[tuple[Path, int, float]]:
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if ".part-" in entry.name:
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # evicted by another process meanwhile
                    continue
                yield Path(entry.path), stat.st_size, stat.st_mtime

    def get(self, name: str) -> str:
        """The local path of stored file `name`, fetched from the storage on a miss.

        Raises FileNotFoundError (an OSError) when the storage has no such file."""
        path = self._local(name)
        try:
            os.utime(path)  # a hit: now the most recently used
        except FileNotFoundError:
            size = self._fetch(name, path)
            with self._lock:
                self.stats.misses += 1
                self.stats.fetched_bytes += size
                self._size += size
                self._pinned.add(path)
                over = self._size > self.max_bytes
            if over:
                self.evict()
        else:
            with self._lock:
                self.stats.hits += 1
                self._pinned.add(path)
        return str(path)

    def _fetch(self, name: str, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        size = 0
        try:
            source = _read_stream(self._storage(), name)
            try:
                with open(temporary, "wb") as target:
                    while chunk := source.read(COPY_CHUNK):
                        target.write(chunk)
                        size += len(chunk)
            finally:
                source.close()
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return size

    def _get_or_none(self, name: str) -> str | None:
        try:
            return self.get(name)
        except FileNotFoundError:
            logger.warning("stored file %s is missing; skipped", name)
            return None

    def get_many(self, names: Iterable[str]) -> list[str | None]:
        """Local paths in order; None for a name the storage does not have. Misses are
        fetched by FETCH_THREADS threads: from an object store each is a round trip."""
        with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="image-cache") as pool:
            return list(pool.map(self._get_or_none, names))

    def evict(self) -> int:
        """Remove least recently used files, none pinned by this process, until the cache is
        LOW_WATER of its size (all processes' files count: the folder is the truth)."""
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        size = sum(entry[1] for entry in entries)
        target = int(self.max_bytes * LOW_WATER)
        removed = 0
        with self._lock:
            pinned = set(self._pinned)
        for path, file_size, _ in entries:
            if size <= target:
                break
            if path in pinned:
                continue
            path.unlink(missing_ok=True)
            size -= file_size
            removed += 1
        if size > self.max_bytes:
            logger.warning(
                "image cache holds %d bytes, over IMAGE_CACHE_BYTES (%d): the run under way "
                "needs more than the cache; raise IMAGE_CACHE_BYTES",
                size,
                self.max_bytes,
            )
        with self._lock:
            self._size = size
            self.stats.evicted += removed
        return removed

    @contextmanager
    def run(self, what: str) -> Iterator[CacheStats]:
        """One run (a training, a batch of suggestions): its files stay pinned until it ends,
        then its hits and misses are logged."""
        before = CacheStats(**vars(self.stats))
        try:
            yield self.stats
        finally:
            with self._lock:
                self._pinned.clear()
                this_run = CacheStats(
                    **{key: getattr(self.stats, key) - value for key, value in vars(before).items()}
                )
            logger.info("image cache, %s: %s", what, this_run.line())


def _read_stream(storage: Storage, name: str) -> IO[bytes]:
    """A stored file to read once from start to end; FileNotFoundError when there is none.

    From S3 one GET whose body is streamed: django-storages' open() would first ask for the
    object's metadata, then download it through a transfer manager of its own threads, three
    times the cost for a small file."""
    from botocore.exceptions import ClientError
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name

    if not isinstance(storage, S3Storage):
        return storage.open(name, "rb")
    key = storage._normalize_name(clean_name(name))
    try:
        body: IO[bytes] = storage.bucket.Object(key).get()["Body"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(f"{name} is not in the storage") from None
        raise
    return body


_cache: ImageCache | None = None
_cache_key: tuple[str, int] | None = None


def image_cache() -> ImageCache:
    """This process's cache, as the settings say (rebuilt when they change, as in tests)."""
    global _cache, _cache_key
    key = (str(settings.IMAGE_CACHE_DIR), settings.IMAGE_CACHE_BYTES)
    if _cache is None or key != _cache_key:
        _cache = ImageCache(Path(key[0]), key[1])
        _cache_key = key
    return _cache
