"""Tests: real PostgreSQL and Redis when reachable, the embedded default otherwise.

DATABASE_URL/REDIS_URL win; without them the local defaults are probed. With CI=true a
missing service is an error, never a silent fallback.
"""

import os
import socket
import sys
from typing import cast
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.settings import base
from config.settings.base import *  # noqa: F403

LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/scheduling"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return True
    except OSError:
        return False


def pick(name: str, default: str) -> str:
    url = os.environ.get(name) or default
    if reachable(url):
        return url
    if IN_CI:
        raise ImproperlyConfigured(f"{name}: {urlsplit(url).netloc} is not reachable and CI=true")
    print(
        f"\n*** {name}: {urlsplit(url).netloc} unreachable: tests that need it will SKIP ***",
        file=sys.stderr,
    )
    return ""


# `make test` runs the suite a second time on the embedded default (SQLite, in-memory
# layers, eager Celery), the shape `make run` serves, with SCHEDULING_TEST_EMBEDDED=1 and
# the tests that need PostgreSQL or Redis deselected (they ran in the first pass).
EMBEDDED = os.environ.get("SCHEDULING_TEST_EMBEDDED") == "1"
DATABASE_URL = "" if EMBEDDED else pick("DATABASE_URL", LOCAL_POSTGRES)
REDIS_URL = "" if EMBEDDED else pick("REDIS_URL", LOCAL_REDIS)

if DATABASE_URL:
    DATABASES = {"default": base.postgres_database(DATABASE_URL)}
    # Threads in the concurrency tests each hold a connection; do not keep them around.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # One test database per run, so two runs on one machine (a developer's and CI's, or
    # parallel sessions) never fight over it.
    DATABASES["default"]["TEST"] = {"NAME": f"test_scheduling_{os.getpid()}"}
else:
    DATABASES = {"default": base.sqlite_database(":memory:")}

# Tests of in-process behaviour keep the embedded Celery; the worker tests start a real one
# (tests/worker_support.py) with SCHEDULING_TEST_WORKER set, and that one enqueues to the
# broker too. Broker and fake provider get Redis databases of their own (10 and 11), or a
# server of the test's own (TEST_BROKER_URL) when the test stops it.
IN_TEST_WORKER = bool(os.environ.get("SCHEDULING_TEST_WORKER"))
CELERY_TASK_ALWAYS_EAGER = not IN_TEST_WORKER
CELERY_BROKER_URL = os.environ.get("TEST_BROKER_URL") or (
    base.redis_db_url(REDIS_URL, 10) if REDIS_URL else "memory://"
)
FAKE_PROVIDER_URL = base.redis_db_url(REDIS_URL, 11) if REDIS_URL else ""
# Like the test database, the keys in those Redis databases are per run: two runs on one
# machine must not take each other's tasks. A test's worker inherits its run's name.
TEST_RUN = os.environ.get("SCHEDULING_TEST_RUN") or f"run{os.getpid()}"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **base.CELERY_BROKER_TRANSPORT_OPTIONS,
    "global_keyprefix": f"{TEST_RUN}:",
}
SCHEDULING = {
    **base.SCHEDULING,
    "FAKE_PROVIDER_URL": os.environ.get("FAKE_PROVIDER_URL") or FAKE_PROVIDER_URL,
    "FAKE_PROVIDER_NAMESPACE": f"{TEST_RUN}:",
}
if REDIS_URL:
    # Rate limits and health are tested on the real thing; the prefix keeps two test
    # runs on one Redis apart.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": base.redis_db_url(REDIS_URL, 11),
            "KEY_PREFIX": f"test{os.getpid()}",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TIME_ZONE = "Asia/Manila"

# collectstatic is for production; here whitenoise serves from the finders.
STATIC_ROOT = None  # type: ignore[assignment]  # base.py's is a Path
WHITENOISE_USE_FINDERS = True

# tests/worker/test_scale_out.py runs a real beat and then kills it: with this set, every
# periodic task runs (and expires) every that many seconds, in each process of the stack
# (beat, workers, web: /health/ reads the same schedule), so "beat silent" shows within
# seconds instead of minutes.
if os.environ.get("SCHEDULING_TEST_BEAT_SECONDS"):
    _beat_seconds = float(os.environ["SCHEDULING_TEST_BEAT_SECONDS"])
    CELERY_BEAT_SCHEDULE = {
        name: {
            **entry,
            "schedule": _beat_seconds,
            "options": {**cast(dict, entry.get("options", {})), "expires": _beat_seconds},
        }
        for name, entry in base.CELERY_BEAT_SCHEDULE.items()
    }
