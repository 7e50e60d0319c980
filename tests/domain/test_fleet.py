"""The driver assignment search (scheduling/fleet.py) against a brute-force oracle."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.domain import Interval
from scheduling.fleet import Driver, OpenTrip, assign, carried, components

BASE = datetime(2030, 5, 1, tzinfo=UTC)


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def span(a: int, b: int) -> Interval:
    return Interval(at(a), at(b))


def oracle(drivers: list[Driver], trips: list[OpenTrip]) -> bool:
    """Every way of giving each trip to one of the drivers, checked by hand."""
    for choice in itertools.product(drivers, repeat=len(trips)):
        if not all(d.can_take(t) for d, t in zip(choice, trips, strict=True)):
            continue
        held: dict[int, list[Interval]] = {}
        ok = True
        for d, t in zip(choice, trips, strict=True):
            if any(w.overlaps(t.window) for w in held.get(d.id, [])):
                ok = False
                break
            held.setdefault(d.id, []).append(t.window)
        if ok:
            return True
    return False


def valid(drivers: list[Driver], trips: list[OpenTrip], chosen: dict) -> bool:
    by_id = {d.id: d for d in drivers}
    if set(chosen) != {t.key for t in trips}:
        return False
    for a, b in itertools.combinations(trips, 2):
        if chosen[a.key] == chosen[b.key] and a.window.overlaps(b.window):
            return False
    return all(by_id[chosen[t.key]].can_take(t) for t in trips)


def test_a_count_says_yes_where_no_assignment_exists():
    # At every minute two drivers work and at most two trips run, but Early leaves at
    # 11:00, so only Late can take the 10:30-11:15 trip, and the 10:00 one too.
    early = Driver(1, (span(0, 60),))
    late = Driver(2, (span(0, 240),))
    trips = [OpenTrip("a", span(0, 45)), OpenTrip("b", span(30, 75))]
    assert carried([early, late], trips)
    found = assign([early, late], trips)
    assert found == {"a": 1, "b": 2}
    third = OpenTrip("c", span(50, 70))
    assert not carried([early, late], [*trips, third])


def test_seats_and_vehicle():
    bike = Driver(1, (span(0, 600),), seats=1, car=False)
    van = Driver(2, (span(0, 600),), seats=3, car=True)
    couple = OpenTrip("couple", span(0, 45), passengers=2)
    assert assign([bike, van], [couple]) == {"couple": 2}
    assert not carried([bike], [couple])
    assert not carried([van], [OpenTrip("four", span(0, 45), passengers=4)])


def test_components_are_split_where_nothing_runs():
    trips = [OpenTrip(1, span(0, 30)), OpenTrip(2, span(20, 50)), OpenTrip(3, span(50, 80))]
    assert [[t.key for t in g] for g in components(trips)] == [[1, 2], [3]]


def test_back_to_back_trips_share_a_driver():
    one = Driver(1, (span(0, 120),))
    assert carried([one], [OpenTrip(1, span(0, 45)), OpenTrip(2, span(45, 90))])


drivers_strategy = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 20), st.integers(1, 12)), min_size=1, max_size=2),
        st.integers(1, 3),
        st.booleans(),
    ),
    min_size=1,
    max_size=3,
)
trips_strategy = st.lists(
    st.tuples(st.integers(0, 24), st.integers(1, 6), st.integers(1, 2)), min_size=1, max_size=5
)


@settings(max_examples=400, deadline=None)
@given(drivers_strategy, trips_strategy)
def test_agrees_with_brute_force(raw_drivers, raw_trips):
    drivers = [
        Driver(
            i,
            tuple(
                sorted(
                    {span(s * 10, (s + n) * 10) for s, n in pieces},
                )
            ),
            seats=seats,
            car=car,
        )
        for i, (pieces, seats, car) in enumerate(raw_drivers)
    ]
    # Pieces of one driver may overlap as generated; merge them as real schedules are.
    drivers = [d.without([]) for d in drivers]
    trips = [
        OpenTrip(i, span(s * 10, (s + n) * 10), passengers=p)
        for i, (s, n, p) in enumerate(raw_trips)
    ]
    found = assign(drivers, trips)
    assert (found is not None) == oracle(drivers, trips)
    if found is not None:
        assert valid(drivers, trips, found)


@settings(max_examples=300, deadline=None)
@given(
    drivers_strategy,
    st.lists(st.tuples(st.integers(0, 24), st.integers(1, 6)), max_size=5),
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 3), st.integers(0, 4)), max_size=6),
)
def test_availability_asks_each_leg_alone_with_the_same_answers(raw_drivers, raw_trips, asked):
    """`Fleet.carried` splits a start's two legs where they cannot interact and reuses
    answers across starts and requests; it must accept exactly the starts `carries`
    accepts when asked of both legs together, against the brute-force oracle too."""
    from scheduling.services.capacity import Fleet, NewLeg

    drivers = [
        Driver(
            i, tuple(sorted({span(s * 10, (s + n) * 10) for s, n in pieces})), seats=seats, car=car
        ).without([])
        for i, (pieces, seats, car) in enumerate(raw_drivers)
    ]
    waiting = [OpenTrip(i, span(s * 10, (s + n) * 10)) for i, (s, n) in enumerate(raw_trips)]
    pairs = {
        n: [
            NewLeg("dropoff", span(s * 10, (s + length) * 10)),
            NewLeg("pickup", span((s + length + gap) * 10, (s + 2 * length + gap) * 10)),
        ]
        for n, (s, length, gap) in enumerate(asked)
    }
    for _ in range(2):  # the second time from the answers remembered the first
        accepted = Fleet(drivers, waiting).carried(pairs)
        for n, legs in pairs.items():
            alone = Fleet(drivers, waiting)
            assert (n in accepted) == alone.carries(legs)
            affected = alone._affected([leg.as_trip() for leg in legs])
            assert (n in accepted) == oracle(drivers, affected)


def test_cars_carry_couples_and_motorcycles_carry_one():
    # Two couples (2 passengers) and a group of 4 at once, one single after: the
    # motorcycles can take only the single, the 2-seat car one couple, the 4-seat van
    # either couple or the group but not both at once.
    bike = Driver(1, (span(0, 600),), seats=1, car=False)
    small = Driver(2, (span(0, 600),), seats=2, car=True)
    van = Driver(3, (span(0, 600),), seats=4, car=True)
    couples = [OpenTrip("c1", span(0, 45), 2), OpenTrip("c2", span(10, 55), 2)]
    single = OpenTrip("s", span(20, 65))
    found = assign([bike, small, van], [*couples, single])
    assert found is not None and found["s"] == 1
    assert {found["c1"], found["c2"]} == {2, 3}
    group = OpenTrip("g", span(30, 75), 4)
    assert not carried([bike, small, van], [*couples, single, group])
    assert assign([bike, small, van], [couples[0], single, group]) == {"c1": 2, "s": 1, "g": 3}
    # A motorcycle with seats on paper still carries one.
    assert not carried([Driver(4, (span(0, 600),), seats=3, car=False)], [couples[0]])


fleet_strategy = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 20), st.integers(1, 14)), min_size=1, max_size=2),
        st.integers(1, 4),
        st.booleans(),
    ),
    min_size=1,
    max_size=4,
)


def _drivers(raw) -> list[Driver]:
    return [
        Driver(
            i, tuple(sorted({span(s * 10, (s + n) * 10) for s, n in pieces})), seats=seats, car=car
        ).without([])
        for i, (pieces, seats, car) in enumerate(raw)
    ]


@settings(max_examples=400, deadline=None)
@given(
    fleet_strategy,
    st.lists(st.tuples(st.integers(0, 24), st.integers(1, 6), st.integers(1, 4)), max_size=5),
    st.tuples(st.integers(0, 20), st.integers(1, 4), st.integers(0, 4), st.integers(1, 4)),
)
def test_every_quick_answer_agrees_with_brute_force(raw_drivers, raw_trips, asked):
    """Each shortcut `Fleet.carries` takes before its search is sound on its own: the
    quick yeses (beside the day's assignment, one move, a chain of moves, a span of the
    day re-solved, the quick descents) only where an assignment exists, the quick no (a
    moment with too few drivers) only where none does; and the whole answer is the
    oracle's. Trips of 1-4 passengers, cars and motorcycles of 1-4 seats."""
    from scheduling.fleet import assign_quickly
    from scheduling.services.capacity import Fleet, NewLeg

    drivers = _drivers(raw_drivers)
    waiting = [
        OpenTrip(i, span(s * 10, (s + n) * 10), passengers=p)
        for i, (s, n, p) in enumerate(raw_trips)
    ]
    s, length, gap, passengers = asked
    legs = [
        NewLeg("dropoff", span(s * 10, (s + length) * 10), passengers),
        NewLeg("pickup", span((s + length + gap) * 10, (s + 2 * length + gap) * 10), passengers),
    ]
    fleet = Fleet(drivers, waiting)
    extra = [leg.as_trip() for leg in legs]
    truth = oracle(drivers, fleet._affected(extra))
    assert fleet.carries(legs) == truth
    assert (Fleet(drivers, waiting).refusal(legs) is None) == truth
    if fleet.baseline() is None:
        assert not oracle(drivers, waiting)
        return
    assert valid(drivers, waiting, fleet.baseline())
    for quick in (fleet._fits_beside, fleet._room_by_moving, fleet._chained, fleet._repaired):
        if quick(list(extra)):
            assert truth, quick.__name__
    # Spans of the test's scale, so that some of the day is kept and some re-solved.
    if fleet._repaired(list(extra), margins=(timedelta(minutes=10), timedelta(minutes=40))):
        assert truth, "_repaired"
    if not fleet._enough_drivers_at_every_moment(list(extra)):
        assert not truth
    quickly = assign_quickly(drivers, [*waiting, *extra], hint=fleet.baseline())
    if quickly is not None:
        assert truth and valid(drivers, [*waiting, *extra], quickly)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.frozensets(st.integers(0, 5), max_size=4), min_size=1, max_size=7),
    st.data(),
)
def test_a_matching_extended_from_a_partial_one_decides_the_same(choices, data):
    """`extends_matching` from any valid partial matching answers as `has_matching` does
    from nothing (what the moment check relies on when it starts from the day's
    assignment)."""
    from scheduling.fleet import extends_matching, has_matching

    owner: dict[int, int] = {}
    for k, options in enumerate(choices):
        free = sorted(options - set(owner))
        if free and data.draw(st.booleans()):
            owner[data.draw(st.sampled_from(free))] = k
    brute = any(
        len(set(pick)) == len(pick) for pick in itertools.product(*[sorted(c) for c in choices])
    )
    assert has_matching(choices) == brute
    assert extends_matching(choices, dict(owner)) == brute


def test_a_span_re_solved_keeps_the_time_of_the_trips_left_outside_it():
    # K carries two, so only Early's car can take it; I can go to either; the new leg L
    # only to Late (Early is off at 01:50). Truly: K to Early, so I (overlapping K) to
    # Late, and L (overlapping I) finds nobody. Re-solving the span around L without K's
    # time taken from Early would give I to Early (best fit: idle since 00:10, Late since
    # 00:00) and L to Late, a yes that does not exist.
    from scheduling.services.capacity import Fleet, NewLeg

    early = Driver(1, (span(10, 110),), seats=2, car=True)
    late = Driver(2, (span(0, 600),))
    kept, inside = OpenTrip("K", span(10, 50), passengers=2), OpenTrip("I", span(40, 100))
    leg = NewLeg("pickup", span(60, 120))
    fleet = Fleet([early, late], [kept, inside])
    assert fleet.baseline() == {"K": 1, "I": 2}
    assert not oracle([early, late], [kept, inside, leg.as_trip()])
    assert not fleet._repaired([leg.as_trip()], margins=(timedelta(minutes=10),))
    assert not fleet.carries([leg])
