"""Each staff member's working time on a day (weekly hours, breaks, time off), read for
many at once: therapists for booking and availability, drivers for capacity."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time
from functools import cache

from django.db import connection

from config.postgresql.base import prepared_cursor
from scheduling.domain import (
    DaySchedule,
    Interval,
    at_wall_time,
    business_zone,
    local_day_bounds,
    merge,
)
from scheduling.models import Break, TimeOff, WorkingHours


def day_schedules(therapist_ids: list[int], day: date) -> dict[int, DaySchedule]:
    """Each therapist's working time on `day`: one query whatever the count (three on a
    database other than PostgreSQL).

    What `DaySchedule.build` makes of each, with each wall time read in the zone once for
    all of them (twenty therapists' hours and breaks are mostly the same few o'clocks)."""
    weekday = day.weekday()
    day_start, day_end = local_day_bounds(day)
    read = _working_time_postgres if connection.vendor == "postgresql" else _working_time_orm
    hours, breaks, time_off = read(therapist_ids, weekday, day_start, day_end)
    zone = business_zone()
    instants: dict[time, datetime] = {}

    def at(wall: time) -> datetime:
        instant = instants.get(wall)
        if instant is None:
            instant = instants[wall] = at_wall_time(day, wall, zone)
        return instant

    def intervals(periods: list[tuple[time, time]]) -> list[Interval]:
        # domain.wall_intervals, merged as DaySchedule.build merges it.
        return merge(i for i in (Interval(at(a), at(b)) for a, b in periods) if i.end > i.start)

    return {
        tid: DaySchedule(
            hours=intervals(hours.get(tid, [])),
            breaks=intervals(breaks.get(tid, [])),
            time_off=merge(Interval(start, end) for start, end in time_off.get(tid, ())),
        )
        for tid in therapist_ids
    }


# Each staff member's periods: weekly hours and breaks as (time, time), time off as
# (datetime, datetime) meeting the day.
Clock = dict[int, list[tuple[time, time]]]
Dated = dict[int, list[tuple[datetime, datetime]]]


def _working_time_orm(
    staff_ids: list[int], weekday: int, day_start: datetime, day_end: datetime
) -> tuple[Clock, Clock, Dated]:
    """Hours, breaks and time off of `staff_ids` for a day: a query each."""
    hours: Clock = defaultdict(list)
    breaks: Clock = defaultdict(list)
    time_off: Dated = defaultdict(list)
    weekly = {"staff_id__in": staff_ids, "weekday": weekday}
    for periods, model in ((hours, WorkingHours), (breaks, Break)):
        rows = model.objects.filter(**weekly).order_by()
        for staff_id, start, end in rows.values_list("staff_id", "start", "end"):
            periods[staff_id].append((start, end))
    meeting = TimeOff.objects.filter(staff_id__in=staff_ids, start__lt=day_end, end__gt=day_start)
    for staff_id, off_start, off_end in meeting.order_by().values_list("staff_id", "start", "end"):
        time_off[staff_id].append((off_start, off_end))
    return hours, breaks, time_off


def _working_time_postgres(
    staff_ids: list[int], weekday: int, day_start: datetime, day_end: datetime
) -> tuple[Clock, Clock, Dated]:
    """`_working_time_orm` in one hand-written statement: every booking and availability
    page reads these, and the ORM cost three times more CPU to build its three queries
    than PostgreSQL took to answer them."""
    hours: Clock = defaultdict(list)
    breaks: Clock = defaultdict(list)
    time_off: Dated = defaultdict(list)
    with prepared_cursor(connection) as cursor:
        cursor.execute(
            _working_time_sql(),
            [staff_ids, weekday, staff_ids, weekday, staff_ids, day_end, day_start],
        )
        for kind, staff_id, start, end, off_start, off_end in cursor.fetchall():
            if kind == 2:
                time_off[staff_id].append((off_start, off_end))
            else:
                (breaks if kind else hours)[staff_id].append((start, end))
    return hours, breaks, time_off


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
