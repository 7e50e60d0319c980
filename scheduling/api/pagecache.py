"""Appointment list pages kept while nothing they show has changed.

Every change to an appointment or a trip records a stream event in the change's own
transaction, and so moves the event counter (`events.committed_head`) at the moment it
commits: the live dashboards depend on that already. A page built after reading the
counter at N therefore shows everything committed up to N (and perhaps a little more),
and is still right for as long as the counter reads N. Each answer costs one read of
the counter instead of the page's queries and rendering.

Pages live in this process's memory, and in the shared cache (Redis in the full stack)
under their counter: after a change, the first worker to be asked builds a page and
the others take it from there instead of each building it again. A shared cache that
fails is logged and passed over; the page is built from the database.

A page is never cached or served inside a transaction, where the reader could see its
own uncommitted writes, and never kept longer than `API_PAGE_CACHE["MAX_AGE_SECONDS"]`,
so a change made behind the services' back (SQL typed by hand) shows within that time.
A request with `Cache-Control: no-cache` is answered from the database.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError
from rest_framework.request import Request

from scheduling.api.actor import request_actor
from scheduling.realtime.events import committed_head

logger = logging.getLogger(__name__)
SHARED_PREFIX = "apipage"
# How long the shared copy lives: long enough for the other workers to be asked for the
# page after a change, short enough that distinct pages do not pile up in Redis.
SHARE_SECONDS = 10.0


@dataclass(frozen=True)
class Entry:
    head: int
    built: float  # time.time(): a page taken from the shared cache keeps its age
    data: Any


class PageCache:
    """A bounded least-recently-used map of pages, each tagged with the counter it was
    built at. Thread-safe (gthread workers share it)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, head: int, *, max_age: float) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.head != head or time.time() - entry.built > max_age:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry.data

    def put(self, key: tuple, head: int, data: Any, *, size: int, built: float) -> None:
        with self._lock:
            self._entries[key] = Entry(head, built, data)
            self._entries.move_to_end(key)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


pages = PageCache()


def cached_page(request: Request, build: Callable[[], Any], *, params: frozenset[str]) -> Any:
    """The page `request` asks for: from memory when the counter has not moved since it
    was built for the same user, role, address, time zone and media type; otherwise
    `build()`. Only requests whose query parameters are all among `params` are kept:
    parameters the page ignores would otherwise make any number of copies of it."""
    options = settings.API_PAGE_CACHE
    if (
        options["SIZE"] <= 0
        or connection.in_atomic_block
        or not params.issuperset(request.query_params)
    ):
        return build()
    # Read before the page's own queries (token authentication reads it with the user):
    # a change committed in between shows in the page without being in its tag, so a
    # page can be newer than its tag, never older.
    head = getattr(request.auth, "stream_head", None)
    if head is None:
        head = committed_head()
    user = request_actor(request)
    key = (
        user.pk,
        user.effective_role,
        *address(request),
        timezone.get_current_timezone(),
        getattr(request, "accepted_media_type", None),
    )
    if "no-cache" not in request.headers.get("Cache-Control", ""):
        data = pages.get(key, head, max_age=options["MAX_AGE_SECONDS"])
        if data is not None:
            return data
        shared = _shared_get(key, head, max_age=options["MAX_AGE_SECONDS"])
        if shared is not None:
            built, data = shared
            pages.put(key, head, data, size=options["SIZE"], built=built)
            return data
    built, data = time.time(), build()
    pages.put(key, head, data, size=options["SIZE"], built=built)
    _shared_set(key, head, (built, data), ttl=min(options["MAX_AGE_SECONDS"], SHARE_SECONDS))
    return data


def address(request: Request) -> tuple:
    """What the page's `next`/`previous` links are built from (`build_absolute_uri`: the
    scheme, the host and the path with its query), as the request gave them: every
    request that builds the same links gives the same values. Read raw rather than
    through `build_absolute_uri`, which checks the host again (the common middleware has
    already refused a host not allowed) and cost a twentieth of a cached page."""
    meta = request.META
    return (
        request.scheme,
        meta.get("HTTP_X_FORWARDED_HOST"),
        meta.get("HTTP_HOST"),
        meta.get("SERVER_NAME"),
        meta.get("SERVER_PORT"),
        request.path,  # with the script name
        meta.get("QUERY_STRING"),
    )


def forget_pages() -> None:
    """Drop every kept page, here and in the shared cache. The counter only moves forward
    in a living database; after one is restored from a backup (or flushed by a test) the
    same numbers come round again for other contents."""
    pages.clear()
    if hasattr(cache, "delete_pattern"):  # django-redis
        cache.delete_pattern(f"{SHARED_PREFIX}:*")
    else:
        cache.clear()


def _shared_key(key: tuple, head: int) -> str:
    # The counter is in the key: whatever is found under it is right for that counter.
    digest = hashlib.blake2b(repr(key).encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{SHARED_PREFIX}:{digest.hexdigest()}:{head}"


def _shared_get(key: tuple, head: int, *, max_age: float) -> tuple[float, Any] | None:
    try:
        found = cache.get(_shared_key(key, head))
    except RedisError:
        logger.warning("page cache: the shared cache failed; reading the page", exc_info=True)
        return None
    if found is None or time.time() - found[0] > max_age:
        return None
    return found


def _shared_set(key: tuple, head: int, value: tuple[float, Any], *, ttl: float) -> None:
    try:
        cache.set(_shared_key(key, head), value, timeout=max(1, round(ttl)))
    except RedisError:
        logger.warning("page cache: the shared cache failed; page not shared", exc_info=True)
