"""What capacity reads of the drivers' day: every active driver's vehicle, and every open
trip meeting a span of time (`fleet_rows`). `services.capacity.load_fleet` turns the rows
into a `Fleet`; booking, availability and the dispatcher all read through it.

On PostgreSQL one hand-written statement (`_fleet_rows_postgres`); elsewhere its ORM
twin (`_fleet_rows_orm`), held to the same rows by tests/services/test_capacity_speed.py.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connection

from scheduling import states
from scheduling.models import DriverProfile, Trip, TripStatus, User


def fleet_rows(
    start: datetime, end: datetime, excluding_appointment: int | None = None
) -> tuple[list[ProfileRow], list[TripRow]]:
    """The active drivers by user id, and the open trips meeting [start, end) but those of
    `excluding_appointment` (an appointment being moved)."""
    read = _fleet_rows_postgres if connection.vendor == "postgresql" else _fleet_rows_orm
    return read(start, end, excluding_appointment)


# What `load_fleet` reads: each active driver's (user id, seats, vehicle) by user id, and
# each open trip meeting the span, (id, driver id, status, window start, window end,
# passengers), in no particular order.
ProfileRow = tuple[int, int, str]
TripRow = tuple[int, int | None, str, datetime, datetime, int]


def _fleet_rows_orm(
    start: datetime, end: datetime, excluding_appointment: int | None
) -> tuple[list[ProfileRow], list[TripRow]]:
    """The drivers and the open trips meeting [start, end): two queries."""
    profiles = list(
        DriverProfile.objects.filter(user__is_active=True, user__role=states.DRIVER)
        .order_by("user_id")
        .values_list("user_id", "seats", "vehicle")
    )
    trips = Trip.objects.open().overlapping(start, end).order_by()
    if excluding_appointment is not None:
        trips = trips.exclude(appointment_id=excluding_appointment)
    rows = trips.values_list(
        "pk", "driver_id", "status", "window_start", "window_end", "passengers"
    )
    return profiles, list(rows)


def _fleet_rows_postgres(
    start: datetime, end: datetime, excluding_appointment: int | None
) -> tuple[list[ProfileRow], list[TripRow]]:
    """`_fleet_rows_orm` in one hand-written statement: availability with transport and
    every booking with transport read it, and the ORM cost about three times the CPU of
    this to build and read its two queries (tests/services/test_capacity_speed.py holds
    the two to the same rows)."""
    profiles: list[ProfileRow] = []
    trips: list[TripRow] = []
    with connection.cursor() as cursor:
        cursor.execute(
            _fleet_sql(),
            [
                states.DRIVER,
                TripStatus.QUEUED,
                *(end, start, excluding_appointment, excluding_appointment),
                *states.BUSY_TRIP_STATUSES,
                *(end, start, excluding_appointment, excluding_appointment),
            ],
        )
        for kind, key, number, text, driver_id, w_start, w_end in cursor.fetchall():
            if kind == 0:
                profiles.append((key, number, text))
            else:
                trips.append((key, driver_id, text, w_start, w_end, number))
    profiles.sort()
    return profiles, trips


@cache
def _fleet_sql() -> str:
    """The drivers, then the open trips in two parts, so that each reads its own partial
    index: queued trips `trip_queued_idx`, trips held by a driver (who always has one:
    `trip_busy_has_driver`) the driver exclusion constraint's; one scan of every trip
    ever made cost PostgreSQL eight times the CPU on the bench's day."""
    quote = connection.ops.quote_name
    profile, user, trip = (quote(m._meta.db_table) for m in (DriverProfile, User, Trip))
    trips = (
        "SELECT 1, t.id, t.passengers, t.status::text, t.driver_id, t.window_start, "
        f"t.window_end FROM {trip} t WHERE {{}} AND t.window_start < %s "
        "AND t.window_end > %s AND (%s::integer IS NULL OR t.appointment_id <> %s)"
    )
    busy = ", ".join(["%s"] * len(states.BUSY_TRIP_STATUSES))
    return (
        "SELECT 0, p.user_id, p.seats, p.vehicle::text, NULL::integer, NULL::timestamptz, "
        f"NULL::timestamptz FROM {profile} p JOIN {user} u ON u.id = p.user_id "
        "WHERE u.is_active AND u.role = %s UNION ALL "
        + trips.format("t.status = %s")
        + " UNION ALL "
        + trips.format(f"t.status IN ({busy}) AND t.driver_id IS NOT NULL")
    )
