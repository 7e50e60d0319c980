"""Driver capacity: can the drivers carry every open trip, and these new legs too?

Booking, rescheduling, availability and the dispatcher all ask through here, so what is
offered, what is accepted and what is dispatched follow one rule. The arithmetic is in
`scheduling.fleet`; this module reads the drivers' day from the database and takes the
lock that makes a decision about it stand until the transaction ends.

A driver can carry a trip when the trip lies in their working time (weekly hours minus
breaks and time off) outside the trips they already hold, and their vehicle fits. Being
on shift is about now; capacity is about the day booked, so it reads working time.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar

from django.db import connection
from django.utils import timezone

from scheduling.domain import Interval, local_date, local_day_bounds
from scheduling.errors import Conflict, ConflictingItem
from scheduling.fleet import (
    Driver,
    OpenTrip,
    assign,
    assign_quickly,
    components,
    eligible_drivers,
    extends_matching,
)
from scheduling.models import Leg, TripStatus, Vehicle
from scheduling.services.fleet_read import fleet_rows
from scheduling.services.working_time import day_schedules

K = TypeVar("K", bound=Hashable)

# Advisory lock namespace (services.common has the timetables, dispatch has 3).
DRIVER_CAPACITY = 4


@dataclass(frozen=True)
class NewLeg:
    """A leg a booking would add: not in the database yet."""

    leg: str
    window: Interval
    passengers: int = 1

    def as_trip(self) -> OpenTrip:
        return OpenTrip(key=("new", self.leg), window=self.window, passengers=self.passengers)

    def text(self) -> str:
        start, end = (timezone.localtime(t) for t in (self.window.start, self.window.end))
        return f"the {Leg(self.leg).label.lower()} {start:%H:%M}–{end:%H:%M}"


def legs_for(
    start: datetime, end: datetime, *, buffer: timedelta, travel: timedelta, passengers: int = 1
) -> list[NewLeg]:
    """A visit's two legs: to the client, arriving at the start; back, leaving when the
    session and its buffer are over. Both lie inside the therapist's busy range."""
    back = end + buffer
    return [
        NewLeg(Leg.DROPOFF, Interval(start - travel, start), passengers),
        NewLeg(Leg.PICKUP, Interval(back, back + travel), passengers),
    ]


# How far around new legs `Fleet._repaired` re-solves the day, in turn.
REPAIR_MARGINS = (timedelta(hours=1), timedelta(hours=2), timedelta(hours=4))


@dataclass
class Fleet:
    """The drivers' time over some days as read from the database, and the trips still
    waiting for a driver then."""

    drivers: list[Driver]
    waiting: list[OpenTrip]
    _baseline: dict[Hashable, int] | None = field(default=None, init=False)
    _solved: bool = field(default=False, init=False)
    _by_driver: dict[int, list[OpenTrip]] | None = field(default=None, init=False)
    _eligible: dict[OpenTrip, frozenset[Hashable]] = field(default_factory=dict, init=False)
    _ordered_able: dict[OpenTrip, list[Driver]] = field(default_factory=dict, init=False)
    _components: list[list[OpenTrip]] | None = field(default=None, init=False)
    _drivers_tok: int | None = field(default=None, init=False)
    _group_toks: list[int] | None = field(default=None, init=False)

    def baseline(self) -> dict[Hashable, int] | None:
        """An assignment of every waiting trip (trip id -> driver id), or None."""
        if not self._solved:
            self._baseline = assign(self.drivers, self.waiting)
            self._solved = True
        return self._baseline

    def carries(self, new: Sequence[NewLeg] = ()) -> bool:
        """Every waiting trip and the `new` legs can be given to drivers.

        Exact, and cheap in the common cases: the legs slot in beside an assignment of
        the waiting trips (yes), or at some moment of the legs more trips are under way
        than drivers free for them can take (no), or one or two trips of that assignment
        move over to make room (yes); only what none of these decide is searched."""
        extra = [leg.as_trip() for leg in new]
        baseline = self.baseline()
        if baseline is not None and self._fits_beside(extra):
            return True
        if not extra:
            return baseline is not None
        if not self._enough_drivers_at_every_moment(extra):
            return False
        if baseline is not None and (
            self._room_by_moving(extra) or self._chained(extra) or self._repaired(extra)
        ):
            return True
        return assign(self.drivers, self._affected(extra), hint=baseline) is not None

    def refusal(self, new: Sequence[NewLeg]) -> Conflict | None:
        """None when the `new` legs can be carried; else a Conflict naming the leg that
        cannot (both, when each alone could be but not the two together)."""
        if self.carries(new):
            return None
        failing = [leg for leg in new if not self.carries([leg])] or list(new)
        what = " and ".join(leg.text() for leg in failing)
        message = f"No driver is free for {what}."
        around = [t for t in self._affected([leg.as_trip() for leg in new]) if t.key in self._ids]
        if assign(self.drivers, around) is None:
            message += (
                " The trips already booked around then cannot all be carried either; "
                "see the trips waiting for a driver."
            )
        return Conflict(
            message,
            [
                ConflictingItem(start=leg.window.start, end=leg.window.end, leg=leg.leg)
                for leg in failing
            ],
            reason=NO_DRIVER,
        )

    def carried(self, asked: Mapping[K, Sequence[NewLeg]]) -> set[K]:
        """The keys of `asked` whose legs `carries` would accept.

        Legs that neither overlap each other nor meet one group of waiting trips chained
        by overlapping windows fall in separate components, and separate components are
        assigned independently (a driver's trips in one never overlap those in another),
        so such legs are carried exactly when each is carried alone. A day's starts share
        most of their legs (one start's drop-off is an earlier start's pick-up window), so
        each distinct question is decided once, and its answer remembered per process for
        the same drivers and the same trips of the groups it meets, as `fleet.assign`
        remembers its components: the desk asks the same day again and again."""
        spans = self._group_spans()
        found: set[K] = set()
        for key, legs in asked.items():
            touched = [_touching(spans, leg.window) for leg in legs]
            separate = all(
                not a.window.overlaps(b.window) and not (touched[i] & touched[j])
                for i, a in enumerate(legs)
                for j, b in enumerate(legs)
                if i < j
            )
            if separate:
                ok = all(self._remembered([leg], touched[i]) for i, leg in enumerate(legs))
            else:
                ok = self._remembered(legs, frozenset().union(*touched))
            if ok:
                found.add(key)
        return found

    def _remembered(self, legs: Sequence[NewLeg], touched: frozenset[int]) -> bool:
        """`carries(legs)`, which depends only on the drivers, the legs and the trips of
        the groups they meet (the affected component), remembered for those."""
        tokens = self._group_tokens()
        memo_key = (
            self._drivers_token(),
            tuple(tokens[i] for i in sorted(touched)),
            tuple((leg.window, leg.passengers) for leg in legs),
        )
        answer = _leg_answers.get(memo_key)
        if answer is None:
            answer = self.carries(legs)
            _leg_answers[memo_key] = answer
            if len(_leg_answers) > LEG_ANSWERS_KEPT:
                _leg_answers.popitem(last=False)
        else:
            _leg_answers.move_to_end(memo_key)
        return answer

    def _drivers_token(self) -> int:
        if self._drivers_tok is None:
            self._drivers_tok = _token(tuple(self.drivers))
        return self._drivers_tok

    def _group_tokens(self) -> list[int]:
        if self._group_toks is None:
            self._group_toks = [_token(tuple(group)) for group in self._groups()]
        return self._group_toks

    def _groups(self) -> list[list[OpenTrip]]:
        if self._components is None:
            self._components = components(self.waiting)
        return self._components

    def _group_spans(self) -> list[tuple[datetime, datetime]]:
        """Each group's first start and last end, in order (they never overlap)."""
        return [
            (group[0].window.start, max(t.window.end for t in group)) for group in self._groups()
        ]

    @property
    def _ids(self) -> set[Hashable]:
        return {t.key for t in self.waiting}

    def given(self, trip_id: int, driver_id: int) -> Fleet:
        """This fleet after `trip_id` went to `driver_id` (the dispatcher's tentative).

        The day's assignment is carried over when it still holds (none of the driver's
        other trips in it overlaps this one), so a pass solves the day once, not once
        per trip."""
        window = next((t.window for t in self.waiting if t.key == trip_id), None)
        drivers = self.drivers
        if window is not None:
            drivers = [d.without([window]) if d.id == driver_id else d for d in drivers]
        after = Fleet(drivers, [t for t in self.waiting if t.key != trip_id])
        if (
            self._solved
            and self._baseline is not None
            and window is not None
            and not self._clashing(trip_id, driver_id, window)
        ):
            after._baseline = {k: v for k, v in self._baseline.items() if k != trip_id}
            after._solved = True
        return after

    def strands(self, trip_id: int, driver_id: int) -> bool:
        """Giving the waiting trip `trip_id` to `driver_id` would leave another waiting trip
        with no driver, where some other choice would not (the dispatcher's `needed_later`).
        Only the trips chained to it by overlapping windows can be affected."""
        trip = next((t for t in self.waiting if t.key == trip_id), None)
        if trip is None:
            return False
        if self.baseline() is not None and not self._clashing(trip_id, driver_id, trip.window):
            return False  # the day's assignment of the other trips stands beside it
        group = next(g for g in components(self.waiting) if trip in g)
        others = [t for t in group if t.key != trip_id]
        if not others or assign(self.drivers, others) is None:
            return False  # nothing else waits then, or it waits whatever is done now
        return assign(self.given(trip_id, driver_id).drivers, others) is None

    def _clashing(self, trip_id: int, driver_id: int, window: Interval) -> bool:
        """The day's assignment gives `driver_id` another trip overlapping `window`."""
        return any(
            t.key != trip_id and t.window.overlaps(window) for t in self._held().get(driver_id, ())
        )

    def _held(self) -> dict[int, list[OpenTrip]]:
        """The baseline assignment as each driver's trips (computed once)."""
        if self._by_driver is None:
            self._by_driver = {}
            baseline = self.baseline() or {}
            for trip in self.waiting:
                if trip.key in baseline:
                    self._by_driver.setdefault(baseline[trip.key], []).append(trip)
        return self._by_driver

    def _fits_beside(self, extra: list[OpenTrip]) -> bool:
        """Quick sufficient check: the new legs slot into drivers left free by an
        assignment of the waiting trips, without moving any of them."""
        held = self._held()
        placed: dict[int, list[Interval]] = {}
        for trip in extra:
            driver = next(
                (
                    d
                    for d in self.drivers
                    if d.can_take(trip)
                    and not _meets(trip.window, held.get(d.id, ()), placed.get(d.id, ()))
                ),
                None,
            )
            if driver is None:
                return False
            placed.setdefault(driver.id, []).append(trip.window)
        return True

    def _room_by_moving(self, extra: list[OpenTrip]) -> bool:
        """Quick sufficient check: each new leg goes to a driver whose clashing trips of
        the baseline each move to another driver free for them (one move deep)."""
        held = {d: list(trips) for d, trips in self._held().items()}
        return all(self._make_room(leg, held) for leg in extra)

    def _make_room(self, leg: OpenTrip, held: dict[int, list[OpenTrip]]) -> bool:
        for driver in self.drivers:
            if not driver.can_take(leg):
                continue
            clashing = [t for t in held.get(driver.id, ()) if t.window.overlaps(leg.window)]
            moves: dict[Hashable, int] = {}
            for trip in clashing:
                target = next(
                    (
                        d
                        for d in self.drivers
                        if d.id != driver.id
                        and d.id not in moves.values()
                        and d.can_take(trip)
                        and not any(t.window.overlaps(trip.window) for t in held.get(d.id, ()))
                    ),
                    None,
                )
                if target is None:
                    break
                moves[trip.key] = target.id
            else:
                for trip in clashing:
                    held[driver.id].remove(trip)
                    held.setdefault(moves[trip.key], []).append(trip)
                held.setdefault(driver.id, []).append(leg)
                return True
        return False

    def _enough_drivers_at_every_moment(self, extra: list[OpenTrip]) -> bool:
        """Necessary: at each moment a new leg is under way, the trips under way then can
        go to different drivers who could take them. False proves no assignment exists.

        The day's assignment already matches the waiting trips under way at any moment
        to different drivers (they overlap there, so it gives them different drivers),
        so only the new legs are augmented from it (`extends_matching`)."""
        moments = {leg.window.start for leg in extra}
        moments |= {
            t.window.start
            for t in self.waiting
            if any(leg.window.start <= t.window.start < leg.window.end for leg in extra)
        }
        baseline = self.baseline()
        for moment in moments:
            under_way = [t for t in self.waiting if t.window.start <= moment < t.window.end]
            owner: dict[Hashable, int] = {}
            if baseline is not None:
                owner = {baseline[t.key]: k for k, t in enumerate(under_way)}
            under_way += [t for t in extra if t.window.start <= moment < t.window.end]
            if not extends_matching([self._able(t) for t in under_way], owner):
                return False
        return True

    def _chained(self, extra: list[OpenTrip]) -> bool:
        """Quick sufficient check, deeper than `_room_by_moving`: each new leg goes to a
        driver free for it at the end of a chain of moves, each move giving a trip to a
        driver whose only clashing trip moves on in turn (an augmenting path over the
        day's assignment, found breadth first, no driver in it twice)."""
        held = {d: list(trips) for d, trips in self._held().items()}
        return all(self._chain(leg, held) for leg in extra)

    def _chain(self, leg: OpenTrip, held: dict[int, list[OpenTrip]]) -> bool:
        # Each node: a trip to place, the node whose trip takes its place, the driver
        # holding it now (None for the new leg, which nobody holds).
        nodes: list[tuple[OpenTrip, int, int | None]] = [(leg, -1, None)]
        used: set[int] = set()
        k = 0
        while k < len(nodes):
            trip = nodes[k][0]
            for driver in self._ordered(trip):
                if driver.id in used:
                    continue
                clashing = [t for t in held.get(driver.id, ()) if t.window.overlaps(trip.window)]
                if not clashing:
                    held.setdefault(driver.id, []).append(trip)
                    while k > 0:  # each trip of the chain into its successor's place
                        moved, parent, holder = nodes[k]
                        assert holder is not None
                        held[holder].remove(moved)
                        held[holder].append(nodes[parent][0])
                        k = parent
                    return True
                if len(clashing) == 1:
                    used.add(driver.id)
                    nodes.append((clashing[0], k, driver.id))
            k += 1
        return False

    def _repaired(
        self, extra: list[OpenTrip], margins: Sequence[timedelta] = REPAIR_MARGINS
    ) -> bool:
        """Quick sufficient check: the day's assignment kept outside a span of time around
        the new legs, the trips within it assigned afresh with them (an exact search, but
        quickly: `fleet.assign_quickly`, the drivers' time outside the span taken by the
        trips they keep). Wider spans in turn."""
        held = self._held()
        first = min(t.window.start for t in extra)
        last = max(t.window.end for t in extra)
        for margin in margins:
            span = Interval(first - margin, last + margin)
            inside = [t for t in self.waiting if t.window.overlaps(span)]
            if len(inside) == len(self.waiting):
                return False  # no smaller than the whole search, which follows
            keys = {t.key for t in inside}
            drivers = [
                d.without([t.window for t in held.get(d.id, ()) if t.key not in keys])
                for d in self.drivers
            ]
            if assign_quickly(drivers, [*inside, *extra], hint=self._baseline) is not None:
                return True
        return False

    def _ordered(self, trip: OpenTrip) -> list[Driver]:
        found = self._ordered_able.get(trip)
        if found is None:
            found = self._ordered_able[trip] = eligible_drivers(self.drivers, trip)
        return found

    def _able(self, trip: OpenTrip) -> frozenset[Hashable]:
        # Keyed by the whole trip: new legs of different starts share a key.
        found = self._eligible.get(trip)
        if found is None:
            found = frozenset(d.id for d in self._ordered(trip))
            self._eligible[trip] = found
        return found

    def _affected(self, extra: list[OpenTrip]) -> list[OpenTrip]:
        """The new legs and the waiting trips chained to them by overlapping windows:
        only those can be changed by adding the legs."""
        if not extra:
            return self.waiting
        groups = components([*self.waiting, *extra])
        keys = {t.key for t in extra}
        return [t for g in groups if any(t.key in keys for t in g) for t in g]


def _touching(spans: list[tuple[datetime, datetime]], window: Interval) -> frozenset[int]:
    """The indexes of the groups whose span overlaps `window` (spans sorted, disjoint)."""
    first = bisect_right(spans, window.start, key=lambda s: s[1])
    touched = set()
    for i in range(first, len(spans)):
        if spans[i][0] >= window.end:
            break
        touched.add(i)
    return frozenset(touched)


# Availability's answers kept per process (see Fleet.carried), least recently used dropped.
LEG_ANSWERS_KEPT = 8192
# Key: the drivers' token, the groups' tokens, each leg's window and passengers.
_leg_answers: OrderedDict[tuple[int, tuple[int, ...], tuple[tuple[Interval, int], ...]], bool] = (
    OrderedDict()
)
# Drivers and groups of trips seen lately, each under a number never reused, so that an
# answer's key compares small numbers instead of the whole of them on every lookup.
TOKENS_KEPT = 4096
_tokens: OrderedDict[tuple[Driver, ...] | tuple[OpenTrip, ...], int] = OrderedDict()
_token_numbers = itertools.count()


def _token(content: tuple[Driver, ...] | tuple[OpenTrip, ...]) -> int:
    """The number `content` is known by (equal contents, the same number while kept)."""
    number = _tokens.get(content)
    if number is None:
        number = _tokens[content] = next(_token_numbers)
        if len(_tokens) > TOKENS_KEPT:
            _tokens.popitem(last=False)
    else:
        _tokens.move_to_end(content)
    return number


def days_of(span: Interval) -> list[date]:
    first, last = local_date(span.start), local_date(span.end - timedelta(microseconds=1))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def lock_days(days: Iterable[date]) -> None:
    """Serialise capacity decisions about these days until the transaction ends.

    Taken after the therapist's timetable lock and in date order, by everyone who adds
    trips or gives them to drivers, so two desks booking the last free driver queue up
    and the second sees the first's trips (never a deadlock: one order for everyone)."""
    if connection.vendor != "postgresql":
        return  # SQLite's IMMEDIATE transactions already serialise every writer
    with connection.cursor() as cursor:
        for day in sorted(set(days)):
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [DRIVER_CAPACITY, day.toordinal()]
            )


def load_fleet(
    days: Sequence[date], *, now: datetime, excluding_appointment: int | None = None
) -> Fleet:
    """The drivers' free time and the waiting trips on `days` (whole local days).

    `excluding_appointment`: an appointment being moved; its trips are about to be
    cancelled and planned anew, so they hold nothing."""
    start, _ = local_day_bounds(min(days))
    _, end = local_day_bounds(max(days))
    start = max(start, now)
    profiles, trips = fleet_rows(start, end, excluding_appointment)
    ids = [user_id for user_id, _, _ in profiles]
    working: dict[int, list[Interval]] = {i: [] for i in ids}
    for day in days:
        for staff_id, schedule in day_schedules(ids, day).items():
            working[staff_id].extend(schedule.working)
    held: dict[int, list[Interval]] = {}
    waiting = []
    for trip_id, driver_id, status, w_start, w_end, passengers in trips:
        if status == TripStatus.QUEUED:
            waiting.append(OpenTrip(trip_id, Interval(w_start, w_end), passengers))
        elif driver_id is not None:
            held.setdefault(driver_id, []).append(Interval(w_start, w_end))
    drivers = [
        Driver(user_id, tuple(working[user_id]), seats=seats, car=vehicle == Vehicle.CAR).without(
            held.get(user_id, ())
        )
        for user_id, seats, vehicle in profiles
    ]
    return Fleet(drivers, waiting)


def refusal(
    legs: Sequence[NewLeg], *, now: datetime, excluding_appointment: int | None = None
) -> Conflict | None:
    """Why the drivers cannot carry `legs` beside every trip already booked (None: they
    can). Read inside the transaction that holds `lock_days` for the legs' days."""
    days = sorted({d for leg in legs for d in days_of(leg.window)})
    fleet = load_fleet(days, now=now, excluding_appointment=excluding_appointment)
    return fleet.refusal(legs)


def check_carriable(
    legs: Sequence[NewLeg], *, now: datetime, excluding_appointment: int | None = None
) -> None:
    """Lock the legs' days and raise the Conflict when no driver can carry them."""
    lock_days(d for leg in legs for d in days_of(leg.window))
    problem = refusal(legs, now=now, excluding_appointment=excluding_appointment)
    if problem is not None:
        raise problem


def carried_starts(
    starts: Sequence[datetime],
    *,
    duration: timedelta,
    buffer: timedelta,
    travel: timedelta,
    now: datetime,
    excluding_appointment: int | None = None,
) -> set[datetime]:
    """Those of `starts` whose two legs the drivers can carry (availability's question,
    asked of one fleet read once for the day)."""
    if not starts:
        return set()
    legs = {
        start: legs_for(start, start + duration, buffer=buffer, travel=travel) for start in starts
    }
    days = sorted({d for pair in legs.values() for leg in pair for d in days_of(leg.window)})
    fleet = load_fleet(days, now=now, excluding_appointment=excluding_appointment)
    return fleet.carried(legs)


def _meets(window: Interval, held: Iterable[OpenTrip], placed: Iterable[Interval]) -> bool:
    return any(t.window.overlaps(window) for t in held) or any(w.overlaps(window) for w in placed)


# Conflict reasons (the API's `reason`), so the desk can tell them apart.
NO_DRIVER = "no_driver"
