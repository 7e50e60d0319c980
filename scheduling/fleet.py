"""Can the drivers carry these trips? Pure assignment arithmetic, no ORM.

Each driver has the pieces of time they are free to drive (working time minus breaks,
time off and the trips they already hold) and a vehicle; each open trip is a window and
a number of passengers. The question is whether every trip can be given to a driver who
is free for its whole window, whose vehicle fits, and who drives nothing else at the same
time. That is an assignment problem, not a count: with drivers on different hours, "at
every minute there are at least as many drivers as trips" can hold while no assignment
exists (a driver who leaves at 11:00 cannot take the 10:30-11:15 trip however idle they
are at 10:30).

`assign` answers it exactly:

- Trips whose windows do not overlap, even through a chain of others, are independent
  (a driver's choice before a moment when no trip is under way constrains nothing after
  it), so the trips are split into such components and each is solved alone.
- A component is searched depth first, trips by start time, each given to a driver free
  by then. At every step, the trips still to place that are under way at each coming
  moment must be matchable to different drivers free then (a bipartite matching per
  moment): where they are not, the branch is abandoned at once instead of searched to
  its end, which is what makes a refusal nearly as quick as an acceptance. Drivers
  alike for everything still to come (the same free pieces from here on and the same
  vehicle) are tried once, and a state already shown to fail (which trip is next, who is
  still driving until when) is not searched again. The search tries the
  driver whose free piece ends soonest first, which keeps drivers on long hours for the
  trips only they can take; on the sizes a day has (tens of drivers, hundreds of trips)
  it rarely backtracks at all.
- Before any search, two quick descents: each trip to the first driver free for it in
  that order, then best fit (each trip to the free driver idle the least time before
  it). Either one that places every trip is an answer; only when both get stuck does the
  search run, so the answer never depends on them.

tests/domain/test_fleet.py checks it against a brute-force oracle that tries every assignment.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from scheduling.domain import Interval, subtract


def vehicle_fits(*, seats: int, car: bool, passengers: int) -> bool:
    """A motorcycle carries one passenger; more need a car with the seats."""
    return passengers <= seats and (passengers == 1 or car)


@dataclass(frozen=True)
class Driver:
    id: int
    free: tuple[Interval, ...]
    seats: int = 1
    car: bool = False

    def fits(self, passengers: int) -> bool:
        return vehicle_fits(seats=self.seats, car=self.car, passengers=passengers)

    def can_take(self, trip: OpenTrip) -> bool:
        return self.fits(trip.passengers) and any(p.contains(trip.window) for p in self.free)

    def without(self, windows: Iterable[Interval]) -> Driver:
        """The same driver, no longer free during `windows` (trips given to them)."""
        return replace(self, free=tuple(subtract(self.free, windows)))


@dataclass(frozen=True)
class OpenTrip:
    key: Hashable
    window: Interval
    passengers: int = 1


@dataclass
class _Search:
    trips: list[OpenTrip]
    # For each trip (same order), the drivers who could take it on their own.
    eligible: list[list[Driver]]
    # Search states (next trip, who is still driving until when) shown to fail.
    failed: set[tuple[int, frozenset[tuple[int, datetime]]]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.starts = [t.window.start for t in self.trips]
        self.ends = [t.window.end for t in self.trips]
        self.able = [frozenset(d.id for d in drivers) for drivers in self.eligible]

    def run(self) -> dict[Hashable, int] | None:
        quick = self._greedy() or self._best_fit()
        if quick is not None:
            return quick
        chosen: dict[Hashable, int] = {}
        # Every moment a trip starts, with nobody placed yet: the bound for the moments
        # that no placed trip reaches later on.
        if not all(self._matchable(0, t, {}) for t in sorted(set(self.starts))):
            return None
        return chosen if self._place(0, {}, chosen) else None

    def _greedy(self) -> dict[Hashable, int] | None:
        """The search's first descent without its checks: each trip to the first driver
        in its order who is free. Usually the answer already; None when it gets stuck."""
        driving_until: dict[int, datetime] = {}
        chosen: dict[Hashable, int] = {}
        for trip, drivers in zip(self.trips, self.eligible, strict=True):
            driver = next(
                (
                    d
                    for d in drivers
                    if driving_until.get(d.id) is None or driving_until[d.id] <= trip.window.start
                ),
                None,
            )
            if driver is None:
                return None
            driving_until[driver.id] = trip.window.end
            chosen[trip.key] = driver.id
        return chosen

    def _best_fit(self) -> dict[Hashable, int] | None:
        """A second quick descent, best fit: each trip to the driver free for it who has
        been idle the least time before it (since their last trip ended, or since their
        free piece began), ties in the search's order. It packs the drivers' days tight
        where the first descent's order leaves gaps nobody can fill later. None when it
        gets stuck."""
        driving_until: dict[int, datetime] = {}
        chosen: dict[Hashable, int] = {}
        for trip, drivers in zip(self.trips, self.eligible, strict=True):
            start, end = trip.window.start, trip.window.end
            best: Driver | None = None
            best_since: datetime | None = None
            for d in drivers:
                until = driving_until.get(d.id)
                if until is not None and until > start:
                    continue
                since = next(p.start for p in d.free if p.start <= start and end <= p.end)
                if until is not None and until > since:
                    since = until
                if best_since is None or since > best_since:
                    best, best_since = d, since
            if best is None:
                return None
            driving_until[best.id] = end
            chosen[trip.key] = best.id
        return chosen

    def _place(
        self, i: int, driving_until: dict[int, datetime], chosen: dict[Hashable, int]
    ) -> bool:
        if i == len(self.trips):
            return True
        trip = self.trips[i]
        start = trip.window.start
        # Only drivers still driving when this trip starts shape what is possible next.
        busy = {d: u for d, u in driving_until.items() if u > start}
        state = (i, frozenset(busy.items()))
        if state in self.failed:
            return False
        if not self._still_possible(i, busy):
            self.failed.add(state)
            return False
        tried: set[tuple[tuple[Interval, ...], int, bool]] = set()
        for driver in self.eligible[i]:
            if driver.id in busy:
                continue
            alike = (
                tuple(p for p in driver.free if p.end > start),
                driver.seats,
                driver.car,
            )
            if alike in tried:
                continue
            tried.add(alike)
            until = driving_until.get(driver.id)
            driving_until[driver.id] = trip.window.end
            chosen[trip.key] = driver.id
            if self._place(i + 1, driving_until, chosen):
                return True
            del chosen[trip.key]
            if until is None:
                del driving_until[driver.id]
            else:
                driving_until[driver.id] = until
        self.failed.add(state)
        return False

    def _still_possible(self, i: int, busy: dict[int, datetime]) -> bool:
        """At each moment a trip still to place starts while a placed trip is under way,
        the trips under way then that are still to place can go to different drivers who
        are free then (a necessary condition: it prunes whole subtrees that would
        otherwise be searched to the end before failing). Later moments are the root's."""
        if not busy:
            return True
        horizon = max(busy.values())
        moments = sorted({s for s in self.starts[i:] if s < horizon})
        return all(self._matchable(i, t, busy) for t in moments)

    def _matchable(self, i: int, moment: datetime, busy: dict[int, datetime]) -> bool:
        occupied = {d for d, u in busy.items() if u > moment}
        under_way = []
        for j in range(i, len(self.trips)):
            if self.starts[j] > moment:
                break
            if self.ends[j] > moment:
                under_way.append(self.able[j] - occupied)
        return has_matching(under_way)


def has_matching(choices: Sequence[frozenset[Hashable]]) -> bool:
    """Each entry can be given a different element of its set (augmenting paths)."""
    return extends_matching(choices, {})


def extends_matching(choices: Sequence[frozenset[Hashable]], owner: dict[Hashable, int]) -> bool:
    """`has_matching`, starting from `owner`: a matching already known for some entries
    (element -> entry, each element in its entry's set, no entry twice). Only the entries
    it leaves out are augmented, which decides the same question: an entry with no
    augmenting path from one matching has none from any later one (Kuhn), so all entries
    are matched in the end exactly when a matching of all of them exists. `owner` is
    changed in place."""
    matched = set(owner.values())

    def give(k: int, seen: set[Hashable]) -> bool:
        for d in choices[k]:
            if d in seen:
                continue
            seen.add(d)
            if d not in owner or give(owner[d], seen):
                owner[d] = k
                return True
        return False

    return all(give(k, set()) for k in range(len(choices)) if k not in matched)


def components(trips: Iterable[OpenTrip]) -> list[list[OpenTrip]]:
    """The trips in groups whose windows overlap, directly or through others, by start."""
    groups: list[list[OpenTrip]] = []
    reach = None
    for trip in sorted(trips, key=_order):
        if groups and reach is not None and trip.window.start < reach:
            groups[-1].append(trip)
            reach = max(reach, trip.window.end)
        else:
            groups.append([trip])
            reach = trip.window.end
    return groups


def assign(
    drivers: Sequence[Driver],
    trips: Iterable[OpenTrip],
    *,
    hint: dict[Hashable, int] | None = None,
) -> dict[Hashable, int] | None:
    """A driver id for every trip's key, or None when no assignment exists.

    `hint`: a known assignment of most of these trips (without a few new ones): each of
    its trips tries its hinted driver first, so the search keeps to it and rearranges
    only around what is new. It changes the order of the search, never its answer."""
    chosen: dict[Hashable, int] = {}
    drivers = tuple(drivers)
    for group in components(trips):
        found = _solved(drivers, tuple(group), hint or {})
        if found is None:
            return None
        chosen.update(found)
    return chosen


def assign_quickly(
    drivers: Sequence[Driver],
    trips: Iterable[OpenTrip],
    *,
    hint: dict[Hashable, int] | None = None,
) -> dict[Hashable, int] | None:
    """`assign`'s quick descents only (no search): an assignment when one of them finds
    it, None when neither does, which proves nothing (use `assign` to know)."""
    chosen: dict[Hashable, int] = {}
    for group in components(trips):
        eligible = []
        for trip in group:
            able = eligible_drivers(drivers, trip, hinted=(hint or {}).get(trip.key))
            if not able:
                return None
            eligible.append(able)
        search = _Search(group, eligible)
        found = search._greedy() or search._best_fit()
        if found is None:
            return None
        chosen.update(found)
    return chosen


def carried(drivers: Sequence[Driver], trips: Iterable[OpenTrip]) -> bool:
    return assign(drivers, trips) is not None


def _solved(
    drivers: tuple[Driver, ...], trips: tuple[OpenTrip, ...], hint: dict[Hashable, int]
) -> dict[Hashable, int] | None:
    """`_assign_component`, remembered for the same drivers and trips: an answer depends
    on nothing else (the inputs are frozen values, the whole of them the key), and the
    desk asks the same day again and again while its trips stay as they are."""
    key = (drivers, trips)
    if key in _answers:
        _answers.move_to_end(key)
        found = _answers[key]
    else:
        found = _assign_component(drivers, list(trips), hint)
        _answers[key] = found
        if len(_answers) > ANSWERS_KEPT:
            _answers.popitem(last=False)
    return None if found is None else dict(found)


# Solved components kept per process, least recently used dropped first.
ANSWERS_KEPT = 2048
_answers: OrderedDict[
    tuple[tuple[Driver, ...], tuple[OpenTrip, ...]], dict[Hashable, int] | None
] = OrderedDict()


def _assign_component(
    drivers: Sequence[Driver], trips: list[OpenTrip], hint: dict[Hashable, int]
) -> dict[Hashable, int] | None:
    eligible = []
    for trip in trips:
        able = eligible_drivers(drivers, trip, hinted=hint.get(trip.key))
        if not able:
            return None
        eligible.append(able)
    return _Search(trips, eligible).run()


def eligible_drivers(
    drivers: Sequence[Driver], trip: OpenTrip, *, hinted: int | None = None
) -> list[Driver]:
    """The drivers who could take `trip` on their own, in the search's order of
    preference: the hinted driver first, then whose free piece around the trip ends
    soonest (which keeps drivers on long hours for the trips only they can take), then by
    id. One pass over each driver's pieces (the search's hottest loop, so written out)."""
    start, end, passengers = trip.window.start, trip.window.end, trip.passengers
    ranked: list[tuple[bool, datetime, int, Driver]] = []
    for driver in drivers:
        if passengers != 1 and not driver.fits(passengers):
            continue
        if passengers == 1 and driver.seats < 1:
            continue
        for piece in driver.free:
            if piece.start <= start and end <= piece.end:
                ranked.append((driver.id != hinted, piece.end, driver.id, driver))
                break
    ranked.sort(key=_rank)
    return [entry[3] for entry in ranked]


def _rank(entry: tuple[bool, datetime, int, Driver]) -> tuple[bool, datetime, int]:
    return entry[0], entry[1], entry[2]


def _order(trip: OpenTrip) -> tuple[datetime, datetime, str]:
    return (trip.window.start, trip.window.end, str(trip.key))
