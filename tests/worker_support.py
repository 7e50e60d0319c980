"""Real Celery workers for the worker tests, and the plumbing around them.

A worker is a `celery -A config worker` process group, run under the test settings with
DATABASE_URL pointing at this run's test database (so the tests using one must be
`transaction=True`: the worker has to see what the test committed) and the broker on
its own Redis database (10) or on a server of the test's own. The test process then
publishes for real too (`producing_to`), instead of running tasks in-process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection

from config.celery import app
from tests.conftest import IN_CI
from tests.live_support import wait_until

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("dispatch", "notify", "default")

# Real PostgreSQL (the worker is another process: SQLite in memory cannot be shared) and
# real Redis. Without them these tests skip loudly; with CI=true the settings refuse to
# start instead, so nothing is skipped there.
needs_worker = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not settings.REDIS_URL and not IN_CI, reason="needs Redis (REDIS_URL or 127.0.0.1:6379)"
    ),
    pytest.mark.django_db(transaction=True),
]


def database_url() -> str:
    """This run's test database, as a URL for the worker's settings."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def broker_url() -> str:
    return settings.CELERY_BROKER_URL


class Worker:
    """One worker process group; `env` adds to (or overrides) the test settings."""

    def __init__(
        self,
        name: str,
        *,
        queues: tuple[str, ...] = QUEUES,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        broker: str | None = None,
    ) -> None:
        self.name = name
        self.queues = queues
        self.concurrency = concurrency
        self.env = env or {}
        self.broker = broker
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"worker-{name}-", suffix=".log")[1])

    def start(self, *, ready_within: float = 30) -> Worker:
        env = celery_env(self.env, broker=self.broker)
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            ",".join(self.queues),
            "-c",
            str(self.concurrency),
            "-P",
            "prefork",
            "-n",
            f"{self.name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ]
        offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:
            # A session of its own, so kill() can take the whole group (main and pool).
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_until(lambda: self._started(offset), timeout=ready_within, what=f"worker {self.name}")
        return self

    def _started(self, offset: int) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"worker {self.name} exited:\n{self.log()[-3000:]}")
        return " ready." in self.log_path.read_text(errors="replace")[offset:]

    def pool_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def kill(self) -> None:
        """kill -9 the whole worker: main process and pool, no goodbye to the broker."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish, then ack
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def celery_env(extra: dict[str, str], *, broker: str | None = None) -> dict[str, str]:
    """A Celery process's environment: the test settings on this run's test database,
    publishing to the broker (`broker`, or the test broker), plus `extra`."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SCHEDULING_TEST_WORKER": "1",
        # This run's key prefix in the shared Redis databases (config/settings/test.py).
        "SCHEDULING_TEST_RUN": settings.TEST_RUN,
        "FAKE_PROVIDER_URL": settings.SCHEDULING["FAKE_PROVIDER_URL"],
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    if broker:
        env["TEST_BROKER_URL"] = broker
    return env


class Beat:
    """`celery -A config beat`, as the Procfile runs it, with a schedule file of its own;
    `env` adds to the test settings (SCHEDULING_TEST_BEAT_SECONDS shortens the periods)."""

    def __init__(self, *, env: dict[str, str] | None = None, broker: str | None = None) -> None:
        self.env = env or {}
        self.broker = broker
        self.process: subprocess.Popen | None = None
        self.directory = Path(tempfile.mkdtemp(prefix="beat-"))
        self.log_path = self.directory / "beat.log"

    def start(self, *, ready_within: float = 30) -> Beat:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "info",
            "-s", str(self.directory / "celerybeat-schedule"), "--pidfile=",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=celery_env(self.env, broker=self.broker), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(self._started, timeout=ready_within, what="beat")
        return self

    def _started(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"beat exited:\n{self.log()[-3000:]}")
        return "beat: Starting..." in self.log()

    def kill(self) -> None:
        """kill -9: beat sends nothing more."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def workers(*many: Worker) -> Iterator[list[Worker]]:
    started = []
    try:
        for worker in many:
            started.append(worker.start())
        yield started
    finally:
        for worker in started:
            worker.stop()


def reset_producer() -> None:
    """Make the app look its connection pools up again, so the next publish goes to the
    current URL. (kombu keeps pools per URL, process-wide: they stay open for reuse.)"""
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def producing_to(url: str | None = None) -> Iterator[None]:
    """The test process publishes to a real broker (`url`, default the test broker)
    instead of running tasks in-process, as the web process does in the full stack."""
    conf = app.conf
    saved = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = url or broker_url(), False
    reset_producer()
    try:
        yield
    finally:
        conf.broker_url, conf.task_always_eager = saved
        reset_producer()


def key_prefix() -> str:
    """This run's prefix on every broker key (kombu's global_keyprefix)."""
    return app.conf.broker_transport_options.get("global_keyprefix", "")


def purge(url: str | None = None) -> None:
    """Empty this run's queues and unacknowledged set, keeping kombu's bindings (deleting
    them under a producer that already declared its queues would lose its messages)."""
    client = redis.Redis.from_url(url or broker_url())
    prefix = key_prefix()
    keys = [
        key for name in (*QUEUES, "unacked") for key in client.scan_iter(match=f"{prefix}{name}*")
    ]
    if keys:
        client.delete(*keys)


def pending_messages(url: str | None = None, queues: tuple[str, ...] = QUEUES) -> int:
    """Messages waiting in `queues` plus those a worker holds unacknowledged."""
    client = redis.Redis.from_url(url or broker_url())
    prefix = key_prefix()
    waiting = sum(
        client.llen(key) for q in queues for key in client.scan_iter(match=f"{prefix}{q}*")
    )
    return waiting + client.hlen(f"{prefix}unacked")


def dispatcher_idle(url: str | None = None) -> bool:
    """No dispatch message waiting or held by a worker, and no pass holding its lock."""
    from scheduling.services.dispatch import DISPATCHER_LOCK

    if pending_messages(url, queues=("dispatch",)):
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM pg_locks
               WHERE locktype = 'advisory' AND classid = %s
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            [DISPATCHER_LOCK],
        )
        return cursor.fetchone()[0] == 0


def settle(url: str | None = None, *, timeout: float = 60) -> None:
    """Until the dispatcher is idle. Twice in a row: a message is briefly in neither the
    queue nor the unacked set while a worker takes it."""
    wait_until(
        lambda: dispatcher_idle(url) and dispatcher_idle(url), timeout=timeout, what="passes"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, to stop and start (never the shared one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        wait_until(lambda: self._answers(client), timeout=10, what="redis-server")
        return self

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """Gone, and with it whatever it held: it keeps nothing on disk."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def bookings(count: int, *, per_therapist: int = 4, transport: bool = False, days_ahead: int = 2):
    """`count` bookings through the desk's service, each telling client and therapist (two
    notifications), spread over therapists and days so that none overlaps another: each
    holds its therapist 2 h 45 (45 minutes' travel each way, the hour, a 15-minute
    buffer), so a day from 08:00 to 20:00 has four, from 08:45. With transport the
    drivers must be there already (capacity is checked at booking)."""
    from datetime import datetime, time, timedelta

    from django.utils import timezone

    from scheduling.services.appointments import create_appointment
    from tests import factories

    desk = factories.UserFactory(role="receptionist")
    service = factories.ServiceFactory(duration_minutes=60, buffer_minutes=15)
    made = []
    therapist = None
    for n in range(count):
        slot = n % per_therapist
        if slot == 0:
            therapist = factories.therapist(service, phone=f"+63918{n:07d}")
        day = timezone.localdate() + timedelta(days=days_ahead + n // (per_therapist * 50))
        first = datetime.combine(day, time(8, 45))
        start = timezone.make_aware(first + timedelta(minutes=165 * slot))
        made.append(
            create_appointment(
                actor=desk,
                client_id=factories.ClientFactory().pk,
                service_id=service.pk,
                therapist_id=therapist.pk,
                start=start,
                needs_transport=transport,
            )
        )
    return made
