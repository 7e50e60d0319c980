"""Appointments and trips rendered straight from `values()` rows, for the hot paths.

`AppointmentSerializer` builds a model instance per row (and per trip), then walks
DRF fields over it: about 0.2 ms a row. These functions read only the columns the API
shows and render them with the same formats (DRF's ISO 8601 in the current time zone,
the price as a two-decimal string) and the same role shaping (`shaped_for`), at a
fraction of the cost. The serializers stay the documented shapes (the OpenAPI schema is
generated from them) and tests compare both renderings field by field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from django.db import connection
from django.db.models import Field, Model, QuerySet
from django.utils import timezone

from config.postgresql.base import prepared_cursor
from scheduling.models import Appointment, Client, Trip
from scheduling.realtime.events import shaped_for

# The columns behind AppointmentSerializer's fields (`trips` is read separately).
APPOINTMENT_COLUMNS = (
    "id",
    "client_id",
    "service_id",
    "therapist_id",
    "start",
    "end",
    "status",
    "address",
    "notes",
    "price",
    "payment_status",
    "needs_transport",
    "response_deadline",
    "travel_minutes",
    "area_id",
    "busy_from",
    "busy_until",
    "series_id",
    "visit_id",
)
TRIP_COLUMNS = (
    "id",
    "appointment_id",
    "leg",
    "window_start",
    "window_end",
    "status",
    "driver_id",
    "passengers",
    "visit_id",
)
# The order the trips of an appointment are shown in, everywhere.
TRIP_ORDER = ("window_start", "id")
CENTS = Decimal("0.01")


# ClientSerializer's fields: plain columns, rendered as they are read.
CLIENT_COLUMNS = ("id", "name", "phone", "email", "address", "area", "notes")


def iso(value: datetime | None, zone: tzinfo) -> str | None:
    """What DRF's DateTimeField writes: ISO 8601 in the current time zone, UTC as 'Z'.

    A page of 50 appointments with their trips writes some 450 times, mostly the same
    few dozen (15-minute steps), at about 5 us each: half of an uncached page's
    rendering. Times as the database gives them (in UTC, which has no folds, so equal
    values are the same instant) are remembered; any other is written afresh."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return _iso_utc(value, zone)
    return _iso(value, zone)


def _iso(value: datetime, zone: tzinfo) -> str:
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_iso_utc = lru_cache(maxsize=4096)(_iso)


def money(value: Decimal) -> str:
    """What DRF's DecimalField (2 places) writes: a fixed-point string."""
    return f"{value.quantize(CENTS):f}"


def appointment_rows(appointments: QuerySet[Appointment]) -> QuerySet:
    """The columns `render_appointments` needs, as dicts (keyset pagination reads
    `start` and `id` from them)."""
    return appointments.values(*APPOINTMENT_COLUMNS)


def trips_of(appointment_ids: Sequence[int]) -> dict[int, list[tuple]]:
    """Each appointment's trips as column tuples, in one query."""
    by_appointment: dict[int, list[tuple]] = defaultdict(list)
    if not appointment_ids:
        return by_appointment
    if connection.vendor == "postgresql":
        # Written out: the ORM took 0.5 ms to build this query for a page of 50 (each id
        # is prepared on its own), more than reading and rendering the trips.
        with prepared_cursor(connection) as cursor:
            cursor.execute(_trips_sql(), [list(appointment_ids)])
            rows = cursor.fetchall()
    else:
        rows = (
            Trip.objects.filter(appointment_id__in=appointment_ids)
            .order_by(*TRIP_ORDER)
            .values_list(*TRIP_COLUMNS)
        )
    for row in rows:
        by_appointment[row[1]].append(row)
    return by_appointment


def _column(model: type[Model], name: str) -> str:
    """The quoted column of `model`'s field `name`, for the statements written out here."""
    field = model._meta.get_field(name)
    # The names are this module's constants, all concrete fields: a relation's reverse
    # side or a field without a column here is a mistake in them, not in the data.
    assert isinstance(field, Field) and field.column is not None, f"{model.__name__}.{name}"
    return connection.ops.quote_name(field.column)


@cache
def _trips_sql() -> str:
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return _column(Trip, name.removesuffix("_id"))

    return (
        f"SELECT {', '.join(map(column, TRIP_COLUMNS))} FROM {quote(Trip._meta.db_table)} "
        f"WHERE {column('appointment')} = ANY(%s) ORDER BY {', '.join(map(column, TRIP_ORDER))}"
    )


def render_trip(row: tuple, zone: tzinfo) -> dict[str, Any]:
    trip_id, appointment_id, leg, window_start, window_end, status, driver_id, passengers, visit = (
        row
    )
    return {
        "id": trip_id,
        "appointment": appointment_id,
        "leg": leg,
        "window_start": iso(window_start, zone),
        "window_end": iso(window_end, zone),
        "status": status,
        "driver": driver_id,
        "passengers": passengers,
        "visit": visit,
    }


def render_appointments(rows: Iterable[dict], user) -> list[dict[str, Any]]:
    """`rows` (from `appointment_rows`) as AppointmentSerializer renders them for `user`,
    each with its trips (read in one query)."""
    rows = list(rows)
    trips = trips_of([row["id"] for row in rows])
    zone = timezone.get_current_timezone()
    return [shaped_for(user, _appointment(row, trips.get(row["id"], ()), zone)) for row in rows]


def render_appointment(appointment: Appointment, trips: Iterable[Trip], user) -> dict[str, Any]:
    """One appointment in memory (as a service returns it) and its trips, rendered like
    `render_appointments` renders rows, with no query."""
    row = {column: getattr(appointment, column) for column in APPOINTMENT_COLUMNS}
    # Choices set in memory are enum members; the database gives their plain values.
    row["status"], row["payment_status"] = str(row["status"]), str(row["payment_status"])
    trip_rows = [
        (
            t.pk,
            t.appointment_id,
            str(t.leg),
            t.window_start,
            t.window_end,
            str(t.status),
            t.driver_id,
            t.passengers,
            t.visit_id,
        )
        for t in trips
    ]
    return shaped_for(user, _appointment(row, trip_rows, timezone.get_current_timezone()))


def _appointment(row: dict, trips: Iterable[tuple], zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row["id"],
        "client": row["client_id"],
        "service": row["service_id"],
        "therapist": row["therapist_id"],
        "start": iso(row["start"], zone),
        "end": iso(row["end"], zone),
        "status": row["status"],
        "address": row["address"],
        "notes": row["notes"],
        "price": money(row["price"]),
        "payment_status": row["payment_status"],
        "needs_transport": row["needs_transport"],
        "response_deadline": iso(row["response_deadline"], zone),
        "travel_minutes": row["travel_minutes"],
        "area": row["area_id"],
        "busy_from": iso(row["busy_from"], zone),
        "busy_until": iso(row["busy_until"], zone),
        "series": row["series_id"],
        "visit": row["visit_id"],
        "trips": [render_trip(trip, zone) for trip in trips],
    }


def clients_in_order(client_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The clients `client_ids` names, in that order, as ClientSerializer renders them,
    in one query by primary key (the second half of a deferred join)."""
    if not client_ids:
        return []
    rows: Iterable[dict[str, Any]]
    if connection.vendor == "postgresql":
        # Written out, as trips_of's: building the ORM query cost more than running it.
        with prepared_cursor(connection) as cursor:
            cursor.execute(_clients_sql(), [list(client_ids)])
            rows = [dict(zip(CLIENT_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    else:
        rows = Client.objects.filter(pk__in=client_ids).values(*CLIENT_COLUMNS)
    found = {row["id"]: row for row in rows}
    return [found[pk] for pk in client_ids if pk in found]


@cache
def _clients_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(_column(Client, name) for name in CLIENT_COLUMNS)
    return (
        f"SELECT {columns} FROM {quote(Client._meta.db_table)} "
        f"WHERE {quote(Client._meta.pk.column)} = ANY(%s)"
    )


def failure(item) -> dict[str, Any]:
    """One occurrence that cannot be booked or moved (`errors.OccurrenceFailure`)."""
    body: dict[str, Any] = {
        "start": iso(item.start, timezone.get_current_timezone()),
        "reason": item.reason,
        "detail": item.message,
    }
    if item.appointment_id is not None:
        body["appointment"] = item.appointment_id
    return body


def render_series_booking(booking, user, *, skipped: bool) -> dict[str, Any]:
    """A repeat's 201 (`services.series.SeriesBooking`): its first occurrence, rendered as
    `render_appointment` does, with `series` as {id, appointments} and, when skipping was
    asked for, the dates `skipped`."""
    first = booking.appointments[0]
    trips = first.trips.order_by(*TRIP_ORDER) if first.needs_transport else []
    body = render_appointment(first, trips, user)
    body["series"] = {"id": booking.series.pk, "appointments": [a.pk for a in booking.appointments]}
    if skipped:
        body["skipped"] = [failure(f) for f in booking.skipped]
    return body
