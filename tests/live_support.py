"""Real processes for the live-stream tests: a Redis server of the test's own (so a test
may restart it without touching the shared one) and daphne serving config.asgi against
the test database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
DAPHNE = str(Path(sys.executable).with_name("daphne"))
REDIS_FLAGS = ("--save", "", "--appendonly", "no", "--loglevel", "warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_quiet_database(*, timeout: float = 15.0, quiet_for: float = 0.3) -> None:
    """Until no other session on the test database has run a statement or held a
    transaction open for `quiet_for` seconds.

    A live server may still be answering a request the browser sent before its page was
    closed; the flush between tests then takes its table locks in another order than
    that request's query, and PostgreSQL kills one of them as a deadlock. Waiting here,
    after the pages are closed and before the flush, removes the race."""
    sql = (
        "SELECT pid, state, left(query, 200) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND state IS NOT NULL AND state <> 'idle'"
    )
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            busy = cursor.fetchall()
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_for:
            return
        if now > deadline:
            raise AssertionError(f"the test database stayed busy for {timeout}s: {busy}")
        time.sleep(0.02)


class RedisServer:
    """redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), *REDIS_FLAGS],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: _accepts(self.port), timeout=10, what="redis-server")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Daphne:
    """daphne serving config.asgi on a free port, on the test database and `redis`."""

    def __init__(self, redis: RedisServer, *, args: tuple[str, ...] = (), **env: str) -> None:
        self.port = free_port()
        self.redis = redis
        self.args = args
        self.env = env
        self.log = (BASE_DIR / "var" / f"test-daphne-{os.getpid()}-{self.port}.log").resolve()
        self.process: subprocess.Popen | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/stream/" + (f"?{query}" if query else "")

    def start(self) -> Daphne:
        name = connection.settings_dict["NAME"]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            "REDIS_URL": self.redis.url,
            "LOG_LEVEL": "INFO",
            **self.env,
        }
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    DAPHNE,
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    *self.args,
                    "config.asgi:application",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._up, timeout=30, what=f"daphne (log: {self.log})")
        return self

    def _up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"daphne exited: {self.log.read_text()[-2000:]}")
        return _accepts(self.port)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        self.log.unlink(missing_ok=True)


def channel_layers_for(redis: RedisServer) -> dict:
    """The test process's channel layers: the same Redis daphne uses (its settings, from
    REDIS_URL, give the same shape)."""
    from config.settings.base import redis_db_url

    url = redis_db_url(redis.url, 2)
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url]},
        },
        "stream": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": "asgi2"},
        },
    }
