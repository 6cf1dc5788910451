"""The ML worker's image cache: local copies fetched through the storage API (a local folder
and a real S3 server alike), counted, and bounded least recently used out first."""

import os
import time
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotate.services.image_cache import ImageCache, image_cache


def stored(name: str, size: int) -> str:
    return default_storage.save(name, ContentFile(bytes([len(name) % 256]) * size))


def read(name: str) -> bytes:
    with default_storage.open(name, "rb") as f:
        return f.read()


def test_a_miss_fetches_through_the_storage_then_hits_are_local(storage, tmp_path):
    name = stored("preprocessed/1/ab/one.jpg", 1000)
    cache = ImageCache(tmp_path / "cache", max_bytes=10_000)
    first = cache.get(name)
    assert Path(first).is_relative_to(tmp_path / "cache")
    assert Path(first).read_bytes() == read(name)
    assert cache.get(name) == first
    assert (cache.stats.hits, cache.stats.misses, cache.stats.fetched_bytes) == (1, 1, 1000)
    assert [p for p in (tmp_path / "cache").rglob("*") if ".part-" in p.name] == []


def test_missing_files_are_none_and_the_rest_keep_their_order(storage, tmp_path):
    names = [stored(f"preprocessed/1/{i}.jpg", 100) for i in range(5)]
    cache = ImageCache(tmp_path / "cache", max_bytes=10_000)
    paths = cache.get_many([names[0], "preprocessed/1/gone.jpg", *names[1:]])
    assert paths[1] is None and all(paths[i] for i in (0, 2, 3, 4, 5))
    assert [Path(p).read_bytes() for p in paths if p] == [read(name) for name in names]
    assert cache.stats.misses == 5


def test_the_least_recently_used_go_first_and_files_of_the_run_stay(db, tmp_path):
    names = [stored(f"preprocessed/2/{i}.jpg", 1000) for i in range(6)]
    cache = ImageCache(tmp_path / "cache", max_bytes=3500)
    with cache.run("first"):
        old = [cache.get(name) for name in names[:3]]
    # Ages apart (mtime is the recency), the first read again: now the most recent.
    for age, path in zip((30, 20, 10), old, strict=True):
        os.utime(path, (time.time() - age, time.time() - age))
    with cache.run("second") as stats:
        cache.get(names[0])
        new = [cache.get(name) for name in names[3:]]
        # Over 3500 bytes: the two least recently used of the first run went, not this run's.
        assert not Path(old[1]).exists() and not Path(old[2]).exists()
        assert Path(old[0]).exists() and all(Path(p).exists() for p in new)
    assert stats.evicted == 2 and stats.hits == 1 and stats.misses == 6


def test_a_run_bigger_than_the_cache_keeps_its_files_and_says_so(db, tmp_path, caplog):
    names = [stored(f"preprocessed/3/{i}.jpg", 1000) for i in range(4)]
    cache = ImageCache(tmp_path / "cache", max_bytes=2000)
    with cache.run("big"):
        paths = [cache.get(name) for name in names]
        assert all(Path(p).exists() for p in paths)
    assert "raise IMAGE_CACHE_BYTES" in caplog.text
    assert "image cache, big: 0 hits, 4 misses" in caplog.text


def test_the_process_cache_follows_the_settings(settings, tmp_path):
    settings.IMAGE_CACHE_DIR = tmp_path / "a"
    settings.IMAGE_CACHE_BYTES = 123
    cache = image_cache()
    assert cache is image_cache() and cache.max_bytes == 123 and cache.root == tmp_path / "a"
    settings.IMAGE_CACHE_DIR = tmp_path / "b"
    assert image_cache().root == tmp_path / "b"
