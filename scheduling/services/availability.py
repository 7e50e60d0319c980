"""Free start times, built from the same rule booking enforces (`domain.bookable`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

from django.db import connection
from django.utils import timezone

from scheduling.domain import DaySchedule, Interval, free_starts, local_day_bounds
from scheduling.models import Appointment, Break, Service, TimeOff, User, WorkingHours
from scheduling.services.common import latest_bookable, minutes


def day_schedules(therapist_ids: list[int], day: date) -> dict[int, DaySchedule]:
    """Each therapist's working time on `day`: one query whatever the count (three on a
    database other than PostgreSQL)."""
    weekday = day.weekday()
    day_start, day_end = local_day_bounds(day)
    read = _working_time_postgres if connection.vendor == "postgresql" else _working_time_orm
    hours, breaks, time_off = read(therapist_ids, weekday, day_start, day_end)
    return {
        tid: DaySchedule.build(
            day,
            hours=hours.get(tid, ()),
            breaks=breaks.get(tid, ()),
            time_off=[Interval(start, end) for start, end in time_off.get(tid, ())],
        )
        for tid in therapist_ids
    }


# Each staff member's periods: weekly hours and breaks as (time, time), time off as
# (datetime, datetime) meeting the day.
Periods = dict[int, list[tuple]]


def _working_time_orm(
    staff_ids: list[int], weekday: int, day_start: datetime, day_end: datetime
) -> tuple[Periods, Periods, Periods]:
    """Hours, breaks and time off of `staff_ids` for a day: a query each."""
    found: tuple[Periods, Periods, Periods] = (
        defaultdict(list),
        defaultdict(list),
        defaultdict(list),
    )
    weekly = {"staff_id__in": staff_ids, "weekday": weekday}
    queries = (
        WorkingHours.objects.filter(**weekly),
        Break.objects.filter(**weekly),
        TimeOff.objects.filter(staff_id__in=staff_ids, start__lt=day_end, end__gt=day_start),
    )
    for periods, query in zip(found, queries, strict=True):
        for staff_id, start, end in query.order_by().values_list("staff_id", "start", "end"):
            periods[staff_id].append((start, end))
    return found


def _working_time_postgres(
    staff_ids: list[int], weekday: int, day_start: datetime, day_end: datetime
) -> tuple[Periods, Periods, Periods]:
    """`_working_time_orm` in one hand-written statement: every booking and availability
    page reads these, and the ORM cost three times more CPU to build its three queries
    than PostgreSQL took to answer them."""
    found: tuple[Periods, Periods, Periods] = (
        defaultdict(list),
        defaultdict(list),
        defaultdict(list),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _working_time_sql(), [staff_ids, weekday] * 2 + [staff_ids, day_end, day_start]
        )
        for kind, staff_id, start, end, off_start, off_end in cursor.fetchall():
            if kind == 2:
                found[2][staff_id].append((off_start, off_end))
            else:
                found[kind][staff_id].append((start, end))
    return found


@cache
def _working_time_sql() -> str:
    quote = connection.ops.quote_name
    hours, breaks, time_off = (quote(m._meta.db_table) for m in (WorkingHours, Break, TimeOff))
    weekly = 'staff_id, start, "end", NULL::timestamptz, NULL::timestamptz FROM {} ' + (
        "WHERE staff_id = ANY(%s) AND weekday = %s"
    )
    return (
        f"SELECT 0, {weekly.format(hours)} UNION ALL SELECT 1, {weekly.format(breaks)} "
        'UNION ALL SELECT 2, staff_id, NULL::time, NULL::time, start, "end" '
        f'FROM {time_off} WHERE staff_id = ANY(%s) AND start < %s AND "end" > %s'
    )


def busy_intervals(
    therapist_ids: list[int], start: datetime, end: datetime, *, exclude: int | None = None
) -> dict[int, list[Interval]]:
    """Time each therapist already holds (buffers included) that meets [start, end)."""
    rows = (
        Appointment.objects.active().overlapping(start, end).filter(therapist_id__in=therapist_ids)
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    busy: dict[int, list[Interval]] = defaultdict(list)
    for therapist_id, a_start, a_blocked in rows.values_list(
        "therapist_id", "start", "blocked_until"
    ):
        busy[therapist_id].append(Interval(a_start, a_blocked))
    return busy


@dataclass(frozen=True)
class TherapistAvailability:
    therapist: User
    starts: list[datetime]


def availability(
    *,
    service: Service,
    day: date,
    therapist_id: int | None = None,
    now: datetime | None = None,
    moving: int | None = None,
) -> list[TherapistAvailability]:
    """Free start times for `service` on `day` for every therapist who performs it.

    `moving` is an appointment being rescheduled: the time it holds now is free for it
    (rescheduling releases it), as the reschedule service's own check treats it."""
    therapists = list(
        User.objects.filter(
            role="therapist", is_active=True, therapist_profile__services=service
        ).order_by("first_name", "last_name", "id")
    )
    if therapist_id is not None:
        therapists = [t for t in therapists if t.pk == therapist_id]
    if not therapists or not service.active:
        return [TherapistAvailability(t, []) for t in therapists]
    ids = [t.pk for t in therapists]
    day_start, day_end = local_day_bounds(day)
    schedules = day_schedules(ids, day)
    # A session starting late on `day` may run, with its buffer, past midnight.
    busy = busy_intervals(ids, day_start, day_end + timedelta(days=1), exclude=moving)
    now = now or timezone.now()
    latest = latest_bookable(now)
    return [
        TherapistAvailability(
            therapist,
            [
                s
                for s in free_starts(
                    day,
                    duration=service.duration,
                    buffer=service.buffer,
                    step=minutes("SLOT_STEP_MINUTES"),
                    schedule=schedules[therapist.pk],
                    busy=busy[therapist.pk],
                    not_before=now,
                )
                if s <= latest
            ],
        )
        for therapist in therapists
    ]
