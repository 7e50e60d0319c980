"""Free start times, built from the same rule booking enforces (`domain.bookable`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection
from django.utils import timezone

from config.postgresql.base import prepared_cursor
from scheduling.domain import Interval, free_starts, local_day_bounds
from scheduling.models import Appointment, Service, User
from scheduling.services import capacity
from scheduling.services.common import latest_bookable, minutes
from scheduling.services.working_time import day_schedules
from scheduling.states import ACTIVE_APPOINTMENT_STATUSES

__all__ = ["TherapistAvailability", "availability", "busy_intervals", "day_schedules"]


def busy_intervals(
    therapist_ids: list[int], start: datetime, end: datetime, *, exclude: int | None = None
) -> dict[int, list[Interval]]:
    """Busy ranges (travel and buffers included) each therapist holds that meet
    [start, end)."""
    read = _busy_postgres if connection.vendor == "postgresql" else _busy_orm
    busy: dict[int, list[Interval]] = defaultdict(list)
    for therapist_id, held_from, held_until in read(therapist_ids, start, end, exclude):
        busy[therapist_id].append(Interval(held_from, held_until))
    return busy


Held = list[tuple[int, datetime, datetime]]


def _busy_orm(
    therapist_ids: list[int], start: datetime, end: datetime, exclude: int | None
) -> Held:
    rows = (
        Appointment.objects.active().overlapping(start, end).filter(therapist_id__in=therapist_ids)
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    return list(rows.order_by().values_list("therapist_id", "busy_from", "busy_until"))


def _busy_postgres(
    therapist_ids: list[int], start: datetime, end: datetime, exclude: int | None
) -> Held:
    """`_busy_orm` as one hand-written statement: behind every availability page, where
    the ORM took longer to build the query than PostgreSQL to answer it. The same
    predicate (`status IN (...)` as the ORM writes it, so the partial index
    appt_therapist_busy_idx still applies; tests/services/test_availability.py holds the
    two equal)."""
    statuses = [str(s) for s in ACTIVE_APPOINTMENT_STATUSES]
    params: list[Any] = [*statuses, end, start, therapist_ids]
    if exclude is not None:
        params.append(exclude)
    with prepared_cursor(connection) as cursor:
        cursor.execute(_busy_sql(exclude is not None), params)
        rows: Held = cursor.fetchall()
    return rows


@cache
def _busy_sql(excluding: bool) -> str:
    quote = connection.ops.quote_name
    marks = ", ".join(["%s"] * len(ACTIVE_APPOINTMENT_STATUSES))
    sql = (
        f"SELECT therapist_id, busy_from, busy_until FROM {quote(Appointment._meta.db_table)} "
        f"WHERE status IN ({marks}) AND busy_from < %s AND busy_until > %s "
        "AND therapist_id = ANY(%s)"
    )
    return sql + " AND id <> %s" if excluding else sql


@dataclass(frozen=True)
class TherapistAvailability:
    therapist: User
    # Starts that book.
    starts: list[datetime]
    # With transport: starts the therapist could make but no driver could carry.
    no_driver: list[datetime] = field(default_factory=list)


def availability(
    *,
    service: Service,
    day: date,
    therapist_id: int | None = None,
    now: datetime | None = None,
    moving: int | None = None,
    travel: timedelta | None = None,
    needs_transport: bool = False,
) -> list[TherapistAvailability]:
    """Free start times for `service` on `day` for every therapist who performs it.

    A start is offered when the therapist's whole busy range (leaving base `travel`
    before it, back `travel` after the session and its buffer) lies in their working
    time, meets nothing they hold and begins from `now` on; with `needs_transport`, also
    when the drivers can carry both legs beside every trip already booked (starts the
    therapist could make but no driver could carry are listed apart). The rule booking
    enforces, read for a whole day at once. `travel` defaults to the travel allowance.

    `moving` is an appointment being rescheduled: the time it holds now is free for it
    (rescheduling releases it), as the reschedule service's own check treats it."""
    therapists = list(
        User.objects.therapists(performing=service).order_by("first_name", "last_name", "id")
    )
    if therapist_id is not None:
        therapists = [t for t in therapists if t.pk == therapist_id]
    if not therapists or not service.active:
        return [TherapistAvailability(t, []) for t in therapists]
    if travel is None:
        travel = minutes("TRAVEL_ALLOWANCE_MINUTES")
    ids = [t.pk for t in therapists]
    day_start, day_end = local_day_bounds(day)
    schedules = day_schedules(ids, day)
    # A busy range may begin the evening before `day` and run, late on it, past midnight.
    busy = busy_intervals(ids, day_start - travel, day_end + timedelta(days=1), exclude=moving)
    now = now or timezone.now()
    latest = latest_bookable(now)
    free = {
        therapist.pk: [
            s
            for s in free_starts(
                day,
                duration=service.duration,
                buffer=service.buffer,
                step=minutes("SLOT_STEP_MINUTES"),
                schedule=schedules[therapist.pk],
                busy=busy[therapist.pk],
                not_before=now + travel,
                travel=travel,
            )
            if s <= latest
        ]
        for therapist in therapists
    }
    carried = (
        capacity.carried_starts(
            sorted({s for starts in free.values() for s in starts}),
            duration=service.duration,
            buffer=service.buffer,
            travel=travel,
            now=now,
            excluding_appointment=moving,
        )
        if needs_transport
        else None
    )
    return [
        TherapistAvailability(
            therapist,
            [s for s in free[therapist.pk] if carried is None or s in carried],
            [s for s in free[therapist.pk] if carried is not None and s not in carried],
        )
        for therapist in therapists
    ]
