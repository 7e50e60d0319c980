"""The realtime metrics on the real stack: a real daphne (in prometheus_client's
multi-process mode, writing to a directory of the test's own), real channels-redis on a
Redis server of the test's own, real websocket clients, and /metrics in this process
adding up daphne's files and parsed with prometheus_client's own parser."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
from django.db import transaction
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from scheduling.realtime.events import EventBatch, committed_head
from tests.live_support import (
    Daphne,
    RedisServer,
    channel_layers_for,
    wait_for_quiet_database,
    wait_until,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
METRICS_TOKEN = "stream-metrics-token"


@pytest.fixture(scope="module")
def multiproc_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daphne(redis_server, multiproc_dir, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = Daphne(
            redis_server, STREAM_PING_SECONDS="1", PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir)
        ).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def same_layer(settings, redis_server, multiproc_dir, monkeypatch):
    """This process publishes through daphne's Redis, and its /metrics reads daphne's files."""
    settings.CHANNEL_LAYERS = channel_layers_for(redis_server)
    settings.METRICS_TOKEN = METRICS_TOKEN
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc_dir))
    yield
    wait_for_quiet_database()


class Socket:
    """A websocket client in a thread: keeps every event it is sent."""

    def __init__(self, daphne: Daphne, user) -> None:
        key = Token.objects.get_or_create(user=user)[0].key
        self.opened = contextlib.ExitStack()
        self.ws = self.opened.enter_context(
            connect(daphne.ws_url(f"token={key}&after=0"), origin=daphne.origin)
        )
        self.seqs: list[int] = []
        self.pings = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                frame = json.loads(self.ws.recv())
                if frame["type"] == "ping":
                    self.pings += 1
                else:
                    self.seqs.extend(event["seq"] for event in frame.get("events", ()))
        except ConnectionClosed:
            pass

    def close(self) -> None:
        self.opened.close()
        self.thread.join(timeout=5)


@pytest.fixture
def sockets():
    opened: list[tuple[Daphne, Socket]] = []

    def open_(daphne: Daphne, user) -> Socket:
        opened.append((daphne, Socket(daphne, user)))
        return opened[-1][1]

    yield open_
    for _, socket in opened:
        socket.close()
    # Until the server has let them go: the next test's database starts its sequence
    # again, and a hub still holding this test's sockets would still hold its seqs.
    for daphne in {daphne for daphne, _ in opened if daphne.process is not None}:
        wait_until(
            lambda daphne=daphne: {n for _, n in connections(scrape(), daphne)} <= {0.0},
            timeout=10,
            what="the closed sockets to leave the server",
        )


def scrape() -> dict[str, list]:
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200, response.content
    by_name: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


def total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, ())
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def events(count: int, *, to: list[int]) -> None:
    for n in range(count):
        with transaction.atomic():
            batch = EventBatch()
            batch.add("test.metrics", {"n": n}, recipients=to)
            batch.flush()


def lag(samples, daphne: Daphne) -> list[float]:
    pid = str(daphne.process.pid)
    return [
        s.value for s in samples.get("scheduling_stream_lag_events", ()) if s.labels["pid"] == pid
    ]


def connections(samples, daphne: Daphne) -> set[tuple[str, float]]:
    pid = str(daphne.process.pid)
    found = samples.get("scheduling_websocket_connections", ())
    return {(s.labels["stream"], s.value) for s in found if s.labels["pid"] == pid}


def test_connections_frames_and_lag_after_real_traffic(daphne, sockets, desk, therapist):
    pid = str(daphne.process.pid)
    before = scrape()
    desk_socket = sockets(daphne, desk)
    therapist_socket = sockets(daphne, therapist)
    # The realtime process's own values, labelled with its pid (multi-process mode,
    # "liveall").
    wait_until(
        lambda: connections(scrape(), daphne) == {("desk", 1.0), ("personal", 1.0)},
        timeout=10,
        what="a desk and a personal connection in /metrics",
    )

    events(5, to=[therapist.pk])
    wait_until(lambda: len(desk_socket.seqs) == 5, timeout=10, what="5 events on the desk")
    wait_until(lambda: len(therapist_socket.seqs) == 5, timeout=10, what="5 on the therapist")
    wait_until(lambda: desk_socket.pings and therapist_socket.pings, timeout=10, what="pings")
    head = committed_head()
    samples = wait_until(
        lambda: (s := scrape()) and lag(s, daphne) == [0.0] and s,
        timeout=10,
        what="the lag at 0 once the events were handed on",
    )
    assert total(samples, "scheduling_stream_committed_seq") == head

    def sent(name: str, **labels: str) -> float:
        return total(samples, name, pid=pid, **labels) - total(before, name, pid=pid, **labels)

    assert sent("scheduling_websocket_events_sent_total") == 10
    frames = sent("scheduling_websocket_frames_sent_total", kind="events")
    assert 2 <= frames <= 10  # batched: one frame carries one or more events
    assert sent("scheduling_websocket_frames_sent_total", kind="ping") >= 2

    therapist_socket.close()
    wait_until(
        lambda: connections(scrape(), daphne) == {("desk", 1.0), ("personal", 0.0)},
        timeout=10,
        what="the closed socket to leave the gauge",
    )


def test_lag_grows_while_the_transport_is_down_and_falls_to_zero_after_delivery(
    daphne, sockets, redis_server, desk
):
    desk_socket = sockets(daphne, desk)
    events(1, to=[])
    wait_until(lambda: len(desk_socket.seqs) == 1, timeout=10, what="the first event")
    redis_server.stop()
    try:
        events(4, to=[])  # committed; their publication fails (Redis is down)
        wait_until(
            lambda: lag(scrape(), daphne) == [4.0],
            timeout=15,
            what="a lag of 4 while Redis is down",
        )
    finally:
        redis_server.start()
    # The hub joins again and reads the lost tail from the database for its sockets.
    wait_until(lambda: len(desk_socket.seqs) == 5, timeout=20, what="the 4 lost events")
    wait_until(lambda: lag(scrape(), daphne) == [0.0], timeout=15, what="the lag back at 0")
    assert desk_socket.seqs == sorted(set(desk_socket.seqs))


def test_a_stopped_realtime_process_leaves_no_connections_behind(
    redis_server, multiproc_dir, django_db_blocker, sockets, desk
):
    with django_db_blocker.unblock():
        other = Daphne(redis_server, PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir)).start()
    pid = str(other.process.pid)
    try:
        sockets(other, desk)
        wait_until(
            lambda: connections(scrape(), other) == {("desk", 1.0)},
            timeout=10,
            what="the second process's connection",
        )
    finally:
        other.stop()
    samples = scrape()
    assert not [
        s for s in samples.get("scheduling_websocket_connections", ()) if s.labels["pid"] == pid
    ]
