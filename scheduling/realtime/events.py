"""Stream events: recorded in the same transaction as the change they describe.

Services collect events in an `EventBatch` while they work and flush it last, so the
lock on the sequence counter (which makes sequence order equal commit order) is held
only for the final few statements of the transaction.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from scheduling.models import (
    Appointment,
    DriverProfile,
    EventCounter,
    StreamEvent,
    StreamEventRecipient,
    Trip,
    User,
)
from scheduling.observability import logs

APPOINTMENT_CREATED = "appointment.created"
APPOINTMENT_UPDATED = "appointment.updated"
TRIP_ASSIGNED = "trip.assigned"
TRIP_UPDATED = "trip.updated"
DRIVER_QUEUE = "driver.queue"


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def trip_data(trip: Trip) -> dict[str, Any]:
    appointment = trip.appointment  # where and when the driver goes: their work order
    return {
        "id": trip.pk,
        "appointment": trip.appointment_id,
        "leg": trip.leg,
        "window_start": _iso(trip.window_start),
        "window_end": _iso(trip.window_end),
        "status": trip.status,
        "driver": trip.driver_id,
        "passengers": trip.passengers,
        "visit": trip.visit_id,
        "address": appointment.address,
        "start": _iso(appointment.start),
        "end": _iso(appointment.end),
    }


def appointment_data(appointment: Appointment, trips: Iterable[Trip] = ()) -> dict[str, Any]:
    return {
        "id": appointment.pk,
        "client": appointment.client_id,
        "service": appointment.service_id,
        "therapist": appointment.therapist_id,
        "start": _iso(appointment.start),
        "end": _iso(appointment.end),
        "status": appointment.status,
        "address": appointment.address,
        "notes": appointment.notes,
        "response_deadline": _iso(appointment.response_deadline),
        "series": appointment.series_id,
        "visit": appointment.visit_id,
        "trips": [trip_data(t) for t in trips],
    }


# What a driver's stream leaves out: they need the address and the times, not the
# desk's notes about the client. (Phones never enter event data: `client` is an id.)
HIDDEN_FROM_DRIVERS = frozenset({"notes"})


def shaped_for(user, data: dict[str, Any]) -> dict[str, Any]:
    """An event's data as `user`'s role may see it. The websocket and `/api/events/` both
    call this, so a live frame and its catch-up say the same thing."""
    if getattr(user, "effective_role", None) != "driver":
        return data
    shaped = {k: v for k, v in data.items() if k not in HIDDEN_FROM_DRIVERS}
    if isinstance(shaped.get("trips"), list):
        # The other leg of an appointment may be another driver's: not theirs to see.
        shaped["trips"] = [t for t in shaped["trips"] if t.get("driver") == user.pk]
    if isinstance(shaped.get("queue"), list):
        # A queue event that lists the whole queue tells a driver only their own place
        # (1 = next to be given a trip), not who else waits or since when.
        order = [entry.get("driver") for entry in shaped.pop("queue")]
        shaped["position"] = order.index(user.pk) + 1 if user.pk in order else None
        shaped["queue_length"] = len(order)
        shaped.pop("left", None)  # other drivers' comings and goings are the desk's view
    return shaped


@dataclass
class PendingEvent:
    type: str
    data: dict[str, Any]
    recipients: set[int]
    appointment_id: int | None = None
    trip_id: int | None = None


@dataclass
class EventBatch:
    events: list[PendingEvent] = field(default_factory=list)

    def add(
        self,
        type: str,
        data: dict[str, Any],
        *,
        recipients: Iterable[int | None] = (),
        appointment: Appointment | None = None,
        trip: Trip | None = None,
    ) -> None:
        self.events.append(
            PendingEvent(
                type=type,
                data=data,
                recipients={r for r in recipients if r is not None},
                appointment_id=appointment.pk if appointment else None,
                trip_id=trip.pk if trip else None,
            )
        )

    def appointment(self, type: str, appointment: Appointment, trips: list[Trip]) -> None:
        """An appointment event for the desk, its therapist and its trips' drivers."""
        self.add(
            type,
            appointment_data(appointment, trips),
            recipients=[appointment.therapist_id, *(t.driver_id for t in trips)],
            appointment=appointment,
        )

    def trip(self, type: str, trip: Trip, *, therapist_id: int | None = None) -> None:
        self.add(type, trip_data(trip), recipients=[trip.driver_id, therapist_id], trip=trip)

    def queue(self, *, leaving: Iterable[int] = ()) -> None:
        """The driver queue as it now stands, for the desk and every driver in it (and
        those who just left it): each driver's copy is cut to their own position."""
        waiting = list(DriverProfile.objects.queue().values_list("user_id", "available_since"))
        left = sorted(set(leaving))
        self.add(
            DRIVER_QUEUE,
            {
                "queue": [{"driver": user_id, "since": _iso(since)} for user_id, since in waiting],
                "left": left,
            },
            recipients=[*(user_id for user_id, _ in waiting), *left],
        )

    def flush(self) -> list[StreamEvent]:
        """Write the events with consecutive sequence numbers. Call inside the service's
        transaction, after its other writes."""
        if not self.events:
            return []
        last = _allocate(len(self.events))
        first = last - len(self.events) + 1
        rows = [
            StreamEvent(
                seq=first + i,
                type=e.type,
                data=e.data,
                appointment_id=e.appointment_id,
                trip_id=e.trip_id,
            )
            for i, e in enumerate(self.events)
        ]
        pairs = [
            (row.seq, user_id)
            for row, e in zip(rows, self.events, strict=True)
            for user_id in sorted(e.recipients)
        ]
        write = _write_postgres if connection.vendor == "postgresql" else _write_orm
        previous = write(rows, pairs, before=first)
        messages = _live_messages(rows, self.events, previous)
        # Redis is the transport and the database the record: a failed publish is
        # logged, and subscribers catch up from the table on their next connect.
        transaction.on_commit(lambda: publish(messages), robust=True)
        self.events.clear()
        return rows


def _allocate(count: int) -> int:
    """Reserve `count` sequence numbers; return the last. Locks the counter row until
    the surrounding transaction ends."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stream events are recorded inside their change's transaction")
    table = EventCounter._meta.db_table
    sql = f"UPDATE {table} SET last_seq = last_seq + %s WHERE id = 1 RETURNING last_seq"
    with connection.cursor() as cursor:
        cursor.execute(sql, [count])
        row = cursor.fetchone()
        if row is None:  # first event ever, or a test flushed the table
            EventCounter.objects.bulk_create([EventCounter(pk=1)], ignore_conflicts=True)
            cursor.execute(sql, [count])
            row = cursor.fetchone()
    return row[0]


def committed_head() -> int:
    """The newest sequence number committed (0 before the first event). Every change to
    an appointment or trip moves it when it commits."""
    with connection.cursor() as cursor:
        cursor.execute(committed_head_sql())
        row = cursor.fetchone()
    return row[0] if row else 0


def committed_head_sql() -> str:
    """The statement (or scalar subquery) behind `committed_head`, written out: every
    cached API page needs it, and the ORM took longer to build it than the database
    took to answer."""
    return f"SELECT last_seq FROM {EventCounter._meta.db_table} WHERE id = 1"


def _write_orm(
    rows: list[StreamEvent], pairs: list[tuple[int, int]], *, before: int
) -> dict[int, int]:
    """Insert the events and their (event, user) recipients; return each recipient's
    newest event before `before`, read first."""
    previous = _last_seq_by_user({user_id for _, user_id in pairs}, before=before)
    StreamEvent.objects.bulk_create(rows)
    StreamEventRecipient.objects.bulk_create(
        StreamEventRecipient(event_id=seq, user_id=user_id) for seq, user_id in pairs
    )
    return previous


def _write_postgres(
    rows: list[StreamEvent], pairs: list[tuple[int, int]], *, before: int
) -> dict[int, int]:
    """`_write_orm` in one statement: both inserts and the recipients' previous events
    (a statement started after the counter was locked, so it sees every earlier event;
    it does not see its own inserts). Every booking in the system waits for the counter
    lock, so the fewer round trips while it is held, the better; and the ORM's three
    statements cost more CPU to build than to run."""
    quote = connection.ops.quote_name
    now = timezone.now()
    data_field = StreamEvent._meta.get_field("data")
    params: list = []
    for row in rows:
        row.created_at = now
        value = data_field.get_db_prep_save(row.data, connection)
        params += [row.seq, row.type, value, row.appointment_id, row.trip_id, now]
    inserts = (
        f"INSERT INTO {quote(StreamEvent._meta.db_table)} "
        "(seq, type, data, appointment_id, trip_id, created_at) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    )
    if not pairs:
        with connection.cursor() as cursor:
            cursor.execute(inserts, params)
        _mark_saved(rows)
        return {}
    recipients = quote(StreamEventRecipient._meta.db_table)
    users = sorted({user_id for _, user_id in pairs})
    sql = (
        f"WITH new_events AS ({inserts}), new_recipients AS ("
        f"INSERT INTO {recipients} (event_id, user_id) VALUES "
        + ", ".join(["(%s, %s)"] * len(pairs))
        + f") SELECT u.id, (SELECT r.event_id FROM {recipients} r "
        "WHERE r.user_id = u.id AND r.event_id < %s ORDER BY r.event_id DESC LIMIT 1) "
        f"FROM unnest(%s::bigint[]) AS u(id) JOIN {quote(User._meta.db_table)} s ON s.id = u.id"
    )
    params += [value for pair in pairs for value in pair]
    params += [before, users]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    _mark_saved(rows)
    return {user_id: last for user_id, last in found if last is not None}


def _mark_saved(rows: list[StreamEvent]) -> None:
    for row in rows:
        row._state.adding, row._state.db = False, connection.alias


# --- live delivery ----------------------------------------------------------------------

# Every event is sent once, to one group that each realtime process joins (once, not per
# socket); the process hands it to its desk sockets and to the sockets of the users it
# names (scheduling/realtime/consumers.py).
STREAM_GROUP = "stream.events"
# The channel layer alias the stream travels on (settings: Redis pub/sub in the full
# stack); without one of its own, the default layer.
STREAM_LAYER = "stream"


def stream_layer():
    return get_channel_layer(STREAM_LAYER) or get_channel_layer()


def _last_seq_by_user(user_ids: set[int], *, before: int) -> dict[int, int]:
    """Each user's newest event before this batch. Read under the counter lock, so no
    other writer can slip an event in between."""
    if not user_ids:
        return {}
    # One index probe per user (newest first, LIMIT 1): a MAX() grouped by user would
    # read every event a user ever had, on every commit.
    newest = (
        StreamEventRecipient.objects.filter(user_id=OuterRef("pk"), event_id__lt=before)
        .order_by("-event_id")
        .values("event_id")[:1]
    )
    rows = User.objects.filter(pk__in=user_ids).annotate(last=Subquery(newest))
    return {pk: last for pk, last in rows.values_list("pk", "last") if last is not None}


def _live_messages(rows, pending, previous: dict[int, int]) -> list[tuple[str, dict]]:
    """(group, message) pairs, one per event. `prev` is the event before it in the whole
    stream (seq - 1: sequence numbers have no holes), `to` the users whose personal
    streams carry it, each with the seq their stream carried before it, so a subscriber
    can tell a gap (a message lost or still in flight) from a stream that skips other
    people's events."""
    messages = []
    for row, event in zip(rows, pending, strict=True):
        to = []
        for user_id in sorted(event.recipients):
            to.append([user_id, previous.get(user_id, 0)])
            previous[user_id] = row.seq
        message = {
            "type": "stream.event",
            "seq": row.seq,
            "prev": row.seq - 1,
            "event": row.type,
            "data": row.data,
            "to": to,
        }
        messages.append((STREAM_GROUP, message))
    return messages


PUBLISH_TIMEOUT_SECONDS = 5.0
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()


def publish(messages: list[tuple[str, dict]]) -> None:
    layer = stream_layer()
    if layer is None or not messages:
        return
    logs.stream_line(messages)  # with the request id of the commit that made them
    if isinstance(layer, InMemoryChannelLayer):
        # Its queues belong to the event loop of the consumers (the embedded server's);
        # async_to_sync from a request thread runs there.
        async_to_sync(_send_all)(layer, messages)
        return
    # A long-lived loop per process, so its Redis connection is reused: async_to_sync
    # would make a new loop and a new connection for every commit (~3 ms each). Waiting
    # for it keeps one thread's commits in order on the wire.
    future = asyncio.run_coroutine_threadsafe(_send_all(layer, messages), _publisher_loop())
    future.result(timeout=PUBLISH_TIMEOUT_SECONDS)


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _publisher
    with _publisher_lock:
        # Per process: a forked gunicorn or Celery worker does not inherit the thread.
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="stream-publish", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


async def _send_all(layer, messages: list[tuple[str, dict]]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)
