"""Pure time arithmetic: working time, overlaps, buffers, slots, daylight saving.

No ORM here. Every interval is half-open [start, end) and made of aware datetimes.
Wall-clock times (working hours, breaks) are read in the business time zone of the day
they fall on, so a day of 23 or 25 hours is handled by the zone, not by us.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end


def business_zone() -> ZoneInfo:
    return timezone.get_default_timezone()


def at_wall_time(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The instant `wall` o'clock on `day` in `zone`, in UTC.

    A wall time skipped by a spring-forward transition is read with the offset in force
    before it (fold=0), which lands just after the gap; a repeated one at its first
    occurrence.
    """
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def local_day_bounds(day: date, zone: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    """Local midnight of `day` and of the day after, as UTC instants."""
    zone = zone or business_zone()
    return at_wall_time(day, time.min, zone), at_wall_time(day + timedelta(days=1), time.min, zone)


def local_date(instant: datetime, zone: ZoneInfo | None = None) -> date:
    return instant.astimezone(zone or business_zone()).date()


def wall_intervals(
    day: date, periods: Iterable[tuple[time, time]], zone: ZoneInfo
) -> list[Interval]:
    intervals = [
        Interval(at_wall_time(day, a, zone), at_wall_time(day, b, zone)) for a, b in periods
    ]
    return [i for i in intervals if i.end > i.start]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for current in sorted(intervals):
        if merged and current.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interval(last.start, max(last.end, current.end))
        else:
            merged.append(current)
    return merged


def subtract(intervals: Iterable[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """`intervals` with every part covered by `holes` removed."""
    result = merge(intervals)
    for hole in merge(holes):
        remaining: list[Interval] = []
        for piece in result:
            if not piece.overlaps(hole):
                remaining.append(piece)
                continue
            if piece.start < hole.start:
                remaining.append(Interval(piece.start, hole.start))
            if hole.end < piece.end:
                remaining.append(Interval(hole.end, piece.end))
        result = remaining
    return result


@dataclass(frozen=True)
class DaySchedule:
    """One staff member's day: when they work, and what is taken out of it."""

    hours: list[Interval]
    breaks: list[Interval]
    time_off: list[Interval]

    @classmethod
    def build(
        cls,
        day: date,
        *,
        hours: Iterable[tuple[time, time]],
        breaks: Iterable[tuple[time, time]] = (),
        time_off: Iterable[Interval] = (),
        zone: ZoneInfo | None = None,
    ) -> DaySchedule:
        zone = zone or business_zone()
        return cls(
            hours=merge(wall_intervals(day, hours, zone)),
            breaks=merge(wall_intervals(day, breaks, zone)),
            time_off=merge(time_off),
        )

    @property
    def working(self) -> list[Interval]:
        return subtract(self.hours, [*self.breaks, *self.time_off])

    def why_not_working(self, session: Interval) -> str | None:
        """None if the whole session lies in working time, else the reason, in words."""
        if not any(h.contains(session) for h in self.hours):
            return "outside working hours"
        for b in self.breaks:
            if b.overlaps(session):
                return "during a break"
        for off in self.time_off:
            if off.overlaps(session):
                return "during time off"
        return None


def candidate_starts(
    day: date, step: timedelta, zone: ZoneInfo | None = None
) -> Iterator[datetime]:
    """Every `step` from local midnight to the next, in real elapsed time.

    Stepping in UTC means a 23-hour day offers fewer starts and a 25-hour day more, and
    never a wall time that does not exist.
    """
    start, end = local_day_bounds(day, zone)
    current = start
    while current < end:
        yield current
        current += step


def is_on_step(instant: datetime, step: timedelta, zone: ZoneInfo | None = None) -> bool:
    midnight, _ = local_day_bounds(local_date(instant, zone), zone)
    return (instant - midnight) % step == timedelta(0)


def clashes(blocked: Interval, busy: Iterable[Interval]) -> list[Interval]:
    return [b for b in busy if b.overlaps(blocked)]


def busy_range(
    start: datetime, *, duration: timedelta, buffer: timedelta, travel: timedelta
) -> Interval:
    """What a booking takes of the therapist's day: from leaving base (`travel` before the
    session) to being back (the session, its buffer, and `travel` home)."""
    return Interval(start - travel, start + duration + buffer + travel)


def bookable(
    start: datetime,
    *,
    duration: timedelta,
    buffer: timedelta,
    schedule: DaySchedule,
    busy: Iterable[Interval],
    travel: timedelta = timedelta(0),
) -> bool:
    """The one rule both availability and booking use: the whole busy range (travel there,
    the session, its buffer, travel back) lies in working time and meets nothing the
    therapist already holds."""
    held = busy_range(start, duration=duration, buffer=buffer, travel=travel)
    return schedule.why_not_working(held) is None and not clashes(held, busy)


def free_starts(
    day: date,
    *,
    duration: timedelta,
    buffer: timedelta,
    step: timedelta,
    schedule: DaySchedule,
    busy: list[Interval],
    not_before: datetime,
    travel: timedelta = timedelta(0),
    zone: ZoneInfo | None = None,
) -> list[datetime]:
    """The `candidate_starts` from `not_before` on that `bookable` accepts, in order.

    The same rule as `bookable`, in one pass instead of one test per candidate: a busy
    range lies in working time when it fits inside one piece of `schedule.working`, and it
    meets nothing held when its start is outside every open span (held.start - duration -
    buffer - travel, held.end + travel). So only the candidates inside the pieces are
    visited, and the held spans, sorted and merged, are swept once. tests/domain/test_domain.py
    checks it against `bookable` and a minute-by-minute oracle.
    """
    first, last = local_day_bounds(day, zone)
    after = duration + buffer + travel
    blocked = _blocked_starts(busy, before=after, after=travel)
    starts: list[datetime] = []
    b = 0
    for piece in schedule.working:
        latest = piece.end - after
        start = _next_candidate(max(piece.start + travel, not_before), first, step)
        while start <= latest and start < last:
            while b < len(blocked) and blocked[b][1] <= start:
                b += 1
            if b < len(blocked) and blocked[b][0] < start:
                start = _next_candidate(blocked[b][1], first, step)
                continue
            starts.append(start)
            start += step
    return starts


def _next_candidate(instant: datetime, first: datetime, step: timedelta) -> datetime:
    """The first of `first`, `first + step`, ... that is not before `instant`."""
    if instant <= first:
        return first
    return first + -((first - instant) // step) * step


def _blocked_starts(
    busy: Iterable[Interval], *, before: timedelta, after: timedelta
) -> list[tuple[datetime, datetime]]:
    """The starts whose busy range (`after` before the start to `before` after it) would
    meet a held interval, as disjoint open spans (low, high) in order: a start equal to
    either end is free."""
    spans = sorted((held.start - before, held.end + after) for held in busy)
    merged: list[tuple[datetime, datetime]] = []
    for low, high in spans:
        if low >= high:  # empty: meets no start
            continue
        if merged and low < merged[-1][1]:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged
