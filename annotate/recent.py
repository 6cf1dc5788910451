"""Rows that every API call of a volunteer reads, kept in this process for a few seconds.

Each lease and each vote first reads the caller's token and user, and each lease reads its
project; with these kept, a lease is one statement on PostgreSQL and a vote four. The cost is a
bounded delay: a change made by another process (a token deleted, a user deactivated or given
another role, a project's serving settings) reaches this process at most READ_CACHE_SECONDS
later. Token owners are kept only with CACHE_TOKEN_OWNERS (off by default: role and token
changes must apply at once, issue 19). A change made through the ORM in this process applies
at once, because the model signals (annotate.apps) forget what it changed.
READ_CACHE_SECONDS = 0 turns this off.

Only rows that were found are kept: a token created a moment ago works at once.
"""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import TTLCache
from django.conf import settings

# Bounded, so that a flood of distinct keys cannot grow a process: past this many entries the
# least recently used go first.
MAX_ENTRIES = 50_000
# The clock entries age by; tests move it forward.
clock: Callable[[], float] = time.monotonic
# Gunicorn's sync workers serve one request at a time, but `manage.py runserver` and tests
# use threads; cachetools' caches are not thread-safe on their own.
_lock = threading.Lock()
_kept: TTLCache | None = None  # made for the current READ_CACHE_SECONDS by _cache()


def _seconds() -> float:
    return float(getattr(settings, "READ_CACHE_SECONDS", 0))


def _now() -> float:
    return clock()  # looked up on each call, so that a clock set later applies


def _cache(seconds: float) -> TTLCache:
    """The cache whose entries live `seconds`: a new, empty one if the setting changed since
    the last (tests change it). Call holding _lock."""
    global _kept
    if _kept is None or _kept.ttl != seconds:
        _kept = TTLCache(maxsize=MAX_ENTRIES, ttl=seconds, timer=_now)
    return _kept


def get(key: Hashable) -> Any | None:
    """The row kept under `key` if it is younger than READ_CACHE_SECONDS, else None."""
    seconds = _seconds()
    if seconds <= 0:
        return None
    with _lock:
        return _cache(seconds).get(key)


def put(key: Hashable, row: Any) -> None:
    seconds = _seconds()
    if row is None or seconds <= 0:
        return
    with _lock:
        _cache(seconds)[key] = row


def forget(key: Hashable) -> None:
    with _lock:
        if _kept is not None:
            _kept.pop(key, None)


def forget_all() -> None:
    with _lock:
        if _kept is not None:
            _kept.clear()


def forget_saved_or_deleted(sender, instance, **kwargs) -> None:
    """Receiver of post_save and post_delete for the models kept here (connected in
    annotate.apps): what this process changes, it no longer answers from memory."""
    from rest_framework.authtoken.models import Token

    from annotate.models import Project, User

    if sender is Token:
        forget(("token", instance.key))
    elif sender is User:
        forget(("user", instance.pk))
    elif sender is Project:
        forget(("project", instance.pk))
