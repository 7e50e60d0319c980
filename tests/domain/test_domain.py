"""Pure time arithmetic, checked against a minute-by-minute oracle and across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.domain import (
    DaySchedule,
    Interval,
    bookable,
    candidate_starts,
    free_starts,
    is_on_step,
    local_day_bounds,
    merge,
    subtract,
)

MANILA = ZoneInfo("Asia/Manila")
NEW_YORK = ZoneInfo("America/New_York")
DAY = date(2030, 5, 1)
STEP = timedelta(minutes=15)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_merge_joins_touching_and_overlapping():
    a = Interval(utc(2030, 1, 1, 8), utc(2030, 1, 1, 9))
    b = Interval(utc(2030, 1, 1, 9), utc(2030, 1, 1, 10))
    c = Interval(utc(2030, 1, 1, 9, 30), utc(2030, 1, 1, 11))
    assert merge([c, a, b]) == [Interval(a.start, c.end)]


def test_subtract_cuts_holes():
    day = Interval(utc(2030, 1, 1, 8), utc(2030, 1, 1, 18))
    lunch = Interval(utc(2030, 1, 1, 12), utc(2030, 1, 1, 13))
    assert subtract([day], [lunch]) == [
        Interval(day.start, lunch.start),
        Interval(lunch.end, day.end),
    ]


def test_why_not_working_names_the_reason():
    schedule = DaySchedule.build(
        DAY,
        hours=[(time(9), time(18))],
        breaks=[(time(12), time(13))],
        time_off=[Interval(utc(2030, 5, 1, 8), utc(2030, 5, 1, 9))],  # 16:00-17:00 Manila
        zone=MANILA,
    )

    def session(hour: int) -> Interval:
        start = datetime.combine(DAY, time(hour), tzinfo=MANILA)
        return Interval(start, start + timedelta(hours=1))

    assert schedule.why_not_working(session(10)) is None
    assert schedule.why_not_working(session(8)) == "outside working hours"
    assert schedule.why_not_working(session(12)) == "during a break"
    assert schedule.why_not_working(session(16)) == "during time off"
    assert schedule.why_not_working(session(17)) is None


# --- daylight saving ----------------------------------------------------------------------

SPRING_FORWARD = date(2030, 3, 10)  # New York: 02:00 EST -> 03:00 EDT
FALL_BACK = date(2030, 11, 3)  # New York: 02:00 EDT -> 01:00 EST


def test_days_of_23_and_25_hours():
    start, end = local_day_bounds(SPRING_FORWARD, NEW_YORK)
    assert end - start == timedelta(hours=23)
    start, end = local_day_bounds(FALL_BACK, NEW_YORK)
    assert end - start == timedelta(hours=25)
    assert len(list(candidate_starts(SPRING_FORWARD, STEP, NEW_YORK))) == 23 * 4
    assert len(list(candidate_starts(FALL_BACK, STEP, NEW_YORK))) == 25 * 4


def test_spring_forward_never_offers_a_missing_wall_time():
    schedule = DaySchedule.build(SPRING_FORWARD, hours=[(time(0), time(6))], zone=NEW_YORK)
    starts = free_starts(
        SPRING_FORWARD,
        duration=timedelta(hours=1),
        buffer=timedelta(0),
        step=STEP,
        schedule=schedule,
        busy=[],
        not_before=utc(2000, 1, 1),
        zone=NEW_YORK,
    )
    walls = [s.astimezone(NEW_YORK).time() for s in starts]
    assert not any(time(2) <= w < time(3) for w in walls)
    # 00:00 to 06:00 wall time is five real hours: starts 00:00 .. 05:00 less the gap.
    assert len(starts) == 5 * 4 - 4 + 1
    assert walls[0] == time(0) and walls[-1] == time(5)


def test_fall_back_offers_the_repeated_hour_twice():
    schedule = DaySchedule.build(FALL_BACK, hours=[(time(0), time(4))], zone=NEW_YORK)
    starts = free_starts(
        FALL_BACK,
        duration=timedelta(minutes=30),
        buffer=timedelta(0),
        step=timedelta(minutes=30),
        schedule=schedule,
        busy=[],
        not_before=utc(2000, 1, 1),
        zone=NEW_YORK,
    )
    walls = [s.astimezone(NEW_YORK).strftime("%H:%M") for s in starts]
    assert walls.count("01:00") == 2 and walls.count("01:30") == 2
    assert len(starts) == 5 * 2  # four wall hours are five real ones


def test_step_alignment_is_local():
    assert is_on_step(datetime(2030, 5, 1, 10, 15, tzinfo=MANILA), STEP, MANILA)
    assert not is_on_step(datetime(2030, 5, 1, 10, 10, tzinfo=MANILA), STEP, MANILA)
    # After spring-forward, 03:15 EDT is still on the quarter hour.
    assert is_on_step(datetime(2030, 3, 10, 3, 15, tzinfo=NEW_YORK), STEP, NEW_YORK)


# --- properties against a minute-by-minute oracle -------------------------------------------

MINUTE = timedelta(minutes=1)
quarter_hours = st.integers(min_value=0, max_value=95)


def wall(q: int) -> time:
    return time(q // 4, (q % 4) * 15)


@st.composite
def days(draw):
    zone = draw(st.sampled_from([MANILA, NEW_YORK]))
    day = draw(st.sampled_from([DAY, SPRING_FORWARD, FALL_BACK, date(2030, 3, 9)]))
    a, b = sorted(draw(st.lists(quarter_hours, min_size=2, max_size=2, unique=True)))
    breaks = []
    if draw(st.booleans()):
        c, d = sorted(draw(st.lists(quarter_hours, min_size=2, max_size=2, unique=True)))
        breaks.append((wall(c), wall(d)))
    day_start, _ = local_day_bounds(day, zone)
    busy = [
        Interval(day_start + timedelta(minutes=15 * s), day_start + timedelta(minutes=15 * (s + n)))
        for s, n in draw(st.lists(st.tuples(st.integers(0, 99), st.integers(1, 12)), max_size=4))
    ]
    schedule = DaySchedule.build(day, hours=[(wall(a), wall(b))], breaks=breaks, zone=zone)
    return zone, day, schedule, busy


def oracle_bookable(start, duration, buffer, schedule: DaySchedule, busy, travel=0 * MINUTE):
    """Minute by minute: every minute from leaving base (travel before the start) to being
    back (session, buffer and travel after it) is working time and held by nothing else."""
    working = schedule.working
    t = start - travel
    while t < start + duration + buffer + travel:
        if not any(w.start <= t < w.end for w in working):
            return False
        if any(b.start <= t < b.end for b in busy):
            return False
        t += MINUTE
    return True


@settings(max_examples=200, deadline=None)
@given(days(), st.integers(1, 8), st.integers(0, 4), st.integers(0, 4), st.data())
def test_bookable_agrees_with_the_oracle(case, duration_q, buffer_q, travel_q, data):
    zone, day, schedule, busy = case
    duration, buffer = timedelta(minutes=15 * duration_q), timedelta(minutes=15 * buffer_q)
    travel = timedelta(minutes=15 * travel_q)
    starts = list(candidate_starts(day, STEP, zone))
    start = data.draw(st.sampled_from(starts))
    expected = oracle_bookable(start, duration, buffer, schedule, busy, travel)
    assert (
        bookable(
            start, duration=duration, buffer=buffer, schedule=schedule, busy=busy, travel=travel
        )
        is expected
    )


@settings(max_examples=200, deadline=None)
@given(days(), st.integers(1, 8), st.integers(0, 4), st.integers(0, 4))
def test_free_starts_offers_exactly_the_bookable_starts(case, duration_q, buffer_q, travel_q):
    zone, day, schedule, busy = case
    duration, buffer = timedelta(minutes=15 * duration_q), timedelta(minutes=15 * buffer_q)
    travel = timedelta(minutes=15 * travel_q)
    offered = free_starts(
        day,
        duration=duration,
        buffer=buffer,
        step=STEP,
        schedule=schedule,
        busy=busy,
        not_before=utc(2000, 1, 1),
        travel=travel,
        zone=zone,
    )
    every = list(candidate_starts(day, STEP, zone))
    assert offered == [
        s for s in every if oracle_bookable(s, duration, buffer, schedule, busy, travel)
    ]


@settings(max_examples=200, deadline=None)
@given(
    days(), st.lists(st.tuples(quarter_hours, st.integers(1, 8), st.integers(0, 4)), max_size=25)
)
def test_bookings_made_one_by_one_never_overlap(case, attempts):
    """Book greedily wherever `bookable` says yes: no two held ranges ever overlap."""
    zone, day, schedule, _ = case
    day_start, _ = local_day_bounds(day, zone)
    held: list[Interval] = []
    for q, duration_q, buffer_q in attempts:
        start = day_start + timedelta(minutes=15 * q)
        duration, buffer = timedelta(minutes=15 * duration_q), timedelta(minutes=15 * buffer_q)
        if bookable(start, duration=duration, buffer=buffer, schedule=schedule, busy=held):
            held.append(Interval(start, start + duration + buffer))
    for i, a in enumerate(held):
        for b in held[i + 1 :]:
            assert not (a.start < b.end and b.start < a.end), (a, b)


@st.composite
def rough_days(draw):
    """Less tidy days than `days()`: minute-grained hours, breaks, time off and held
    intervals, overlapping each other and the day's edges, and any step."""
    zone = draw(st.sampled_from([MANILA, NEW_YORK]))
    day = draw(st.sampled_from([DAY, SPRING_FORWARD, FALL_BACK]))
    day_start, _ = local_day_bounds(day, zone)
    minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1)

    def walls(n: int) -> list[tuple[time, time]]:
        periods = []
        for _ in range(n):
            a, b = sorted(draw(st.lists(minutes_of_day, min_size=2, max_size=2, unique=True)))
            periods.append((time(a // 60, a % 60), time(b // 60, b % 60)))
        return periods

    def spans(max_size: int) -> list[Interval]:
        drawn = draw(
            st.lists(st.tuples(st.integers(-120, 26 * 60), st.integers(0, 300)), max_size=max_size)
        )
        return [Interval(day_start + s * MINUTE, day_start + (s + n) * MINUTE) for s, n in drawn]

    schedule = DaySchedule.build(
        day,
        hours=walls(draw(st.integers(1, 3))),
        breaks=walls(draw(st.integers(0, 2))),
        time_off=[i for i in spans(2) if i.end > i.start],
        zone=zone,
    )
    not_before = day_start + draw(st.integers(-60, 25 * 60)) * MINUTE
    step = timedelta(minutes=draw(st.sampled_from([5, 10, 15, 20, 30, 60])))
    return zone, day, schedule, spans(6), not_before, step


@settings(max_examples=400, deadline=None)
@given(rough_days(), st.integers(1, 180), st.integers(0, 60), st.integers(0, 90))
def test_free_starts_is_bookable_at_every_candidate(case, duration_m, buffer_m, travel_m):
    """The sweep gives exactly what testing `bookable` at each candidate gives."""
    zone, day, schedule, busy, not_before, step = case
    duration, buffer, travel = duration_m * MINUTE, buffer_m * MINUTE, travel_m * MINUTE
    offered = free_starts(
        day,
        duration=duration,
        buffer=buffer,
        step=step,
        schedule=schedule,
        busy=busy,
        not_before=not_before,
        travel=travel,
        zone=zone,
    )
    assert offered == [
        s
        for s in candidate_starts(day, step, zone)
        if s >= not_before
        and bookable(
            s, duration=duration, buffer=buffer, schedule=schedule, busy=busy, travel=travel
        )
    ]


def test_a_gap_exactly_one_session_and_buffer_long_is_offered():
    """Held until 10:00 and again from 11:15: a 60-minute session with a 15-minute buffer
    fits at 10:00 exactly, and nowhere else between them."""
    schedule = DaySchedule.build(DAY, hours=[(time(8), time(18))], zone=MANILA)

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime.combine(DAY, time(hour, minute), tzinfo=MANILA)

    busy = [Interval(at(9), at(10)), Interval(at(11, 15), at(12)), Interval(at(12), at(13))]
    offered = free_starts(
        DAY,
        duration=timedelta(hours=1),
        buffer=timedelta(minutes=15),
        step=STEP,
        schedule=schedule,
        busy=busy,
        not_before=utc(2000, 1, 1),
        zone=MANILA,
    )
    # 08:00 plus its buffer would run into 09:00; 13:00 is free again.
    assert [s for s in offered if s < at(13)] == [at(10)]
    assert offered[1] == at(13)
