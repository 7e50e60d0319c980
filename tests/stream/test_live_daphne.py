"""The live stream end to end: a real daphne process, real channels-redis (a Redis server of
these tests' own, so one test can restart it), the test database, and real websocket
clients. Events are written by the real API or the real EventBatch in this process, and
travel to daphne through Redis."""

from __future__ import annotations

import socket
import time
from base64 import b64encode
from os import urandom

import pytest
import redis
from django.db import transaction
from rest_framework.test import APIClient

from scheduling.models import StreamEvent
from scheduling.realtime.events import STREAM_GROUP, EventBatch
from tests import factories
from tests.live_support import (
    Daphne,
    Listener,
    RedisServer,
    channel_layers_for,
    token,
    wait_for_quiet_database,
    wait_until,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
BUFFER_EVENTS = 300  # small, so that the slow-client test needs only a few MB


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daphne(redis_server, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        # Short pings: a stalled socket is given up after two of them.
        server = Daphne(
            redis_server, STREAM_BUFFER_EVENTS=str(BUFFER_EVENTS), STREAM_PING_SECONDS="2"
        ).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def same_layer(settings, redis_server):
    """This process publishes on commit through the Redis that daphne listens to."""
    settings.CHANNEL_LAYERS = channel_layers_for(redis_server)
    yield
    # Before the flush: daphne may still be answering a socket the test has just closed.
    wait_for_quiet_database()


@pytest.fixture
def listeners():
    opened: list[Listener] = []

    def open_(*args, **kwargs) -> Listener:
        listener = Listener(*args, **kwargs)
        opened.append(listener)
        return listener

    yield open_
    for listener in opened:
        listener.stop()


def test_booking_over_http_reaches_the_therapist_and_acceptance_the_desk(
    daphne, listeners, desk, therapist, service, client_record, tomorrow_at
):
    other = factories.therapist(service, username="other")
    therapist_socket = listeners(daphne, therapist, after=None)
    other_socket = listeners(daphne, other, after=None)
    desk_socket = listeners(daphne, desk, after=None)

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token(desk)}")
    created = api.post(
        "/api/appointments/",
        {
            "client": client_record.pk,
            "service": service.pk,
            "therapist": therapist.pk,
            "start": tomorrow_at(10).isoformat(),
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    appointment = created.json()["id"]
    therapist_socket.wait_for(lambda events: events, what="appointment.created")
    [event] = therapist_socket.events
    assert (event["type"], event["data"]["id"]) == ("appointment.created", appointment)

    api.credentials(HTTP_AUTHORIZATION=f"Token {token(therapist)}")
    accepted = api.post(f"/api/appointments/{appointment}/accept/", {}, format="json")
    assert accepted.status_code == 200, accepted.content
    desk_socket.wait_for(lambda events: len(events) == 2, what="the update on the desk")
    update = desk_socket.events[1]
    assert update["type"] == "appointment.updated"
    assert (update["data"]["id"], update["data"]["status"]) == (appointment, "confirmed")
    therapist_socket.wait_for(lambda events: len(events) == 2, what="the update, theirs too")
    assert [e["type"] for e in therapist_socket.events] == [
        "appointment.created",
        "appointment.updated",
    ]
    assert other_socket.events == []  # and the other therapist heard nothing of it


def burst(users, count: int, *, on_each=None) -> None:
    """`count` events, one transaction each, spread over `users`' personal streams."""
    for n in range(count):
        with transaction.atomic():
            batch = EventBatch()
            batch.add("test.burst", {"n": n}, recipients=[users[n % len(users)].pk])
            batch.flush()
        if on_each is not None:
            on_each(n)


def stream_of(user) -> list[int]:
    return list(StreamEvent.objects.visible_to(user).values_list("seq", flat=True))


def test_clients_dropped_mid_burst_resume_with_every_event_once_in_order(
    daphne, listeners, desk, therapist, service
):
    """1,000 events, one commit each, alternating between two therapists: the desk stream
    carries all of them, the therapist's every other one (so its `prev` skips)."""
    other = factories.therapist(service, username="other")
    desk_socket = listeners(daphne, desk)
    therapist_socket = listeners(daphne, therapist)

    def drop_midway(n: int) -> None:
        if n == 300:
            desk_socket.drop()
        if n == 600:
            therapist_socket.drop()

    burst([therapist, other], 1000, on_each=drop_midway)
    for listener, user, count in ((desk_socket, desk, 1000), (therapist_socket, therapist, 500)):
        expected = stream_of(user)
        assert len(expected) == count
        listener.wait_for(lambda events, n=count: len(events) >= n, what=f"{count} events")
        assert listener.seqs() == expected
        assert listener.connects == 2
        assert listener.duplicates == []  # the server never sent anything twice either


def test_the_same_across_a_redis_restart(daphne, listeners, redis_server, desk, therapist, service):
    other = factories.therapist(service, username="other")
    desk_socket = listeners(daphne, desk)
    therapist_socket = listeners(daphne, therapist)

    def restart_midway(n: int) -> None:
        if n == 400:
            redis_server.restart()  # publishes fail meanwhile; the database has them

    burst([therapist, other], 1000, on_each=restart_midway)
    for listener, user, count in ((desk_socket, desk, 1000), (therapist_socket, therapist, 500)):
        listener.wait_for(lambda events, n=count: len(events) >= n, timeout=30, what="events")
        assert listener.seqs() == stream_of(user)
        assert listener.duplicates == []


def test_a_lost_tail_is_read_from_the_database(daphne, listeners, redis_server, therapist):
    """The last events of a burst vanish in Redis and nothing follows them: the process
    watcher notices the committed head is ahead and the connection catches up."""
    listener = listeners(daphne, therapist)
    burst([therapist], 5)
    listener.wait_for(lambda events: len(events) == 5)
    redis_server.stop()
    burst([therapist], 3)  # committed; the publish fails (logged), nothing else comes
    redis_server.start()
    listener.wait_for(lambda events: len(events) == 8, timeout=20, what="the lost tail")
    assert listener.seqs() == stream_of(therapist)


def test_a_client_that_stops_reading_is_cut_off_and_catches_up(daphne, listeners, desk):
    """Bounded buffer: the client's socket stops draining; the server holds back at most
    BUFFER_EVENTS, closes with 4008, and the client resumes from its last seq."""
    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tiny.connect(("127.0.0.1", daphne.port))
    # max_queue=1: the client library stops reading its socket after one unread frame.
    listener = listeners(daphne, desk, sock=tiny, max_queue=1, max_size=None)
    listener.connect_args = {"max_size": None}  # the reconnection reads normally
    listener.reading.clear()
    padding = "x" * 2000
    with transaction.atomic():
        batch = EventBatch()
        for n in range(4000):  # ~8 MB: more than the kernel's buffers can hide
            batch.add("test.big", {"n": n, "pad": padding})
        batch.flush()
    # This user's socket: the module's daphne also serves (and may cut off) other tests'.
    cut_off = f"closing user {desk.pk}'s socket"
    wait_until(
        lambda: cut_off in daphne.output(),
        timeout=30,
        what="the server to cut the slow client off",
    )
    listener.reading.set()
    listener.wait_for(lambda events: len(events) >= 4000, timeout=60, what="all 4000 events")
    assert listener.seqs() == stream_of(desk)
    assert listener.connects >= 2


def test_half_open_socket_is_closed_and_leaves_its_group(redis_server, therapist):
    """A peer that stops answering (no pong) is dropped by daphne's ping timeout, and the
    consumer's disconnect takes it out of the process hub, which (its last socket gone)
    leaves the group in Redis."""
    server = Daphne(redis_server, args=("--ping-interval", "1", "--ping-timeout", "1")).start()
    redis_client = redis.Redis.from_url(redis_server.url)
    group = f"asgi2__group__{STREAM_GROUP}"  # the process subscribes with its first socket

    def members() -> int:
        return dict(redis_client.pubsub_numsub(group))[group.encode()]

    others = members()  # the module's daphne, if it still has a socket
    try:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        key = b64encode(urandom(16)).decode()
        raw.sendall(
            (
                f"GET /ws/stream/?token={token(therapist)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: {server.origin}\r\n\r\n"
            ).encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 101")
        wait_until(lambda: members() == others + 1, timeout=10, what="the subscription")
        started = time.monotonic()
        # Read (so the kernel never pushes back) but never answer a ping.
        while True:
            try:
                if not raw.recv(65536):
                    break
            except ConnectionResetError:
                break
        assert time.monotonic() - started < 10
        wait_until(lambda: members() == others, timeout=10, what="the group to be left")
    finally:
        server.stop()


def test_events_committed_while_daphne_restarts_arrive_after(redis_server, listeners, therapist):
    server = Daphne(redis_server).start()
    try:
        listener = listeners(server, therapist)
        burst([therapist], 3)
        listener.wait_for(lambda events: len(events) == 3)
        server.stop()
        burst([therapist], 3)
        server.start()
        listener.wait_for(lambda events: len(events) == 6, timeout=20, what="the missed events")
        assert listener.seqs() == stream_of(therapist)
    finally:
        server.stop()
