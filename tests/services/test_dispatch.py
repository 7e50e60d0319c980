"""FIFO dispatch (scheduling/services/dispatch.py), in process.

The real-worker tests are in test_worker_dispatch.py; these pin the rules: who waits
longest, which trip goes first, what makes a driver ineligible, what is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from functools import partial

import pytest
from django.db import transaction

from scheduling.errors import InvalidTransition, NotFound, NotPermitted, ValidationFailed
from scheduling.models import (
    DispatchDecision,
    DriverProfile,
    StreamEvent,
    Transition,
    Trip,
    User,
    WorkingHours,
)
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.dispatch import TRIP_WAITING, request_pickup, run_pass
from scheduling.services.trips import act_on_trip, assign_trip, set_shift
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_shift(tomorrow_at) -> Callable[..., User]:
    """A driver who went on shift at `since` (tomorrow HH:MM, or an aware datetime)."""

    def make(since: datetime, vehicle: str = "motorcycle", seats: int = 1, **fields) -> User:
        driver = factories.driver(vehicle=vehicle, seats=seats, **fields)
        set_shift(driver=driver, on_shift=True, now=since)
        return driver

    return make


def assigned(trip: Trip) -> int | None:
    trip.refresh_from_db()
    return trip.driver_id if trip.status == "assigned" else None


def last_decision(trip: Trip) -> DispatchDecision:
    return DispatchDecision.objects.filter(trip=trip).latest("id")


# --- the FIFO rule ------------------------------------------------------------------------


def test_longest_waiting_driver_gets_the_earliest_trip(trip_at, on_shift, tomorrow_at):
    later = on_shift(tomorrow_at(7, 30))
    first = on_shift(tomorrow_at(7))
    early, late = trip_at(10), trip_at(10, 30)

    decisions = run_pass(now=tomorrow_at(9))

    assert (assigned(early), assigned(late)) == (first.pk, later.pk)
    assert [(d.trip_id, d.driver_id, d.outcome) for d in decisions] == [
        (early.pk, first.pk, "assigned"),
        (late.pk, later.pk, "assigned"),
    ]
    # The queue as it stood, as far as it was read, and its length: the first driver had
    # left it by the second decision.
    assert [(e["driver"], d.queue_length) for d in decisions for e in d.queue] == [
        (first.pk, 2),
        (later.pk, 1),
    ]
    assert datetime.fromisoformat(decisions[0].queue[0]["since"]) == tomorrow_at(7)
    # Assigned drivers leave the queue.
    assert not DriverProfile.objects.filter(available_since__isnull=False).exists()


def test_trips_are_served_by_window_then_creation(trip_at, on_shift, tomorrow_at):
    drivers = [on_shift(tomorrow_at(7, m)) for m in (0, 10, 20)]  # hired before the bookings
    created_first = trip_at(10, 30)
    same_window_later = trip_at(10, 30)
    earliest_window = trip_at(10)

    run_pass(now=tomorrow_at(9))

    assert [assigned(t) for t in (earliest_window, created_first, same_window_later)] == [
        d.pk for d in drivers
    ]


def test_driver_back_from_a_trip_rejoins_at_the_back(trip_at, on_shift, tomorrow_at):
    regular = on_shift(tomorrow_at(7))
    first = trip_at(10)
    run_pass(now=tomorrow_at(9))
    for action in ("depart", "arrive", "complete"):
        act_on_trip(actor=regular, trip_id=first.pk, action=action, now=tomorrow_at(9, 40))
    newcomer = on_shift(tomorrow_at(9, 30))  # joined before the regular came back
    second = trip_at(11)

    run_pass(now=tomorrow_at(10))

    assert assigned(second) == newcomer.pk


def test_vehicle_must_fit_the_passengers(trip_at, on_shift, tomorrow_at):
    motorcycle = on_shift(tomorrow_at(7))
    small_car = on_shift(tomorrow_at(7, 10), vehicle="car", seats=1)
    van = on_shift(tomorrow_at(7, 20), vehicle="car", seats=3)
    pair = trip_at(10, passengers=2)

    (decision,) = run_pass(now=tomorrow_at(9))

    assert assigned(pair) == van.pk
    assert decision.skipped == [
        {"driver": motorcycle.pk, "reason": "vehicle"},
        {"driver": small_car.pk, "reason": "vehicle"},
    ]


def test_a_driver_busy_for_the_window_is_skipped(trip_at, on_shift, tomorrow_at):
    busy = on_shift(tomorrow_at(7))
    free = on_shift(tomorrow_at(7, 10))
    earlier = trip_at(10)
    assign_trip(trip_id=earlier.pk, driver_id=busy.pk)
    # Back in the queue while still holding a trip: what a race (or a manager's edit)
    # could leave behind. Only the window decides.
    DriverProfile.objects.filter(user=busy).update(available_since=tomorrow_at(7))
    overlapping = trip_at(10, 15)

    (decision,) = run_pass(now=tomorrow_at(9))

    assert assigned(overlapping) == free.pk
    assert decision.skipped == [{"driver": busy.pk, "reason": "busy"}]


def test_a_driver_needed_later_is_passed_over_so_no_booked_trip_is_stranded(
    trip_at, on_shift, tomorrow_at
):
    """Plain FIFO would give the 09:15 drop-off to Lena, waiting longest, and strand the
    09:45-10:30 one: Eli, next in the queue, stops driving at 10:00. So Lena is passed
    over (`needed_later`), Eli takes the first and Lena the second."""
    lena = on_shift(tomorrow_at(7), username="lena")
    eli = on_shift(tomorrow_at(7, 10), username="eli")
    WorkingHours.objects.filter(staff=eli).delete()
    factories.add_hours(eli, time(8), time(10))
    factories.add_hours(eli, time(11), time(13))  # back for the pick-ups
    first, second = trip_at(10), trip_at(10, 30)  # drop-offs 09:15-10:00 and 09:45-10:30

    decisions = run_pass(now=tomorrow_at(9))

    assert (assigned(first), assigned(second)) == (eli.pk, lena.pk)
    by_trip = {d.trip_id: d for d in decisions}
    assert by_trip[first.pk].skipped == [{"driver": lena.pk, "reason": "needed_later"}]
    assert [e["driver"] for e in by_trip[first.pk].queue] == [lena.pk, eli.pk]
    assert by_trip[second.pk].skipped == []


def test_a_driver_needed_later_still_takes_the_trip_when_nobody_else_can(
    trip_at, on_shift, tomorrow_at
):
    """FIFO gives way only to someone who can take the trip: when the one waiting longest
    is the only driver for it, they get it, though a later trip then waits."""
    lena = on_shift(tomorrow_at(7), username="lena")
    first = trip_at(10)
    # Booked while a second driver still worked then; he has since been let go.
    stand_in = factories.driver(username="stand-in")
    second = trip_at(10, 30)
    User.objects.filter(pk=stand_in.pk).update(is_active=False)

    decisions = run_pass(now=tomorrow_at(9))

    assert (assigned(first), assigned(second)) == (lena.pk, None)
    assert decisions[0].skipped == []
    assert decisions[1].outcome == "no_driver"


def test_no_eligible_driver_leaves_the_trip_queued_and_tells_the_desk(
    trip_at, on_shift, tomorrow_at
):
    motorcycle = on_shift(tomorrow_at(7))
    pair = trip_at(10, passengers=2)

    (decision,) = run_pass(now=tomorrow_at(9))

    assert assigned(pair) is None
    assert (decision.outcome, decision.driver_id) == ("no_driver", None)
    assert decision.skipped == [{"driver": motorcycle.pk, "reason": "vehicle"}]
    event = StreamEvent.objects.get(type=TRIP_WAITING)
    assert (event.trip_id, event.data["skipped"]) == (pair.pk, decision.skipped)
    assert not event.recipients.exists()  # the desk stream only

    # Nothing changed: the next sweep records nothing and raises no second alert.
    assert run_pass(now=tomorrow_at(9, 1)) == []
    assert StreamEvent.objects.filter(type=TRIP_WAITING).count() == 1

    car = on_shift(tomorrow_at(9, 5), vehicle="car", seats=4)
    (decision,) = run_pass(now=tomorrow_at(9, 6))
    assert assigned(pair) == car.pk
    assert decision.skipped == [{"driver": motorcycle.pk, "reason": "vehicle"}]


def test_empty_queue_is_recorded_once(trip_at, tomorrow_at):
    trip = trip_at(10)
    (decision,) = run_pass(now=tomorrow_at(9))
    assert (decision.outcome, decision.queue, decision.skipped) == ("no_driver", [], [])
    assert run_pass(now=tomorrow_at(9, 1)) == []
    assert DispatchDecision.objects.filter(trip=trip).count() == 1


def test_off_shift_and_inactive_drivers_are_not_in_the_queue(trip_at, on_shift, tomorrow_at):
    gone_home = on_shift(tomorrow_at(7))
    set_shift(driver=gone_home, on_shift=False)
    deactivated = on_shift(tomorrow_at(7, 5))
    User.objects.filter(pk=deactivated.pk).update(is_active=False)
    present = on_shift(tomorrow_at(7, 10))
    trip = trip_at(10)

    (decision,) = run_pass(now=tomorrow_at(9))

    assert assigned(trip) == present.pk
    assert [e["driver"] for e in decision.queue] == [present.pk]


# --- the horizon and pickups --------------------------------------------------------------


def test_trips_wait_for_the_horizon(trip_at, on_shift, tomorrow_at, settings):
    settings.SCHEDULING = {**settings.SCHEDULING, "DISPATCH_HORIZON_MINUTES": 90}
    driver = on_shift(tomorrow_at(6))
    trip = trip_at(10)  # window from 09:15

    assert run_pass(now=tomorrow_at(7, 44)) == []
    assert not DispatchDecision.objects.exists()
    run_pass(now=tomorrow_at(7, 45))
    assert assigned(trip) == driver.pk


@pytest.mark.django_db(transaction=True)
def test_a_requested_pickup_is_dispatched_at_once(trip_at, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(6))
    pickup = trip_at(10, leg="pickup")  # window from 11:00: far beyond the horizon at 06:00
    therapist = pickup.appointment.therapist
    act_on_appointment(actor=therapist, appointment_id=pickup.appointment_id, action="accept")
    assert run_pass(now=tomorrow_at(6)) == []

    # The request's commit runs a pass (now, hours before the window).
    trip = request_pickup(actor=therapist, appointment_id=pickup.appointment_id)

    assert trip.requested_at is not None
    assert assigned(pickup) == driver.pk
    log = Transition.objects.get(trip=pickup, action="request_pickup")
    assert (log.actor_id, log.from_status, log.to_status) == (therapist.pk, "queued", "queued")


def test_request_pickup_twice_changes_nothing(trip_at, desk):
    pickup = trip_at(10, leg="pickup")
    act_on_appointment(
        actor=pickup.appointment.therapist, appointment_id=pickup.appointment_id, action="accept"
    )
    first = request_pickup(actor=desk, appointment_id=pickup.appointment_id)
    again = request_pickup(actor=desk, appointment_id=pickup.appointment_id)
    assert again.requested_at == first.requested_at
    assert Transition.objects.filter(trip=pickup, action="request_pickup").count() == 1


def test_request_pickup_rules(trip_at, desk, service, client_record, tomorrow_at):
    pickup = trip_at(10, leg="pickup")
    appointment = pickup.appointment
    other_therapist = factories.therapist(service)
    driver = factories.driver()

    with pytest.raises(NotPermitted):
        request_pickup(actor=driver, appointment_id=appointment.pk)
    with pytest.raises(NotPermitted):
        request_pickup(actor=other_therapist, appointment_id=appointment.pk)
    with pytest.raises(NotFound):
        request_pickup(actor=desk, appointment_id=999_999)
    with pytest.raises(InvalidTransition) as pending:
        request_pickup(actor=desk, appointment_id=appointment.pk)
    assert pending.value.current_status == "pending"

    walk_in = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=other_therapist.pk,
        start=tomorrow_at(14),
    )
    act_on_appointment(actor=other_therapist, appointment_id=walk_in.pk, action="accept")
    with pytest.raises(ValidationFailed):
        request_pickup(actor=desk, appointment_id=walk_in.pk)
    assert not Trip.objects.filter(requested_at__isnull=False).exists()


# --- triggers: a pass runs on commit (eager Celery in the embedded default) ---------------
# These commit for real (transaction=True): each service call's commit runs its task.


@pytest.fixture
def wide_horizon(settings):
    """Tomorrow's trips are within the horizon now, whatever the time of day."""
    settings.SCHEDULING = {**settings.SCHEDULING, "DISPATCH_HORIZON_MINUTES": 3 * 24 * 60}


@pytest.mark.django_db(transaction=True)
def test_a_driver_going_on_shift_triggers_a_pass(trip_at, wide_horizon):
    trip = trip_at(10)
    driver = factories.driver()
    set_shift(driver=driver, on_shift=True)
    assert assigned(trip) == driver.pk


@pytest.mark.django_db(transaction=True)
def test_a_new_trip_triggers_a_pass(trip_at, on_shift, tomorrow_at, wide_horizon):
    driver = on_shift(tomorrow_at(6))
    trip = trip_at(10)
    assert assigned(trip) == driver.pk


@pytest.mark.django_db(transaction=True)
def test_a_completed_trip_triggers_a_pass(trip_at, on_shift, tomorrow_at, wide_horizon):
    driver = on_shift(tomorrow_at(6))
    first = trip_at(10)
    assert assigned(first) == driver.pk  # by the booking's pass
    pickup = first.appointment.trips.get(leg="pickup")
    assert assigned(pickup) is None  # the only driver is busy
    for action in ("depart", "arrive", "complete"):
        act_on_trip(actor=driver, trip_id=first.pk, action=action)
    # Back in the queue, the driver gets the next trip: the same appointment's pickup.
    assert assigned(pickup) == driver.pk


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_shift_change_triggers_nothing(
    trip_at, wide_horizon, django_capture_on_commit_callbacks
):
    trip_at(10)
    driver = factories.driver()
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        set_shift(driver=driver, on_shift=True)
        transaction.set_rollback(True)
    assert callbacks == []


def test_pass_query_count_does_not_grow_with_the_queue(
    trip_at, on_shift, tomorrow_at, django_assert_max_num_queries
):
    """Per assignment a fixed number of queries; reading the queue is one query whatever
    its length (drivers passed over cost nothing)."""
    for m in range(20):
        on_shift(tomorrow_at(6, m), vehicle="motorcycle")
    car = on_shift(tomorrow_at(7), vehicle="car", seats=3)
    pair = trip_at(10, passengers=2)
    with django_assert_max_num_queries(30):
        run_pass(now=tomorrow_at(9))
    assert assigned(pair) == car.pk


# --- several passes at once (PostgreSQL, real threads) -------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_assign_each_driver_once_in_fifo_order(
    desk, service, client_record, tomorrow_at
):
    from tests.races import Racer, join_all

    drivers = []
    for m in range(8):
        driver = factories.driver()
        set_shift(driver=driver, on_shift=True, now=tomorrow_at(6, m))
        drivers.append(driver)
    for _ in range(4):  # they work then too (so the twelve bookings stand), but not on shift
        factories.driver()
    trips = []
    for _ in range(12):  # the same drop-off window: served in creation order
        appointment = create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=factories.therapist(service).pk,
            start=tomorrow_at(10),
            needs_transport=True,
        )
        trips.append(appointment.trips.get(leg="dropoff"))

    passes = [Racer(partial(run_pass, now=tomorrow_at(8))) for _ in range(6)]
    for worker in passes:
        worker.start()
    join_all(passes)

    outcomes = [w.outcome for w in passes]
    assert all(isinstance(o, list) for o in outcomes), outcomes
    # The eight earliest trips, in order, to the eight drivers in queue order.
    assert [assigned(t) for t in trips] == [d.pk for d in drivers] + [None] * 4
    assert DispatchDecision.objects.filter(outcome="assigned").count() == 8
    # The waiting four were looked at once, by whichever pass came first after the
    # queue emptied; the other passes found nothing new to say.
    assert DispatchDecision.objects.filter(outcome="no_driver").count() == 4
