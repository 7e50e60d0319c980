"""Concurrent bookings and trip assignments against real PostgreSQL.

Real threads, each with its own connection, start together behind a barrier. What is
asserted is the outcome and the database invariant (no overlapping active rows), never
timings: the exclusion constraints, not the pre-checks, are the guarantee (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling.errors import Conflict
from scheduling.models import Appointment, Client, Service, StreamEvent, Transition, Trip, User
from scheduling.services.appointments import create_appointment
from scheduling.services.trips import assign_trip
from tests import factories
from tests.races import (
    Racer,
    hold,
    overlapping_appointments,
    overlapping_trips,
    release_when_blocked,
    run_rounds,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 30
ROUNDS = 20


def split(outcomes: list[object], kind: type) -> tuple[list, list[Conflict], list[object]]:
    """(successes, conflicts, anything else) — anything else is a failure."""
    wins = [o for o in outcomes if isinstance(o, kind)]
    conflicts = [o for o in outcomes if type(o) is Conflict]
    other = [o for o in outcomes if not isinstance(o, kind) and type(o) is not Conflict]
    return wins, conflicts, other


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def future_day(offset: int) -> date:
    # From the day after tomorrow on: far enough that `now` never passes a start.
    return timezone.localdate() + timedelta(days=2 + offset)


INSERT_APPOINTMENT = 'INSERT INTO "scheduling_appointment"'
UPDATE_TRIP = 'UPDATE "scheduling_trip"'


@pytest.fixture
def book(
    desk: User, service: Service, therapist: User, client_record: Client
) -> Callable[..., Appointment]:
    """Book through the service."""

    def book(start: datetime, *, with_therapist: User = therapist, **fields) -> Appointment:
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=with_therapist.pk,
            start=start,
            **fields,
        )

    return book


@pytest.fixture
def insert(service: Service, therapist: User, client_record: Client) -> Callable[..., Appointment]:
    """Write an appointment row straight through the ORM: no service, no timetable lock,
    no pre-check. Only the database's constraints stand in its way. Its busy range is
    worked out by the model (travel 0 unless told, as for rows booked before travel)."""

    def insert(
        start: datetime,
        *,
        with_therapist: User = therapist,
        status: str = "pending",
        travel_minutes: int = 0,
    ) -> Appointment:
        end = start + service.duration
        return Appointment.objects.create(
            client=client_record,
            service=service,
            therapist=with_therapist,
            start=start,
            end=end,
            blocked_until=end + service.buffer,
            travel_minutes=travel_minutes,
            status=status,
            price=Decimal("1200.00"),
            response_deadline=start,
        )

    return insert


@pytest.fixture
def queued_dropoffs(book: Callable[..., Appointment], service: Service) -> Callable[..., list]:
    """Drop-off trips of bookings at 10:00 + each of `minutes`, one therapist each (and a
    driver each, so that capacity lets them all be booked)."""

    def make(*minutes: int) -> list[Trip]:
        day = future_day(0)
        for _ in minutes:
            factories.driver()
        return [
            book(
                local(day, 10, m),
                with_therapist=factories.therapist(service),
                needs_transport=True,
            ).trips.get(leg="dropoff")
            for m in minutes
        ]

    return make


def assign_directly(trip: Trip, driver: User) -> Trip:
    """Assign through the ORM: no service, no timetable lock, no pre-check."""
    Trip.objects.filter(pk=trip.pk).update(status="assigned", driver=driver)
    return trip


# --- appointments -------------------------------------------------------------------------


def test_concurrent_overlapping_bookings_one_wins_rest_conflict(
    book: Callable[..., Appointment],
) -> None:
    # Starts 0/15/30/45 min after 10:00: with 60 min + 15 min buffer every pair overlaps,
    # but no two requests are identical. Each round on its own day, so rounds are apart.
    calls = [
        [partial(book, local(future_day(r), 10, 15 * (i % 4))) for i in range(THREADS)]
        for r in range(ROUNDS)
    ]
    outcomes = run_rounds(calls)

    for r, row in enumerate(outcomes):
        wins, conflicts, other = split(row, Appointment)
        assert not other, f"round {r}: not a Conflict: {other!r}"
        assert len(wins) == 1, f"round {r}: {len(wins)} bookings succeeded"
        assert len(conflicts) == THREADS - 1
        # However they were refused, the desk is told which appointment is in the way.
        assert all([c.appointment_id for c in e.conflicts] == [wins[0].pk] for e in conflicts)

    assert overlapping_appointments() == []
    # The losers left nothing behind: one row, one log entry, one event per round.
    assert Appointment.objects.count() == ROUNDS
    assert Transition.objects.filter(appointment__isnull=False).count() == ROUNDS
    assert StreamEvent.objects.count() == ROUNDS


def test_exclusion_constraint_alone_refuses_overlapping_appointments(
    insert: Callable[..., Appointment], service: Service
) -> None:
    day = future_day(0)
    insert(local(day, 10))  # blocks 10:00–11:15

    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        insert(local(day, 11))  # inside the first one's buffer
    assert refused.value.__cause__.diag.constraint_name == "appt_therapist_no_overlap"

    # The constraint's edges: half-open ranges, per therapist, active statuses only.
    insert(local(day, 11, 15))  # starts exactly when the first stops blocking
    insert(local(day, 10), with_therapist=factories.therapist(service))
    insert(local(day, 10, 30), status="cancelled")
    # With travel the constraint guards the whole busy range: 14:00 with 45 minutes each
    # way holds 13:15-16:00, so 16:30 leaving at 15:45 is refused, 16:45 is not.
    insert(local(day, 14), travel_minutes=45)
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        insert(local(day, 16, 30), travel_minutes=45)
    assert refused.value.__cause__.diag.constraint_name == "appt_therapist_no_overlap"
    insert(local(day, 16, 45), travel_minutes=45)
    assert overlapping_appointments() == []


def test_booking_past_the_precheck_is_refused_by_the_constraint_as_conflict(
    book: Callable[..., Appointment], insert: Callable[..., Appointment]
) -> None:
    """The holder's row is uncommitted, so the booking's pre-check cannot see it; the
    booking's INSERT waits on the exclusion constraint and, once the holder commits, fails
    there. The service must turn that into the same Conflict as the pre-check's.

    The holder writes through the ORM because a holder booking through the service takes
    the therapist's timetable lock, and then the rival waits before its pre-check (next
    test) and never reaches the constraint. Any writer outside the service still can.
    """
    day = future_day(0)
    holder = hold(partial(insert, local(day, 10)), Appointment)
    rival = Racer(partial(book, local(day, 10, 30)))
    release_when_blocked(holder, [rival], INSERT_APPOINTMENT)

    assert type(rival.outcome) is Conflict, f"expected Conflict, got {rival.outcome!r}"
    assert [c.appointment_id for c in rival.outcome.conflicts] == [holder.outcome.pk]
    assert list(Appointment.objects.values_list("pk", flat=True)) == [holder.outcome.pk]


def test_booking_queued_behind_an_open_booking_gets_conflict_naming_it(
    book: Callable[..., Appointment],
) -> None:
    day = future_day(0)
    holder = hold(partial(book, local(day, 10)), Appointment)
    rival = Racer(partial(book, local(day, 10, 30)))
    release_when_blocked(holder, [rival])

    assert type(rival.outcome) is Conflict, f"expected Conflict, got {rival.outcome!r}"
    assert [c.appointment_id for c in rival.outcome.conflicts] == [holder.outcome.pk]
    assert list(Appointment.objects.values_list("pk", flat=True)) == [holder.outcome.pk]


def test_bookings_queued_behind_a_rolled_back_booking_one_wins_other_conflicts(
    book: Callable[..., Appointment],
) -> None:
    """The holder's transaction fails after its INSERT (anything later: log, trips,
    events). Two rivals were waiting on it. Had both reached the exclusion check, each
    would now find the other's uncommitted row and wait on it: a deadlock PostgreSQL
    breaks by killing one with SQLSTATE 40P01, an OperationalError the service does not
    translate. The therapist's timetable lock (services.common.lock_timetable) queues
    them before the pre-check instead, so one wins and the other gets a plain Conflict."""
    day = future_day(0)
    holder = hold(partial(book, local(day, 10)), Appointment, commit=False)
    rivals = [Racer(partial(book, local(day, 10, m))) for m in (15, 30)]
    release_when_blocked(holder, rivals)

    wins, conflicts, other = split([r.outcome for r in rivals], Appointment)
    assert not other, f"not a Conflict: {other!r}"
    assert len(wins) == 1 and len(conflicts) == 1
    assert [c.appointment_id for c in conflicts[0].conflicts] == [wins[0].pk]
    assert list(Appointment.objects.values_list("pk", flat=True)) == [wins[0].pk]


# --- trips --------------------------------------------------------------------------------


def test_concurrent_assignments_to_one_driver_one_wins_rest_conflict(
    book: Callable[..., Appointment], service: Service
) -> None:
    # THREADS therapists each book once a day at 10:00, 10:15 or 10:30 with transport. A
    # day's drop-off legs ([start - 45 min, start)) all overlap each other, and so do its
    # pick-up legs ([end + buffer, end + buffer + 45 min)); drop-offs end by 10:30,
    # pick-ups begin at 11:15. So each day gives two rounds of THREADS mutually
    # overlapping queued trips, and no trip of one round overlaps one of another: the
    # driver keeps every round's winner. THREADS drivers work, so capacity lets all be
    # booked; the first of them is the one every assignment asks for.
    therapists = [factories.therapist(service) for _ in range(THREADS)]
    driver, *_ = [factories.driver() for _ in range(THREADS)]
    rounds: list[list[Trip]] = []
    for d in range(ROUNDS // 2):
        day = future_day(d)
        appointments = [
            book(local(day, 10, 15 * (i % 3)), with_therapist=t, needs_transport=True)
            for i, t in enumerate(therapists)
        ]
        for leg in ("dropoff", "pickup"):
            rounds.append([a.trips.get(leg=leg) for a in appointments])

    calls = [[partial(assign_trip, trip_id=t.pk, driver_id=driver.pk) for t in r] for r in rounds]
    outcomes = run_rounds(calls)

    for r, row in enumerate(outcomes):
        wins, conflicts, other = split(row, Trip)
        assert not other, f"round {r}: not a Conflict: {other!r}"
        assert len(wins) == 1, f"round {r}: {len(wins)} assignments succeeded"
        assert len(conflicts) == THREADS - 1
        assert all([c.trip_id for c in e.conflicts] == [wins[0].pk] for e in conflicts)

    assert overlapping_trips() == []
    assert Trip.objects.busy().filter(driver=driver).count() == ROUNDS
    assert Trip.objects.filter(status="queued").count() == ROUNDS * (THREADS - 1)
    assert Transition.objects.filter(action="assign").count() == ROUNDS


def test_exclusion_constraint_alone_refuses_overlapping_trips(
    queued_dropoffs: Callable[..., list[Trip]],
) -> None:
    driver = factories.driver()
    first, second, third = queued_dropoffs(0, 15, 45)  # windows from 9:15, 9:30, 10:00
    assign_directly(first, driver)

    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        assign_directly(second, driver)
    assert refused.value.__cause__.diag.constraint_name == "trip_driver_no_overlap"

    # Half-open windows: the next trip may start the moment the first one ends.
    assign_directly(third, driver)
    assert overlapping_trips() == []


def test_assignment_past_the_precheck_is_refused_by_the_constraint_as_conflict(
    queued_dropoffs: Callable[..., list[Trip]],
) -> None:
    """As for bookings: an uncommitted overlapping assignment written outside the service
    is invisible to the pre-check; the constraint refuses, the service says Conflict."""
    driver = factories.driver()
    first, second = queued_dropoffs(0, 15)
    holder = hold(partial(assign_directly, first, driver), Trip)
    rival = Racer(partial(assign_trip, trip_id=second.pk, driver_id=driver.pk))
    release_when_blocked(holder, [rival], UPDATE_TRIP)

    assert type(rival.outcome) is Conflict, f"expected Conflict, got {rival.outcome!r}"
    assert [c.trip_id for c in rival.outcome.conflicts] == [first.pk]
    assert list(Trip.objects.busy().values_list("pk", flat=True)) == [first.pk]
    second.refresh_from_db()
    assert (second.status, second.driver_id) == ("queued", None)


def test_assignment_queued_behind_an_open_assignment_gets_conflict_naming_it(
    queued_dropoffs: Callable[..., list[Trip]],
) -> None:
    driver = factories.driver()
    first, second = queued_dropoffs(0, 15)
    holder = hold(partial(assign_trip, trip_id=first.pk, driver_id=driver.pk), Trip)
    rival = Racer(partial(assign_trip, trip_id=second.pk, driver_id=driver.pk))
    release_when_blocked(holder, [rival])

    assert type(rival.outcome) is Conflict, f"expected Conflict, got {rival.outcome!r}"
    assert [c.trip_id for c in rival.outcome.conflicts] == [first.pk]
    assert list(Trip.objects.busy().values_list("pk", flat=True)) == [first.pk]


def test_assignments_queued_behind_a_rolled_back_assignment_one_wins_other_conflicts(
    queued_dropoffs: Callable[..., list[Trip]],
) -> None:
    """The trip version of the rolled-back holder: without the driver's timetable lock
    the two rivals' UPDATEs deadlock on the exclusion check (40P01)."""
    driver = factories.driver()
    first, *others = queued_dropoffs(0, 15, 30)
    holder = hold(partial(assign_trip, trip_id=first.pk, driver_id=driver.pk), Trip, commit=False)
    rivals = [Racer(partial(assign_trip, trip_id=t.pk, driver_id=driver.pk)) for t in others]
    release_when_blocked(holder, rivals)

    wins, conflicts, other = split([r.outcome for r in rivals], Trip)
    assert not other, f"not a Conflict: {other!r}"
    assert len(wins) == 1 and len(conflicts) == 1
    assert [c.trip_id for c in conflicts[0].conflicts] == [wins[0].pk]
    assert list(Trip.objects.busy().values_list("pk", flat=True)) == [wins[0].pk]
