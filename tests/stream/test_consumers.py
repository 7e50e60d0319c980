"""The websocket consumer through Channels' communicator, on the in-memory layer: who may
connect, what each role receives, batching, the buffer bound, catch-up and gaps.
(tests/stream/test_live_daphne.py runs the same stream on daphne and Redis.)"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client as DjangoClient
from rest_framework.authtoken.models import Token

from config.asgi import application
from scheduling.models import StreamEvent, StreamEventRecipient, Trip
from scheduling.realtime.events import DRIVER_QUEUE, STREAM_GROUP, EventBatch, _allocate, shaped_for
from scheduling.realtime.hub import Hub
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.trips import assign_trip
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")
HOST = [(b"host", b"localhost"), ORIGIN]


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    """Whatever REDIS_URL says, these tests use a layer of their own process."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.LIVE_STREAM = {**settings.LIVE_STREAM, "WATCH_SECONDS": 60.0}
    yield
    channel_layers.backends.clear()


def socket(user, query: str = "after=0", headers=HOST) -> WebsocketCommunicator:
    token = Token.objects.get_or_create(user=user)[0].key
    return WebsocketCommunicator(application, f"/ws/stream/?{query}&token={token}", headers)


asocket = sync_to_async(socket)


def run(coroutine_function) -> None:
    async_to_sync(coroutine_function)()


def events_of(frame: dict) -> list[tuple[str, int]]:
    assert frame["type"] == "events"
    return [(e["type"], e["seq"]) for e in frame["events"]]


def add_events(user_ids: list[int], count: int = 1, type: str = "test.event") -> None:
    with transaction.atomic():
        batch = EventBatch()
        for n in range(count):
            batch.add(type, {"n": n}, recipients=user_ids)
        batch.flush()


# --- who may connect -----------------------------------------------------------------


def test_anonymous_wrong_token_foreign_origin_and_inactive_users_are_refused(therapist):
    token = Token.objects.create(user=therapist).key
    inactive = factories.UserFactory(role="receptionist", is_active=False)

    async def refused(communicator: WebsocketCommunicator) -> None:
        connected, _ = await communicator.connect()
        assert connected is False  # closed before accept: the client gets a 403

    async def go():
        await refused(WebsocketCommunicator(application, "/ws/stream/", HOST))
        await refused(WebsocketCommunicator(application, "/ws/stream/?token=nope", HOST))
        evil = [(b"host", b"localhost"), (b"origin", b"http://evil.example")]
        await refused(WebsocketCommunicator(application, f"/ws/stream/?token={token}", evil))
        no_origin = [(b"host", b"localhost")]
        await refused(WebsocketCommunicator(application, f"/ws/stream/?token={token}", no_origin))
        await refused(await asocket(inactive))

    run(go)


def test_a_path_other_than_the_stream_is_refused_at_the_handshake(therapist):
    token = Token.objects.create(user=therapist).key

    async def go():
        for path in ("/ws/stream", "/ws/stream/x/", "/ws/", "/ws/stream/%00/"):
            communicator = WebsocketCommunicator(application, f"{path}?token={token}", HOST)
            connected, _ = await communicator.connect()
            assert connected is False, path  # closed before accept: daphne answers 403
        # A valid token on the right path still connects (the refusals were the path's).
        ok = WebsocketCommunicator(application, f"/ws/stream/?token={token}", HOST)
        assert (await ok.connect())[0] is True
        await ok.disconnect()

    run(go)


def test_the_session_cookie_authenticates_and_a_bad_token_beats_it(desk):
    browser = DjangoClient()
    browser.force_login(desk)
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())

    async def go():
        ws = WebsocketCommunicator(application, "/ws/stream/", [*HOST, cookie])
        assert (await ws.connect())[0] is True
        await ws.disconnect()
        forged = WebsocketCommunicator(application, "/ws/stream/?token=x", [*HOST, cookie])
        assert (await forged.connect())[0] is False

    run(go)


# --- what each role receives -------------------------------------------------------------


def test_a_therapist_never_receives_another_therapists_events(
    desk, therapist, service, client_record, tomorrow_at
):
    other = factories.therapist(service, username="other")

    def book(who, hour):
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=who.pk,
            start=tomorrow_at(hour),
        )

    async def go():
        mine, theirs = await asocket(therapist, "after=0"), await asocket(other, "after=0")
        assert (await mine.connect())[0] and (await theirs.connect())[0]
        own = await sync_to_async(book)(therapist, 9)
        await sync_to_async(book)(other, 9)
        await sync_to_async(book)(other, 13)
        frame = await mine.receive_json_from(timeout=5)
        assert [e["data"]["id"] for e in frame["events"]] == [own.pk]
        # The other therapist's two bookings reached their socket, and nothing more
        # reached this one (the last event of theirs was committed after our own).
        got = []
        while len(got) < 2:
            got += (await theirs.receive_json_from(timeout=5))["events"]
        assert all(e["data"]["therapist"] == other.pk for e in got)
        assert await mine.receive_nothing(timeout=0.2)
        await mine.disconnect()
        await theirs.disconnect()

    run(go)


def test_a_driver_gets_address_and_times_but_no_notes_phone_or_other_legs(
    desk, therapist, service, client_record, tomorrow_at
):
    driver = factories.driver(username="dan")
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(10),
        address="12 Mabini St",
        notes="Gate code 4471; prefers a female therapist",
        needs_transport=True,
    )
    dropoff = Trip.objects.get(appointment=appointment, leg="dropoff")

    async def go():
        ws = await asocket(driver, "after=0")
        assert (await ws.connect())[0]
        await sync_to_async(assign_trip)(trip_id=dropoff.pk, driver_id=driver.pk)
        await sync_to_async(act_on_appointment)(
            actor=therapist, appointment_id=appointment.pk, action="accept"
        )
        frames = [await ws.receive_from(timeout=5)]
        while "appointment.updated" not in frames[-1]:
            frames.append(await ws.receive_from(timeout=5))
        await ws.disconnect()
        return frames

    frames = async_to_sync(go)()
    text = "".join(frames)
    assert "Gate code" not in text and client_record.phone not in text
    assert "12 Mabini St" in text
    updated = next(
        e
        for frame in frames
        for e in json.loads(frame)["events"]
        if e["type"] == "appointment.updated"
    )
    assert "notes" not in updated["data"]
    assert [t["id"] for t in updated["data"]["trips"]] == [dropoff.pk]  # not the pickup leg
    assert updated["data"]["start"] and updated["data"]["end"]
    # The desk and the therapist see the notes; the same rows through /api/events/ too.
    row = StreamEvent.objects.get(seq=updated["seq"])
    assert row.data["notes"].startswith("Gate code")
    assert shaped_for(therapist, row.data)["notes"].startswith("Gate code")


def test_a_driver_sees_only_their_own_place_in_a_whole_queue_event(db):
    first, second = factories.driver(username="d1"), factories.driver(username="d2")
    data = {"queue": [{"driver": first.pk, "since": "…"}, {"driver": second.pk, "since": "…"}]}
    assert shaped_for(second, data) == {"position": 2, "queue_length": 2}
    assert shaped_for(factories.driver(username="d3"), data) == {
        "position": None,
        "queue_length": 2,
    }
    desk = factories.UserFactory(role="receptionist")
    assert shaped_for(desk, data) == data

    async def go():
        ws = await asocket(second, "after=0")
        assert (await ws.connect())[0]
        await sync_to_async(_queue_event)(data, [first.pk, second.pk])
        frame = await ws.receive_json_from(timeout=5)
        assert frame["events"][0]["data"] == {"position": 2, "queue_length": 2}
        await ws.disconnect()

    run(go)


def _queue_event(data: dict, recipients: list[int]) -> None:
    with transaction.atomic():
        batch = EventBatch()
        batch.add(DRIVER_QUEUE, data, recipients=recipients)
        batch.flush()


# --- batching, bound, catch-up ---------------------------------------------------------------


def test_idle_sends_at_once_and_a_burst_shares_one_frame(settings, therapist):
    settings.LIVE_STREAM = {**settings.LIVE_STREAM, "BATCH_SECONDS": 2.0}

    async def go():
        ws = await asocket(therapist, "after=0")
        assert (await ws.connect())[0]
        await sync_to_async(add_events)([therapist.pk])
        first = await ws.receive_json_from(timeout=1)  # idle: no waiting for the window
        assert len(first["events"]) == 1
        for _ in range(9):
            await sync_to_async(add_events)([therapist.pk])
        second = await ws.receive_json_from(timeout=5)
        assert len(second["events"]) == 9  # all nine within the window: one frame
        assert [s for _, s in events_of(second)] == list(range(2, 11))
        await ws.disconnect()

    run(go)


def test_a_full_buffer_closes_with_4008_and_the_client_resumes_from_its_seq(settings, therapist):
    settings.LIVE_STREAM = {**settings.LIVE_STREAM, "BATCH_SECONDS": 5.0, "BUFFER_EVENTS": 5}

    async def go():
        ws = await asocket(therapist, "after=0")
        assert (await ws.connect())[0]
        await sync_to_async(add_events)([therapist.pk])
        first = await ws.receive_json_from(timeout=1)
        for _ in range(12):
            await sync_to_async(add_events)([therapist.pk])
        closed = await ws.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4008}
        last = first["events"][-1]["seq"]
        again = await asocket(therapist, f"after={last}")
        assert (await again.connect())[0]
        got = []
        while len(got) < 12:
            got += events_of(await again.receive_json_from(timeout=5))
        assert [s for _, s in got] == list(range(2, 14))
        await again.disconnect()

    run(go)


def test_catch_up_then_live_without_gap_or_duplicate(settings, therapist, service):
    settings.LIVE_STREAM = {**settings.LIVE_STREAM, "BUFFER_EVENTS": 40}  # chunks of 40
    other = factories.therapist(service, username="other")
    for _ in range(60):
        add_events([therapist.pk])
        add_events([other.pk])

    async def go():
        ws = await asocket(therapist, "after=0")
        assert (await ws.connect())[0]
        got = []
        while len(got) < 60:
            got += events_of(await ws.receive_json_from(timeout=5))
        await sync_to_async(add_events)([therapist.pk])
        got += events_of(await ws.receive_json_from(timeout=5))
        await ws.disconnect()
        return got

    got = async_to_sync(go)()
    assert [s for _, s in got] == list(
        StreamEvent.objects.visible_to(therapist).values_list("seq", flat=True)
    )


def test_without_after_the_stream_starts_from_now(therapist):
    add_events([therapist.pk], 3)

    async def go():
        ws = await asocket(therapist, "after=")
        assert (await ws.connect())[0]
        assert await ws.receive_nothing(timeout=0.2)
        await sync_to_async(add_events)([therapist.pk])
        assert [s for _, s in events_of(await ws.receive_json_from(timeout=5))] == [4]
        await ws.disconnect()

    run(go)


def test_an_event_lost_in_the_layer_is_read_from_the_database_when_the_next_arrives(
    therapist,
):
    async def go():
        ws = await asocket(therapist, "after=0")
        assert (await ws.connect())[0]
        await sync_to_async(_unpublished_events)(therapist.pk, 2)  # their publish was lost
        await sync_to_async(add_events)([therapist.pk])  # prev says: two came before me
        got = events_of(await ws.receive_json_from(timeout=5))
        assert [s for _, s in got] == [1, 2, 3]
        await ws.disconnect()

    run(go)


def _unpublished_events(user_id: int, count: int) -> None:
    """Rows as EventBatch writes them, whose live copy never left the process."""
    with transaction.atomic():
        last = _allocate(count)
        rows = StreamEvent.objects.bulk_create(
            StreamEvent(seq=seq, type="test.lost", data={})
            for seq in range(last - count + 1, last + 1)
        )
        StreamEventRecipient.objects.bulk_create(
            StreamEventRecipient(event_id=row.seq, user_id=user_id) for row in rows
        )


def test_clients_only_listen_and_disconnect_leaves_the_hub_and_the_group(therapist, desk):
    async def go():
        ws = await asocket(therapist, "after=0")
        assert (await ws.connect())[0]
        await ws.send_to(text_data='{"subscribe": "stream.desk"}')  # ignored
        assert await ws.receive_nothing(timeout=0.2)
        hub = Hub.current()
        layer = channel_layers["default"]
        assert set(hub.by_user) == {therapist.pk} and not hub.desk
        assert len(layer.groups.get(STREAM_GROUP, {})) == 1  # the process, not the socket
        front = await asocket(desk, "after=0")
        assert (await front.connect())[0]
        assert len(hub.desk) == 1 and len(layer.groups[STREAM_GROUP]) == 1
        await ws.disconnect()
        assert hub.by_user == {} and len(layer.groups[STREAM_GROUP]) == 1
        await front.disconnect()
        assert not hub.desk and len(layer.groups.get(STREAM_GROUP, {})) == 0

    run(go)


def test_events_arriving_out_of_order_are_put_back_in_order(therapist):
    """Two commits published by different processes can cross on the way: the hub holds
    the later one until the earlier arrives, and the socket gets both from the layer, in
    order, without reading the database (whose rows here say otherwise)."""

    async def go():
        ws = await asocket(therapist, "after=0")
        assert (await ws.connect())[0]
        await sync_to_async(add_events)([therapist.pk])
        assert [s for _, s in events_of(await ws.receive_json_from(timeout=5))] == [1]
        await sync_to_async(_unpublished_events)(therapist.pk, 2)
        layer = channel_layers["default"]
        live = {"type": "stream.event", "event": "test.live", "data": {"via": "layer"}}
        await layer.group_send(
            STREAM_GROUP, {**live, "seq": 3, "prev": 2, "to": [[therapist.pk, 2]]}
        )
        await layer.group_send(
            STREAM_GROUP, {**live, "seq": 2, "prev": 1, "to": [[therapist.pk, 1]]}
        )
        got = (await ws.receive_json_from(timeout=5))["events"]
        while len(got) < 2:
            got += (await ws.receive_json_from(timeout=5))["events"]
        assert [(e["seq"], e["data"]) for e in got] == [
            (2, {"via": "layer"}),
            (3, {"via": "layer"}),
        ]
        await ws.disconnect()

    run(go)


# --- a login that ends closes its sockets ---------------------------------------------------


def session_socket(browser: DjangoClient) -> WebsocketCommunicator:
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())
    return WebsocketCommunicator(application, "/ws/stream/?after=0", [*HOST, cookie])


async def closed_with(ws: WebsocketCommunicator) -> int | None:
    output = await ws.receive_output(timeout=2)
    assert output["type"] == "websocket.close", output
    return output.get("code")


def test_signing_out_closes_that_sessions_socket_with_4401_and_no_other(desk):
    laptop, phone = DjangoClient(), DjangoClient()
    laptop.force_login(desk)
    phone.force_login(desk)

    async def go():
        on_laptop, on_phone = session_socket(laptop), session_socket(phone)
        assert (await on_laptop.connect())[0] and (await on_phone.connect())[0]
        await sync_to_async(laptop.post)("/accounts/logout/")
        assert await closed_with(on_laptop) == 4401
        assert await on_phone.receive_nothing(timeout=0.3)
        await sync_to_async(add_events)([])  # the phone's stream still works
        assert events_of(await on_phone.receive_json_from(timeout=2)) == [("test.event", 1)]
        await on_phone.disconnect()

    run(go)


def test_deactivating_a_user_closes_all_their_sockets(therapist, desk):
    def deactivate() -> None:
        therapist.is_active = False
        therapist.save(update_fields=["is_active"])

    async def go():
        first, second = await asocket(therapist), await asocket(therapist)
        other = await asocket(desk)
        for ws in (first, second, other):
            assert (await ws.connect())[0]
        await sync_to_async(deactivate)()
        assert await closed_with(first) == 4401
        assert await closed_with(second) == 4401
        assert await other.receive_nothing(timeout=0.3)
        await other.disconnect()

    run(go)


def test_deleting_a_token_closes_the_sockets_it_opened_only(desk):
    browser = DjangoClient()
    browser.force_login(desk)

    async def go():
        by_token, by_session = await asocket(desk), session_socket(browser)
        assert (await by_token.connect())[0] and (await by_session.connect())[0]
        await sync_to_async(Token.objects.filter(user=desk).delete)()
        assert await closed_with(by_token) == 4401
        assert await by_session.receive_nothing(timeout=0.3)
        await by_session.disconnect()

    run(go)
