"""Real processes for the live-stream tests: a Redis server of the test's own (so a test
may restart it without touching the shared one), daphne serving config.asgi and gunicorn
serving config.wsgi against the test database, and `Listener`, a websocket client that
does what static/js/live.js does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import websockets
from django.db import connection
from rest_framework.authtoken.models import Token

BASE_DIR = Path(__file__).resolve().parent.parent
DAPHNE = str(Path(sys.executable).with_name("daphne"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
REDIS_FLAGS = ("--save", "", "--appendonly", "no", "--loglevel", "warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    condition: Callable[[], object], *, timeout: float, what: str, every: float = 0.02
) -> object:
    """Poll `condition` every `every` seconds until it returns something truthy, and
    return that; after `timeout`, fail the test (AssertionError) saying `what`. The one
    poll of the live, browser and worker tests (tests/worker_support.py uses it too)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


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
        env = server_env(self.redis, self.env)
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

    def kill(self) -> None:
        """kill -9: no close frames, no goodbye to Redis; its sockets just break."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

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


def server_env(redis: RedisServer, extra: dict[str, str]) -> dict[str, str]:
    """A server process's environment: the test settings on this run's test database
    and `redis`, plus `extra`."""
    name = connection.settings_dict["NAME"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "REDIS_URL": redis.url,
        "LOG_LEVEL": "INFO",
        **extra,
    }


class Gunicorn:
    """gunicorn serving config.wsgi (as the Procfile's web process) on a free port, on the
    test database and `redis`; `env` adds to the test settings."""

    def __init__(self, redis: RedisServer, *, workers: int = 1, **env: str) -> None:
        self.port = free_port()
        self.redis = redis
        self.workers = workers
        self.env = env
        self.log = (BASE_DIR / "var" / f"test-gunicorn-{os.getpid()}-{self.port}.log").resolve()
        self.process: subprocess.Popen | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gunicorn:
        command = [
            GUNICORN,
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--access-logfile",
            "-",
        ]
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            # A session of its own, so that stop() can take the master and its workers.
            self.process = subprocess.Popen(
                command, cwd=BASE_DIR, env=server_env(self.redis, self.env), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(self._booted, timeout=60, what=f"gunicorn (log: {self.log})")
        return self

    def _booted(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.output()[-2000:]}")
        return _accepts(self.port) and "Booting worker" in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
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


def token(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


class Listener:
    """A websocket client in a thread of its own that does what the browser client
    (static/js/live.js) does: keeps every event once, in order, and reconnects with its
    last seq (`after=`) when dropped.

    Given several realtime processes it starts on the first and, when one cannot be
    reached, tries the next: what a proxy in front of them does for a browser."""

    def __init__(
        self, daphne: Daphne | list[Daphne], user, *, after: int | None = 0, **connect_args
    ) -> None:
        self.servers = daphne if isinstance(daphne, list) else [daphne]
        self.at = 0
        self.key = token(user)
        self.last_seq = after
        self.connect_args = connect_args
        self.events: list[dict] = []
        self.duplicates: list[int] = []
        self.closes: list[int | None] = []
        self.failures: list[str] = []
        self.connects = 0
        self.connected_to: list[int] = []  # the port of each connection, in order
        self.ws = None
        self.stopping = False
        self.reading = threading.Event()
        self.reading.set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=5)
        wait_until(lambda: self.connects, timeout=10, what="the first connection")

    @property
    def daphne(self) -> Daphne:
        return self.servers[self.at]

    def url(self) -> str:
        after = "" if self.last_seq is None else f"&after={self.last_seq}"
        return self.daphne.ws_url(f"token={self.key}{after}")

    async def _start(self) -> asyncio.Task:
        return asyncio.create_task(self._run())

    async def _run(self) -> None:
        attempt = 0
        while not self.stopping:
            try:
                async with websockets.connect(
                    self.url(),
                    origin=self.daphne.origin,
                    open_timeout=5,
                    close_timeout=1,
                    **self.connect_args,
                ) as ws:
                    self.ws, attempt = ws, 0
                    self.connects += 1
                    self.connected_to.append(self.daphne.port)
                    async for text in ws:
                        while not self.reading.is_set():
                            await asyncio.sleep(0.01)
                        self._frame(json.loads(text))
                self.closes.append(ws.close_code)
            except websockets.ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
                self.failures.append(repr(error))  # daphne or Redis restarting: try again
                self.at = (self.at + 1) % len(self.servers)  # or another process
            attempt += 1
            await asyncio.sleep(min(1.0, 0.02 * 2**attempt))

    def _frame(self, frame: dict) -> None:
        if frame["type"] != "events":
            return
        for event in frame["events"]:
            if self.last_seq is not None and event["seq"] <= self.last_seq:
                self.duplicates.append(event["seq"])
                continue
            self.events.append(event)
            self.last_seq = event["seq"]

    def drop(self) -> None:
        """Close the socket from the client's side; the loop reconnects."""
        asyncio.run_coroutine_threadsafe(self.ws.close(), self.loop).result(timeout=5)

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    def wait_for(self, predicate, *, timeout: float = 15, what: str = "events") -> None:
        wait_until(lambda: predicate(list(self.events)), timeout=timeout, what=what)

    def stop(self) -> None:
        self.stopping = True

        async def cancel() -> None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
