"""The dispatcher's `needed_later` question asked per group of trips with its spare-driver
shortcut (dispatch._Groups) gives the answers `capacity.Fleet.strands` gives for the
whole day, at every step of a pass. No database: the fleets are built by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.domain import Interval
from scheduling.fleet import Driver, OpenTrip
from scheduling.services.capacity import Fleet
from scheduling.services.dispatch import _Groups

BASE = datetime(2030, 5, 1, tzinfo=UTC)


def span(a: int, b: int) -> Interval:
    return Interval(BASE + timedelta(minutes=15 * a), BASE + timedelta(minutes=15 * b))


@st.composite
def fleets(draw) -> Fleet:
    drivers = []
    for n in range(draw(st.integers(1, 5))):
        start = draw(st.integers(0, 8))
        end = draw(st.integers(start + 1, 16))
        pieces = (span(start, end),)
        gap = draw(st.one_of(st.none(), st.integers(start + 1, end)))
        if gap is not None and gap + 1 < end:  # a break
            pieces = (span(start, gap), span(gap + 1, end))
        car = draw(st.booleans())
        drivers.append(Driver(n + 1, pieces, seats=3 if car else 1, car=car))
    trips = []
    for n in range(draw(st.integers(1, 7))):
        start = draw(st.integers(0, 14))
        length = draw(st.integers(1, 3))
        trips.append(
            OpenTrip(100 + n, span(start, start + length), draw(st.sampled_from([1, 1, 2])))
        )
    return Fleet(drivers, trips)


@settings(max_examples=300, deadline=None)
@given(fleets(), st.randoms(use_true_random=False))
def test_grouped_answers_are_the_whole_days(fleet: Fleet, rng):
    grouped = _Groups(Fleet(fleet.drivers, list(fleet.waiting)))
    order = sorted(fleet.waiting, key=lambda t: (t.window.start, t.key))
    for trip in order:
        for driver in fleet.drivers:
            assert grouped.strands(trip.key, driver.id) == fleet.strands(trip.key, driver.id)
        able = [d for d in fleet.drivers if d.can_take(trip)]
        if not able:
            continue
        chosen = rng.choice(able).id
        fleet = fleet.given(trip.key, chosen)
        grouped.given(trip.key, chosen)


def test_spare_drivers_answer_without_a_search():
    # Three trips at once and five drivers free all day: whoever takes one, the other
    # two have drivers of their own; no search is needed to say so.
    drivers = [Driver(n, (span(0, 40),)) for n in range(1, 6)]
    trips = [OpenTrip(k, span(4, 7)) for k in (1, 2, 3)]
    grouped = _Groups(Fleet(drivers, trips))
    part = grouped.of_trip[1]
    assert not grouped.strands(1, 1)
    assert part._solved is False  # the shortcut answered: the group was never solved


def test_a_group_without_spares_is_searched():
    # Two drivers, two trips at once, the early one leaving before the second trip ends:
    # giving the first trip to the late driver strands the second.
    early = Driver(1, (span(0, 6),))
    late = Driver(2, (span(0, 40),))
    trips = [OpenTrip(1, span(2, 5)), OpenTrip(2, span(3, 8))]
    grouped = _Groups(Fleet([early, late], trips))
    assert grouped.strands(1, 2)
    assert not grouped.strands(1, 1)
