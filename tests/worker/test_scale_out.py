"""Scale-out shown, not assumed (issue 16 item 8): two of each process against one
PostgreSQL and one Redis, as docs/operations.md#running-n-of-each-behind-a-proxy says to
run them.

Two gunicorn processes (config.wsgi), two daphne processes (config.asgi), two Celery
workers on the dispatch, notify and default queues and one beat, all real subprocesses
on this run's test database and a Redis server of the test's own. The test talks to them
as a proxy's clients would: the HTTP API with tokens on either web process, websockets on
either realtime process (`Listener` does what live.js does: resumes with `after=` its
last seq, and like a proxy tries the other process when one is gone).

Shown, in one run (the processes take most of the time to start, so they start once):
- bookings and shift changes through either web process reach the desk's sockets on
  both realtime processes, each event once, in order, with no gap;
- FIFO holds across both workers: every driver is given trips in the order the
  reference model (tests/worker/test_worker_dispatch.py) says, and the dispatcher's decision
  rows say the same (the chosen driver is the first in the queue they recorded);
- a realtime process killed with SIGKILL: its clients reconnect to the other one and
  catch up, no gap, no duplicate;
- beat killed: /health/ answers 503 naming beat once its periods (shortened to
  BEAT_SECONDS by SCHEDULING_TEST_BEAT_SECONDS) are two late.
"""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta
from itertools import cycle

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from config.settings.base import redis_db_url
from scheduling.models import DispatchDecision, StreamEvent, Trip
from scheduling.states import BUSY_TRIP_STATUSES
from tests import factories
from tests.live_support import (
    Daphne,
    Gunicorn,
    Listener,
    RedisServer,
    token,
    wait_for_quiet_database,
    wait_until,
)
from tests.worker.conftest import HORIZON_MINUTES, Driver, Model
from tests.worker_support import Beat, Worker, needs_worker, settle

pytestmark = [*needs_worker, pytest.mark.slow]

BEAT_SECONDS = 3
DRIVERS = 10
BOOKINGS = 8  # 16 trips: the first 10 find a driver, the rest wait for one to finish


class Stack:
    """Two web, two realtime, two workers, one beat; every process stopped at the end."""

    def __init__(self) -> None:
        self.redis = RedisServer().start()
        self.broker = redis_db_url(self.redis.url, 10)
        env = {
            # The web processes publish to the broker (not in-process), as in production.
            "SCHEDULING_TEST_WORKER": "1",
            "SCHEDULING_TEST_RUN": settings.TEST_RUN,
            "TEST_BROKER_URL": self.broker,
            "SCHEDULING_TEST_BEAT_SECONDS": str(BEAT_SECONDS),
            # Every trip is within the horizon: this is about order, not the clock.
            "DISPATCH_HORIZON_MINUTES": str(HORIZON_MINUTES),
            "PYTHONUNBUFFERED": "1",
        }
        celery = {**env, "REDIS_URL": self.redis.url}
        self.webs = [Gunicorn(self.redis, **env) for _ in range(2)]
        self.realtimes = [Daphne(self.redis, **env) for _ in range(2)]
        self.workers = [
            Worker(f"scale{n}", concurrency=1, env=celery, broker=self.broker) for n in range(2)
        ]
        self.beat = Beat(env=celery, broker=self.broker)
        self.processes = [*self.webs, *self.realtimes, *self.workers, self.beat]
        self.listeners: list[Listener] = []

    def start(self) -> Stack:
        # Side by side: each is a Django start-up of a few seconds on a busy machine.
        with ThreadPoolExecutor(len(self.processes)) as pool:
            for started in [pool.submit(process.start) for process in self.processes]:
                started.result()
        return self

    def stop(self) -> None:
        for listener in self.listeners:
            with contextlib.suppress(Exception):  # stop the others whatever this one does
                listener.stop()
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.stop()
        self.redis.stop()


@pytest.fixture
def stack(transactional_db):
    running = Stack()
    try:
        yield running.start()
    finally:
        running.stop()
        # Before the flush: nothing of the stack may still hold a statement open.
        wait_for_quiet_database()


class Api:
    """The HTTP API through one web process or the other, in turn."""

    def __init__(self, webs: list[Gunicorn]) -> None:
        self.next_web = cycle(webs)
        self.used: list[int] = []

    def post(self, user, path: str, body: dict) -> dict:
        web = next(self.next_web)
        self.used.append(web.port)
        response = requests.post(
            web.origin + path,
            json=body,
            headers={"Authorization": f"Token {token(user)}"},
            timeout=30,
        )
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()


def health(web: Gunicorn) -> tuple[int, dict]:
    response = requests.get(web.origin + "/health/", timeout=30)
    return response.status_code, response.json()


def stream_of(user) -> list[int]:
    return list(StreamEvent.objects.visible_to(user).order_by("seq").values_list("seq", flat=True))


def caught_up(listener: Listener, user) -> bool:
    return listener.seqs() == stream_of(user)


def observed() -> dict[int, int]:
    """Each trip that has a driver, and who."""
    return dict(Trip.objects.filter(status__in=BUSY_TRIP_STATUSES).values_list("pk", "driver_id"))


def test_two_of_each_and_one_beat(stack):
    webs, realtimes, beat = stack.webs, stack.realtimes, stack.beat
    desk = factories.UserFactory(role="receptionist")
    service = factories.ServiceFactory(duration_minutes=60, buffer_minutes=15)
    therapist = factories.therapist(service)
    drivers = [factories.driver() for _ in range(DRIVERS)]
    clients = [factories.ClientFactory() for _ in range(BOOKINGS)]
    model = Model({d.pk: Driver(d.pk, "motorcycle", 1) for d in drivers})

    # Everything answers, beat included (each periodic task ran within two periods).
    last: list[tuple[int, dict]] = []

    def healthy() -> bool:
        last[:] = [health(webs[0])]
        return last[0][0] == 200

    try:
        wait_until(healthy, timeout=60, what="/health/ 200")
    except AssertionError as failed:
        raise AssertionError(f"{failed}: {last}") from None
    assert health(webs[1])[1]["checks"]["workers"]["detail"] == "2 worker(s)"

    # The desk and the therapist watch on each realtime process.
    sockets = {
        (n, who): Listener([realtimes[n], realtimes[1 - n]], user)
        for n in (0, 1)
        for who, user in (("desk", desk), ("therapist", therapist))
    }
    users = {"desk": desk, "therapist": therapist}
    stack.listeners.extend(sockets.values())

    api = Api(webs)
    for driver in drivers:  # one after the other: the queue is this order
        api.post(driver, "/api/drivers/me/shift/", {"on_shift": True})
        model.go_on_shift(driver.pk)

    day = timezone.localdate() + timedelta(days=2)
    for n, client in enumerate(clients):
        # Four a day, each after the last one's pick-up: windows in booking order.
        first = datetime.combine(day + timedelta(days=n // 4), time(8, 45))
        start = timezone.make_aware(first + timedelta(minutes=165 * (n % 4)))
        booked = api.post(
            desk,
            "/api/appointments/",
            {
                "client": client.pk,
                "service": service.pk,
                "therapist": therapist.pk,
                "start": start.isoformat(),
                "needs_transport": True,
            },
        )
        for trip in Trip.objects.filter(appointment_id=booked["id"]).order_by("id"):
            model.add_trip(trip)
        if n == BOOKINGS // 2 - 1:
            # Realtime 0 dies mid-run, its sockets having seen some of it; bookings go on.
            for who in users:
                sockets[(0, who)].wait_for(bool, what=f"{who}'s first events on realtime 0")
            realtimes[0].kill()
            seen_before_kill = {who: sockets[(0, who)].last_seq for who in users}
    assert set(api.used) == {web.port for web in webs}

    expected = model.dispatch()
    wait_until(lambda: len(observed()) == DRIVERS, timeout=60, what="every driver dispatched")
    settle(stack.broker)
    assert observed() == expected
    assert len(model.waiting) == 2 * BOOKINGS - DRIVERS

    # Four drivers finish, in an order of the test's choosing: they join the back of
    # the queue, and the waiting trips go to them in that order.
    finishing = [drivers[7], drivers[2], drivers[9], drivers[0]]
    done = set()
    for driver in finishing:
        trip = Trip.objects.get(driver=driver, status="assigned")
        for action in ("depart", "arrive", "complete"):
            api.post(driver, f"/api/trips/{trip.pk}/{action}/", {})
        model.finish_trip(driver.pk)
        done.add(trip.pk)
    expected = {t: d for t, d in {**expected, **model.dispatch()}.items() if t not in done}
    wait_until(lambda: observed() == expected, timeout=60, what=f"FIFO: {expected}")
    settle(stack.broker)
    assert observed() == expected

    # The dispatcher's own record agrees: each driver chosen was the first of the queue
    # it saw, the queue it saw was the model's order, and both workers made decisions.
    assigned = DispatchDecision.objects.filter(outcome="assigned").order_by("id")
    assert assigned.count() == DRIVERS + len(finishing)
    for decision in assigned:
        skipped = {s["driver"] for s in decision.skipped}
        ahead = [q["driver"] for q in decision.queue if q["driver"] not in skipped]
        assert ahead[:1] == [decision.driver_id], decision.pk
    order = [d.driver_id for d in assigned]
    assert order == [d.pk for d in drivers] + [d.pk for d in finishing]
    passes = [
        len(re.findall(r"scheduling\.dispatch\.run\[[^]]+\] succeeded", w.log()))
        for w in stack.workers
    ]
    assert all(passes), passes

    # Every socket has every event of its stream once, in order: those of the killed
    # process on the other one, resumed from their last seq.
    for (n, who), listener in sockets.items():
        user = users[who]
        wait_until(
            lambda listener=listener, user=user: caught_up(listener, user),
            timeout=30,
            what=f"{who} on realtime {n}",
        )
        seqs = listener.seqs()
        assert seqs == sorted(set(seqs)), (n, who)
        assert listener.duplicates == [], (n, who)
    desk_seqs = sockets[(1, "desk")].seqs()
    assert desk_seqs == list(range(desk_seqs[0], desk_seqs[-1] + 1))  # not one missing
    for who in users:
        moved = sockets[(0, who)]
        # On realtime 0 until it died, on realtime 1 ever after.
        assert moved.connected_to[0] == realtimes[0].port, who
        assert set(moved.connected_to[1:]) == {realtimes[1].port}, who
        assert moved.last_seq > seen_before_kill[who], who  # and went on from there
        assert set(sockets[(1, who)].connected_to) == {realtimes[1].port}, who

    # Beat dies: once its tasks are two periods late, /health/ says so, naming beat, and
    # soon every periodic task (nothing else runs them; no bookings run dispatch now).
    beat.kill()
    periodic = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    def beat_silent() -> dict | None:
        status, body = health(webs[1])
        detail = body["checks"]["beat"]["detail"]
        named = all(f"{task} last ran" in detail for task in periodic)
        return body if status == 503 and named else None

    body = wait_until(beat_silent, timeout=8 * BEAT_SECONDS + 30, what="/health/ 503")
    assert body["status"] == "down"
    assert body["checks"]["beat"]["ok"] is False
    assert body["checks"]["beat"]["detail"].startswith("beat silent: ")
    assert {name for name, check in body["checks"].items() if not check["ok"]} == {"beat"}
