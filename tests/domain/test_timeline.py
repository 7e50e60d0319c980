"""The day board's geometry (scheduling/views/desk/timeline.py), without a request or a
database: bookings are plain values with the five times an appointment has."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.domain import DaySchedule, Interval, at_wall_time, business_zone
from scheduling.views.desk.timeline import (
    Span,
    board_span,
    hour_ticks,
    hours_text,
    placements,
    segments_of,
    travel_piece,
)

DAY = date(2030, 5, 1)  # a fixed day: nothing here depends on when the test runs


@dataclass(frozen=True)
class Booking:
    pk: int
    start: datetime
    end: datetime
    blocked_until: datetime
    busy_from: datetime
    busy_until: datetime


def local(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return at_wall_time(day, time(hour, minute), business_zone())


def booking(pk: int, start: datetime, *, minutes: int = 60, buffer: int = 15, travel: int = 45):
    end = start + timedelta(minutes=minutes)
    blocked = end + timedelta(minutes=buffer)
    return Booking(
        pk=pk,
        start=start,
        end=end,
        blocked_until=blocked,
        busy_from=start - timedelta(minutes=travel),
        busy_until=blocked + timedelta(minutes=travel),
    )


def ends(left: str, width: str) -> float:
    return float(left) + float(width)


WHOLE_DAY = Span(local(0), local(0, day=DAY + timedelta(days=1)))


# --- lanes -----------------------------------------------------------------------------------


def test_a_booking_keeps_its_lane_until_the_therapist_is_back_from_travel():
    first = booking(1, local(10))  # away 09:15-12:00
    # Session and clean-up over at 11:15, but on the road until 12:00: no sharing.
    overlapping = booking(2, local(12, 15))  # away 11:30-14:15
    after = booking(3, local(12, 45))  # away 12:00-14:45: back in time for it
    lanes = {b.pk: p.lane for b, p in placements([after, overlapping, first], WHOLE_DAY)}
    assert lanes == {1: 0, 2: 1, 3: 0}


def test_placements_come_in_the_order_drawn_whatever_the_order_given():
    a, b, c = booking(1, local(9)), booking(2, local(13)), booking(3, local(13))
    assert [x.pk for x, _ in placements([c, b, a], WHOLE_DAY)] == [1, 2, 3]


bookings = st.lists(
    st.builds(
        lambda pk, start, minutes, buffer, travel: booking(
            pk,
            local(6) + timedelta(minutes=15 * start),
            minutes=minutes,
            buffer=buffer,
            travel=travel,
        ),
        st.integers(1, 10_000),
        st.integers(0, 48),
        st.sampled_from([30, 60, 90, 120]),
        st.sampled_from([0, 10, 15, 30]),
        st.sampled_from([0, 15, 30, 45, 90]),
    ),
    max_size=12,
    unique_by=lambda b: b.pk,
)


@settings(max_examples=200, deadline=None)
@given(bookings)
def test_lanes_never_overlap_and_are_as_few_as_the_busiest_moment_needs(booked):
    placed = placements(booked, WHOLE_DAY)
    assert sorted(b.pk for b, _ in placed) == sorted(b.pk for b in booked)
    by_lane: dict[int, list[Booking]] = {}
    for b, p in placed:
        by_lane.setdefault(p.lane, []).append(b)
    for lane in by_lane.values():
        lane.sort(key=lambda b: b.busy_from)
        for earlier, later in pairwise(lane):
            assert earlier.busy_until <= later.busy_from
    # Lanes are numbered from 0 with no gaps, and no more of them than bookings away at
    # the same moment.
    assert sorted(by_lane) == list(range(len(by_lane)))
    deepest = max(
        (sum(1 for o in booked if o.busy_from <= b.busy_from < o.busy_until) for b in booked),
        default=0,
    )
    assert len(by_lane) == deepest


# --- pieces ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(bookings)
def test_travel_meets_the_session_and_the_clean_up_edge_to_edge(booked):
    span = board_span(DAY, [], booked) if booked else WHOLE_DAY
    for b, p in placements(booked, span):
        # The session, then the clean-up right after it.
        assert ends(p.left, p.width) == pytest.approx(float(p.tail_left), abs=0.002)
        if b.busy_from < b.start:
            assert ends(p.travel_out.left, p.travel_out.width) == pytest.approx(
                float(p.left), abs=0.002
            )
        if b.blocked_until < b.busy_until:
            assert ends(p.tail_left, p.tail) == pytest.approx(float(p.travel_back.left), abs=0.002)


def test_travel_pieces_say_their_times():
    [(_, p)] = placements([booking(1, local(10))], WHOLE_DAY)
    assert p.travel_out.text == "Travel 09:15–10:00"
    assert p.travel_back.text == "Travel 11:15–12:00"
    assert float(p.tail) > 0  # 15 minutes of clean-up


def test_a_booking_with_no_travel_has_no_travel_pieces():
    [(_, p)] = placements([booking(1, local(10), travel=0)], WHOLE_DAY)
    assert p.travel_out is None and p.travel_back is None
    assert travel_piece(local(10), local(10), WHOLE_DAY) is None


def test_a_booking_with_no_clean_up_draws_an_empty_tail():
    [(_, p)] = placements([booking(1, local(10), buffer=0)], WHOLE_DAY)
    assert float(p.tail) == 0
    assert ends(p.tail_left, p.tail) == pytest.approx(float(p.travel_back.left), abs=0.002)


def test_positions_are_percentages_of_the_span_and_stay_on_it():
    span = Span(local(8), local(20))
    assert span.place(local(8), local(14)) == ("0.000", "50.000")
    assert span.place(local(6), local(9)) == ("0.000", "8.333")  # cut at the left edge
    assert span.place(local(19), local(23)) == ("91.667", "8.333")  # and at the right
    assert span.place(local(21), local(22)) == ("100.000", "0.000")


# --- the span --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(bookings, st.integers(6, 11), st.integers(13, 21))
def test_the_span_covers_every_busy_range_and_the_working_hours(booked, opens, closes):
    hours = [Interval(local(opens), local(closes))]
    span = board_span(DAY, hours, booked)
    day_start, day_end = local(0), local(0, day=DAY + timedelta(days=1))
    assert span.start <= local(opens) and span.end >= local(closes)
    for b in booked:
        assert span.start <= max(b.busy_from, day_start)
        assert span.end >= min(b.busy_until, day_end)
    # Whole hours of the business's clock.
    assert span.start.astimezone(business_zone()).minute == 0
    assert span.end.astimezone(business_zone()).minute == 0


def test_the_span_is_the_working_hours_rounded_out_to_whole_hours():
    hours = [Interval(local(9, 30), local(12)), Interval(local(13), local(17, 10))]
    assert board_span(DAY, hours, []) == Span(local(9), local(18))


def test_a_booking_outside_the_hours_widens_the_span():
    hours = [Interval(local(9), local(17))]
    late = booking(1, local(17, 30))  # away 16:45-19:30
    assert board_span(DAY, hours, [late]) == Span(local(9), local(20))


def test_a_day_nobody_works_shows_eight_to_eight():
    assert board_span(DAY, [], []) == Span(local(8), local(20))


def test_the_span_stays_inside_the_day():
    hours = [Interval(local(22), local(23, 30))]
    span = board_span(DAY, hours, [])
    assert span == Span(local(22), local(0, day=DAY + timedelta(days=1)))


def test_hour_ticks_mark_every_hour_of_the_span():
    ticks = hour_ticks(Span(local(8), local(11)))
    assert ticks == [("08:00", "0.000"), ("09:00", "33.333"), ("10:00", "66.667")]


# --- a row's blocked time ------------------------------------------------------------------------


def test_segments_shade_outside_hours_breaks_and_time_off():
    schedule = DaySchedule.build(
        DAY,
        hours=[(time(9), time(17))],
        breaks=[(time(12), time(13))],
        time_off=[Interval(local(15), local(16))],
    )
    span = Span(local(8), local(18))
    segments = segments_of(schedule, span)
    assert [(s.kind, s.label) for s in segments] == [
        ("off", "Outside working hours 08:00–09:00"),
        ("off", "Outside working hours 17:00–18:00"),
        ("break", "Break 12:00–13:00"),
        ("time-off", "Time off 15:00–16:00"),
    ]
    assert (segments[2].left, segments[2].width) == ("40.000", "10.000")
    assert hours_text(schedule) == "09:00–17:00"


def test_a_day_off_is_said_in_words():
    none = DaySchedule.build(DAY, hours=[])
    assert hours_text(none) == "Not working"
    assert [s.kind for s in segments_of(none, Span(local(8), local(20)))] == ["off"]
    away = DaySchedule.build(
        DAY, hours=[(time(9), time(17))], time_off=[Interval(local(0), local(23, 59))]
    )
    assert hours_text(away) == "Time off"
