"""The day board's geometry: the time axis, a row's blocked time, and where each booking
sits (its lane, its session, its clean-up and the travel either side).

Pure: times in, positions (percentages of the board's span) and their words out. No
request and no ORM: a booking is anything with the five times of `Timed` (an
`Appointment` has them), so the geometry is tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol, TypeVar

from django.utils import timezone

from scheduling.domain import (
    DaySchedule,
    Interval,
    at_wall_time,
    business_zone,
    local_day_bounds,
    subtract,
)
from scheduling.formats import clock

# The board's span on a day nobody works.
QUIET_DAY = (time(8), time(20))


class Timed(Protocol):
    """What the board draws of a booking: the session, its clean-up and the therapist's
    time away (travel included). `pk` breaks ties, so the layout is the same every time."""

    @property
    def pk(self) -> Any: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def blocked_until(self) -> datetime: ...
    @property
    def busy_from(self) -> datetime: ...
    @property
    def busy_until(self) -> datetime: ...


T = TypeVar("T", bound=Timed)


@dataclass(frozen=True)
class Span:
    """The board's time axis: positions are percentages of it."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def at(self, instant: datetime) -> float:
        offset = (instant - self.start).total_seconds() / self.seconds * 100
        return min(100.0, max(0.0, offset))

    def place(self, start: datetime, end: datetime) -> tuple[str, str]:
        left = self.at(start)
        return f"{left:.3f}", f"{max(self.at(end) - left, 0.0):.3f}"


@dataclass
class Segment:
    kind: str  # off, break, time-off
    label: str  # with its times, for screen readers and the tooltip
    short: str  # drawn in the segment
    left: str
    width: str


@dataclass(frozen=True)
class Piece:
    """A stretch of a block's lane: where it is drawn, and its times in words."""

    left: str
    width: str
    text: str


@dataclass(frozen=True)
class Placement:
    """Where one booking is drawn: the session, the clean-up after it (the service's
    buffer), its lane, and the therapist's travel out and back (None when the booking
    counts no travel: booked before travel was)."""

    left: str
    width: str
    tail_left: str
    tail: str
    lane: int
    travel_out: Piece | None = None
    travel_back: Piece | None = None


def board_span(day: date, hours: Iterable[Interval], booked: Iterable[Timed]) -> Span:
    """From the earliest working hour to the latest of the day (whole hours), widened to
    any booking's time away outside them."""
    day_start, day_end = local_day_bounds(day)
    hours, booked = list(hours), list(booked)
    starts = [h.start for h in hours] + [a.busy_from for a in booked]
    ends = [h.end for h in hours] + [a.busy_until for a in booked]
    if not starts:
        zone = business_zone()
        return Span(at_wall_time(day, QUIET_DAY[0], zone), at_wall_time(day, QUIET_DAY[1], zone))
    first = timezone.localtime(min(starts)).replace(minute=0, second=0, microsecond=0)
    last = timezone.localtime(max(ends))
    rounded = last.replace(minute=0, second=0, microsecond=0)
    if rounded < last:
        rounded += timedelta(hours=1)
    start, end = max(first, day_start), min(rounded, day_end)
    if end <= start:
        end = start + timedelta(hours=1)
    return Span(start, end)


def hour_ticks(span: Span) -> list[tuple[str, str]]:
    ticks, current = [], span.start
    while current < span.end:
        ticks.append((clock(current), f"{span.at(current):.3f}"))
        current += timedelta(hours=1)
    return ticks


def hours_text(schedule: DaySchedule) -> str:
    if not schedule.hours:
        return "Not working"
    if not schedule.working:
        return "Time off"
    return ", ".join(f"{clock(h.start)}–{clock(h.end)}" for h in schedule.hours)


def segments_of(schedule: DaySchedule, span: Span) -> list[Segment]:
    """The row's blocked time: outside working hours, breaks, time off."""
    whole = Interval(span.start, span.end)
    pieces = [
        *(("off", "Outside working hours", i) for i in subtract([whole], schedule.hours)),
        *(("break", "Break", i) for i in schedule.breaks),
        *(("time-off", "Time off", i) for i in schedule.time_off),
    ]
    segments = []
    for kind, label, interval in pieces:
        if not interval.overlaps(whole):
            continue
        left, width = span.place(interval.start, interval.end)
        text = f"{label} {clock(max(interval.start, span.start))}–"
        text += clock(min(interval.end, span.end))
        segments.append(Segment(kind, text, label, left, width))
    return segments


def travel_piece(start: datetime, end: datetime, span: Span) -> Piece | None:
    if end <= start:
        return None
    left, width = span.place(start, end)
    return Piece(left, width, f"Travel {clock(start)}–{clock(end)}")


def placements(booked: Sequence[T], span: Span) -> list[tuple[T, Placement]]:
    """The bookings in lanes, in the order drawn: two whose busy ranges overlap (a no-show
    and the booking made in its place) sit one under the other. A booking takes its lane
    from leaving base (`busy_from`) to being back (`busy_until`): the travel drawn either
    side of the session is the therapist's as much as the session is."""
    lane_ends: list[datetime] = []
    placed = []
    for booking in sorted(booked, key=lambda a: (a.busy_from, a.start, a.pk)):
        lane = next((i for i, end in enumerate(lane_ends) if end <= booking.busy_from), None)
        if lane is None:
            lane = len(lane_ends)
            lane_ends.append(booking.busy_until)
        else:
            lane_ends[lane] = booking.busy_until
        left, width = span.place(booking.start, booking.end)
        tail_left, tail = span.place(booking.end, booking.blocked_until)
        placement = Placement(
            left=left,
            width=width,
            tail_left=tail_left,
            tail=tail,
            lane=lane,
            travel_out=travel_piece(booking.busy_from, booking.start, span),
            travel_back=travel_piece(booking.blocked_until, booking.busy_until, span),
        )
        placed.append((booking, placement))
    return placed
