"""The RAW BOOKING ceiling: every row a product booking writes, in hand-written SQL.

`create_appointment` (no transport) writes, in one transaction: the appointment, its
"create" transition-log row, one notification per audience of booking_created (client and
therapist), and one appointment.created stream event with its recipients, after moving the
event counter. It takes the therapist-timetable advisory lock first and the counter's row
lock last, and the exclusion constraint checks the appointment's busy range. `book` does
exactly that with every value worked out beforehand (`prepare`, once per process): what is
left is the database's own work, which no booking code can go below.

With transport (`prepare(..., transport=True)`, the `/bench/raw-booking-transport/`
ceiling) it also writes the two trips (drop-off and pick-up, queued) with their "create"
log rows and puts them in the event, after taking the drivers' capacity lock of every day
the legs touch (`capacity.lock_days`' lock, in the same order). Not in the ceiling: the
fleet arithmetic that decides whether the drivers can carry the legs. That is the product's
own decision work, which the ratio measures; the ceiling is the database's part.

Left out on purpose, because they are not rows: the on-commit Redis publish of the event
and the Celery message of each due notification (and, with transport, of the
dispatcher). tests/ops/test_bench_raw_booking.py proves the rows match
`create_appointment`'s, table by table, with and without transport, so the ceilings
cannot drift.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from scheduling import states
from scheduling.domain import Interval
from scheduling.models import Appointment, Client, Service, User
from scheduling.services import capacity
from scheduling.services.common import THERAPIST_TIMETABLE, minutes
from scheduling.services.notifications import outbox
from scheduling.services.travel import travel_for

KIND = outbox.BOOKING_CREATED


@dataclass(frozen=True)
class Message:
    """One notification row of the booking, all but its key's ids known beforehand."""

    channel: str
    audience: str
    to: str
    recipient: int
    client_id: int | None
    user_id: int | None
    body: str


@dataclass(frozen=True)
class Booking:
    client_id: int
    service_id: int
    therapist_id: int
    actor_id: int
    address: str
    price: str
    duration: timedelta
    buffer: timedelta
    response_window: timedelta
    travel: timedelta
    area_id: int | None
    messages: tuple[Message, ...]
    transport: bool = False


def prepare(
    *, client_id: int, service_id: int, therapist_id: int, actor_id: int, transport: bool = False
) -> Booking:
    """Read and render once what every booking of this client/service/therapist repeats.
    The bodies are rendered for a sample time: a real booking's differ only in the date."""
    client = Client.objects.get(pk=client_id)
    service = Service.objects.get(pk=service_id)
    therapist = User.objects.get(pk=therapist_id)
    travel = travel_for(client=client)
    sample = timezone.now().replace(microsecond=0)
    appointment = Appointment(
        client=client, service=service, therapist=therapist, start=sample,
        end=sample + service.duration, address=client.address, price=service.price,
    )  # fmt: skip
    context = {"appointment": appointment, "client": client, "therapist": therapist,
               "service": service, "trip": None, "driver": None}  # fmt: skip
    messages = []
    for audience in outbox.AUDIENCES[KIND]:
        is_client = audience == outbox.Audience.CLIENT
        # The product's own channel choice.
        address = outbox._address(client if is_client else therapist)
        if address is None:
            continue
        channel, to = address
        messages.append(
            Message(
                channel=channel,
                audience=audience,
                to=to,
                recipient=client.pk if is_client else therapist.pk,
                client_id=client.pk if is_client else None,
                user_id=None if is_client else therapist.pk,
                body=outbox.render(KIND, audience, context),
            )
        )
    return Booking(
        client_id=client.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        actor_id=actor_id,
        address=client.address,
        price=str(service.price),
        duration=service.duration,
        buffer=service.buffer,
        response_window=minutes("RESPONSE_WINDOW_MINUTES"),
        travel=travel.time,
        area_id=travel.area.pk if travel.area else None,
        messages=tuple(messages),
        transport=transport,
    )


# The appointment, its log row and its notifications in one statement; the ids the
# notification keys name come from the rows just inserted.
ROWS_SQL = """
WITH a AS (
    INSERT INTO scheduling_appointment
        (client_id, service_id, therapist_id, start, "end", blocked_until, travel_minutes,
         area_id, busy_from, busy_until, status, address, notes, needs_transport, price,
         payment_status, response_deadline, created_by_id, created_at, updated_at)
    VALUES (%(client)s, %(service)s, %(therapist)s, %(start)s, %(end)s, %(blocked)s,
            %(travel)s, %(area)s, %(busy_from)s, %(busy_until)s, 'pending', %(address)s,
            '', %(transport)s, %(price)s, 'unpaid', %(deadline)s, %(actor)s, %(now)s, %(now)s)
    RETURNING id
), t AS (
    INSERT INTO scheduling_transition
        (appointment_id, trip_id, action, from_status, to_status, actor_id, reason, at)
    SELECT a.id, NULL, 'create', %(new)s, 'pending', %(actor)s, '', %(now)s FROM a
    RETURNING id
), n AS (
    INSERT INTO scheduling_notification
        (key, kind, channel, audience, client_id, user_id, "to", appointment_id, trip_id,
         subject, body, status, attempts, last_error, send_after, enqueued_at, lease_until,
         provider_id, sent_at, created_at, updated_at)
    SELECT 'appointment' || a.id || ':' || %(kind)s || ':t' || t.id || ':' || m.channel
               || ':' || m.audience || m.recipient,
           %(kind)s, m.channel, m.audience, m.client_id, m.user_id, m."to", a.id, NULL,
           %(subject)s, m.body, 'pending', 0, '', %(now)s, %(now)s, NULL, '', NULL,
           %(now)s, %(now)s
    FROM a, t, jsonb_to_recordset(%(messages)s::jsonb) AS m(
        channel text, audience text, "to" text, recipient bigint, client_id bigint,
        user_id bigint, body text)
)
SELECT a.id FROM a
"""

# With transport: the two legs, queued, and their log rows (no actor: the platform's).
TRIPS_SQL = """
WITH tr AS (
    INSERT INTO scheduling_trip
        (appointment_id, leg, window_start, window_end, passengers, status, driver_id,
         assigned_at, driver_waiting_since, requested_at, created_at, updated_at)
    VALUES (%(appointment)s, 'dropoff', %(there_from)s, %(there_until)s, 1, 'queued', NULL,
            NULL, NULL, NULL, %(now)s, %(now)s),
           (%(appointment)s, 'pickup', %(back_from)s, %(back_until)s, 1, 'queued', NULL,
            NULL, NULL, NULL, %(now)s, %(now)s)
    RETURNING id, leg
), tt AS (
    INSERT INTO scheduling_transition
        (appointment_id, trip_id, action, from_status, to_status, actor_id, reason, at)
    SELECT NULL, tr.id, 'create', %(new)s, 'queued', NULL, '', %(now)s FROM tr
)
SELECT id, leg FROM tr ORDER BY id
"""

# The counter's row lock, held to the end: the product's own UPDATE, which also makes the
# row when a flushed table has none.
COUNTER_SQL = """
INSERT INTO scheduling_eventcounter (id, last_seq) VALUES (1, 1)
ON CONFLICT (id) DO UPDATE SET last_seq = scheduling_eventcounter.last_seq + 1
RETURNING last_seq
"""

EVENT_SQL = """
WITH e AS (
    INSERT INTO scheduling_streamevent (seq, type, data, appointment_id, trip_id, created_at)
    VALUES (%(seq)s, 'appointment.created', %(data)s::jsonb, %(appointment)s, NULL, %(now)s)
)
INSERT INTO scheduling_streameventrecipient (event_id, user_id) VALUES (%(seq)s, %(therapist)s)
"""


def book(booking: Booking, *, start: datetime, now: datetime | None = None) -> int:
    """Write one pending booking at `start` the way `create_appointment` would; return its
    id. PostgreSQL only (the locks and the exclusion constraint are the point)."""
    now = now or timezone.now()
    end = start + booking.duration
    blocked = end + booking.buffer
    deadline = min(now + booking.response_window, start)
    messages = [m.__dict__ for m in booking.messages]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [THERAPIST_TIMETABLE, booking.therapist_id]
        )
        cursor.execute(
            ROWS_SQL,
            {
                "client": booking.client_id, "service": booking.service_id,
                "therapist": booking.therapist_id, "actor": booking.actor_id,
                "start": start, "end": end, "blocked": blocked, "deadline": deadline,
                "address": booking.address, "price": booking.price, "now": now,
                "travel": int(booking.travel.total_seconds() // 60), "area": booking.area_id,
                "busy_from": start - booking.travel, "busy_until": blocked + booking.travel,
                "new": states.NEW, "kind": KIND, "subject": outbox.SUBJECTS[KIND],
                "messages": json.dumps(messages), "transport": booking.transport,
            },
        )  # fmt: skip
        (pk,) = cursor.fetchone()
        trips = _trips(cursor, booking, pk, start=start, end=end, blocked=blocked, now=now)
        cursor.execute(COUNTER_SQL)
        (seq,) = cursor.fetchone()
        data = {
            "id": pk, "client": booking.client_id, "service": booking.service_id,
            "therapist": booking.therapist_id, "start": start.isoformat(),
            "end": end.isoformat(), "status": "pending", "address": booking.address,
            "notes": "", "response_deadline": deadline.isoformat(), "series": None, "visit": None,
            "trips": trips,
        }  # fmt: skip
        cursor.execute(
            EVENT_SQL,
            {"seq": seq, "data": json.dumps(data), "appointment": pk, "now": now,
             "therapist": booking.therapist_id},
        )  # fmt: skip
    return pk


def _trips(
    cursor, booking: Booking, pk: int, *, start: datetime, end: datetime, blocked: datetime,
    now: datetime,
) -> list[dict]:  # fmt: skip
    """With transport: the capacity lock of the legs' days, then the two trips; their
    shapes as the event carries them."""
    if not booking.transport:
        return []
    there = Interval(start - booking.travel, start)
    back = Interval(blocked, blocked + booking.travel)
    for day in sorted({*capacity.days_of(there), *capacity.days_of(back)}):
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [capacity.DRIVER_CAPACITY, day.toordinal()]
        )
    cursor.execute(
        TRIPS_SQL,
        {"appointment": pk, "there_from": there.start, "there_until": there.end,
         "back_from": back.start, "back_until": back.end, "now": now, "new": states.NEW},
    )  # fmt: skip
    windows = {"dropoff": there, "pickup": back}
    return [
        {"id": trip_id, "appointment": pk, "leg": leg,
         "window_start": windows[leg].start.isoformat(),
         "window_end": windows[leg].end.isoformat(), "status": "queued", "driver": None,
         "passengers": 1, "visit": None, "address": booking.address,
         "start": start.isoformat(), "end": end.isoformat()}
        for trip_id, leg in cursor.fetchall()
    ]  # fmt: skip


# --- the view -------------------------------------------------------------------------------

# Far past any real booking and the insert ceiling's rows (2099): one per therapist after
# another from 2098 (2097 with transport, so the two ceilings never meet either), so they
# never meet; the bench deletes them with its load user's.
RAW_EPOCH = datetime(2098, 1, 1, tzinfo=UTC)
RAW_TRANSPORT_EPOCH = datetime(2097, 1, 1, tzinfo=UTC)
RAW_YEARS = (RAW_TRANSPORT_EPOCH.year, RAW_EPOCH.year)
_PREPARED: dict[bool, list[Booking]] = {}


def _prepared(transport: bool) -> list[Booking]:
    if transport not in _PREPARED:
        therapists = [int(t) for t in os.environ["BENCH_INSERT_THERAPISTS"].split(",")]
        _PREPARED[transport] = [
            prepare(
                client_id=int(os.environ["BENCH_INSERT_CLIENT"]),
                service_id=int(os.environ["BENCH_INSERT_SERVICE"]),
                therapist_id=therapist,
                actor_id=int(os.environ["BENCH_INSERT_USER"]),
                transport=transport,
            )
            for therapist in therapists
        ]
    return _PREPARED[transport]


def _book_next(request: HttpRequest, *, transport: bool) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    bookings = _prepared(transport)
    sequence = "bench_raw_booking_transport_seq" if transport else "bench_raw_booking_seq"
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [sequence])
        (n,) = cursor.fetchone()
    booking = bookings[n % len(bookings)]
    # Each therapist's next slot starts where the last one's busy range (travel both ways
    # included) ends, rounded up to the hour: never an overlap.
    span = booking.duration + booking.buffer + 2 * booking.travel
    step = timedelta(hours=-(-span // timedelta(hours=1)))
    epoch = RAW_TRANSPORT_EPOCH if transport else RAW_EPOCH
    start = epoch + booking.travel + (n // len(bookings)) * step
    pk = book(booking, start=start)
    return HttpResponse(b'{"id": %d}' % pk, content_type="application/json", status=201)


@csrf_exempt
def raw_booking(request: HttpRequest) -> HttpResponse:
    return _book_next(request, transport=False)


@csrf_exempt
def raw_booking_transport(request: HttpRequest) -> HttpResponse:
    return _book_next(request, transport=True)
