"""Fixed-window rate limits on atomic counters.

With Redis (the full stack) each hit is one INCR plus an EXPIRE on the window's first
hit, in a single round trip, shared by every process. The embedded default counts in the
local-memory cache, which is per process and good enough for one developer.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache

# INCR and EXPIRE together, so a crash between them cannot leave a counter that never
# expires (and a client locked out for good).
_INCR_WITH_TTL = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def retry_after(name: str, ident: str) -> int | None:
    """Count one request for (`name`, `ident`); seconds to wait if it is over the limit."""
    limit, window = settings.API_RATE_LIMITS[name]
    now = time.time()
    bucket = int(now // window)
    count = _incr(counter_key(name, ident, bucket), window)
    if count <= limit:
        return None
    return max(1, int((bucket + 1) * window - now) + 1)


def counter_key(name: str, ident: str, bucket: int) -> str:
    """The cache key of (`name`, `ident`)'s counter in window `bucket`. The identity is
    hashed: it can be anything a client sent as a username (a megabyte, control
    characters, lone surrogates), and a key should stay short and plain."""
    raw = ident.encode("utf-8", "surrogatepass")
    return f"rl:{name}:{hashlib.blake2b(raw, digest_size=16).hexdigest()}:{bucket}"


def _incr(key: str, ttl: int) -> int:
    client = _redis()
    if client is not None:
        return int(client.eval(_INCR_WITH_TTL, 1, cache.make_key(key), ttl))
    if cache.add(key, 1, ttl):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, ttl)
        return 1


def _redis():
    if "django_redis" not in settings.CACHES["default"]["BACKEND"]:
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")
