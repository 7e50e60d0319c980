"""FIFO dispatch by real Celery workers, against real Redis and PostgreSQL.

The big test drives 500 trips and 30 drivers going on and off shift through several
worker processes and compares every assignment with a reference model: the FIFO rule
written out plainly in Python, fed the same changes in the same order.
"""

from __future__ import annotations

import random
import re

import pytest
from django.db import transaction

from scheduling.models import DispatchDecision, DriverProfile, StreamEvent, Trip, User
from scheduling.services.dispatch import TRIP_WAITING
from scheduling.services.trips import act_on_trip, set_shift
from scheduling.states import BUSY_TRIP_STATUSES
from tests import factories
from tests.races import overlapping_trips
from tests.worker.conftest import HORIZON_MINUTES, Driver, Model
from tests.worker_support import (
    Worker,
    bookings,
    needs_worker,
    producing_to,
    purge,
    settle,
    wait_until,
    workers,
)

pytestmark = needs_worker

DISPATCH_ENV = {"DISPATCH_HORIZON_MINUTES": str(HORIZON_MINUTES)}


@pytest.fixture
def dispatching(settings):
    settings.SCHEDULING = {**settings.SCHEDULING, "DISPATCH_HORIZON_MINUTES": HORIZON_MINUTES}
    purge()
    with producing_to():
        yield
    purge()


def test_a_new_trip_is_assigned_by_a_worker(dispatching):
    driver = factories.driver(vehicle="car", seats=3)
    with workers(Worker("dispatch", queues=("dispatch",), env=DISPATCH_ENV)):
        set_shift(driver=driver, on_shift=True)
        (appointment,) = bookings(1, transport=True)
        dropoff = appointment.trips.get(leg="dropoff")
        wait_until(
            lambda: Trip.objects.filter(pk=dropoff.pk, status="assigned").exists(),
            timeout=15,
            what="the drop-off assigned",
        )
        settle()

    decision = DispatchDecision.objects.get(trip=dropoff)
    assert (decision.outcome, decision.driver_id) == ("assigned", driver.pk)
    # The pickup waits: its only possible driver has just left the queue. The desk is told.
    pickup = appointment.trips.get(leg="pickup")
    assert Trip.objects.get(pk=pickup.pk).status == "queued"
    assert StreamEvent.objects.filter(type=TRIP_WAITING, trip=pickup).count() == 1


def apply_phase(model: Model, rng: random.Random, *, book: int) -> None:
    """One burst of changes in one transaction: drivers finishing trips and going on or
    off shift, and new bookings with transport (some needing a car). Without bookings
    (draining what is left) everyone comes on shift instead.

    The drivers it touches are locked first, in id order, as the dispatcher locks them,
    so that this transaction and a pass never wait on each other in a cycle (a request
    changes one driver at a time and needs no such care)."""
    driving = [d for d in model.drivers.values() if d.driving is not None]
    finishing = {d.id for d in driving if rng.random() < 0.8}
    others = [d for d in model.drivers.values() if d.id not in finishing]
    if book:
        toggling = {d.id for d in rng.sample(others, k=min(4, len(others)))}
    else:
        toggling = {d.id for d in others if not d.on_shift}
    users = {u.pk: u for u in User.objects.filter(pk__in=finishing | toggling)}
    with transaction.atomic():
        touched = sorted(finishing | toggling)
        list(
            DriverProfile.objects.select_for_update()
            .filter(user_id__in=touched)
            .order_by("user_id")
        )
        for driver_id in touched:
            driver = model.drivers[driver_id]
            if driver_id in finishing:
                for action in ("depart", "arrive", "complete"):
                    act_on_trip(actor=users[driver_id], trip_id=driver.driving, action=action)
                model.finish_trip(driver_id)
            elif driver.on_shift:
                set_shift(driver=users[driver_id], on_shift=False)
                model.go_off_shift(driver_id)
            else:
                set_shift(driver=users[driver_id], on_shift=True)
                model.go_on_shift(driver_id)
        if book:
            appointments = bookings(book, transport=True, days_ahead=2 + rng.randrange(5))
            trips = list(Trip.objects.filter(appointment__in=appointments).order_by("id"))
            pairs_needed = [t.pk for t in trips if rng.random() < 0.15]
            Trip.objects.filter(pk__in=pairs_needed).update(passengers=2)
            for trip in Trip.objects.filter(pk__in=[t.pk for t in trips]).order_by("id"):
                model.add_trip(trip)


def observed(trip_ids) -> dict[int, int]:
    return dict(
        Trip.objects.filter(pk__in=list(trip_ids), status__in=BUSY_TRIP_STATUSES).values_list(
            "pk", "driver_id"
        )
    )


def test_fifo_with_several_workers_500_trips_30_drivers(dispatching):
    rng = random.Random(20261122)
    fleet = [factories.driver() for _ in range(20)] + [
        factories.driver(vehicle="car", seats=3) for _ in range(10)
    ]
    model = Model(
        {u.pk: Driver(u.pk, u.driver_profile.vehicle, u.driver_profile.seats) for u in fleet}
    )
    # Half the fleet starts on shift, in a random order.
    for user in rng.sample(fleet, k=15):
        set_shift(driver=user, on_shift=True)
        model.go_on_shift(user.pk)

    team = [
        Worker(f"fifo{n}", queues=("dispatch",), concurrency=1, env=DISPATCH_ENV) for n in range(3)
    ]
    inversions: list[str] = []
    with workers(*team):
        phase = 0
        while Trip.objects.count() < 500 or model.waiting:
            phase += 1
            apply_phase(model, rng, book=10 if Trip.objects.count() < 500 else 0)
            settle()
            waiting_before = set(model.waiting)
            expected = model.dispatch()
            actual = observed(waiting_before)
            if actual != expected:
                wrong = {
                    t: (expected.get(t), actual.get(t))
                    for t in set(expected) | set(actual)
                    if expected.get(t) != actual.get(t)
                }
                inversions.append(f"phase {phase}: trip: (model, workers) {wrong}")
                break
            assert phase < 80, "the run does not converge"

        # Finally the cars go home and two-passenger trips arrive: they must wait, and
        # say why.
        cars = [d.id for d in model.drivers.values() if d.vehicle == "car"]
        for user in User.objects.filter(pk__in=cars):
            set_shift(driver=user, on_shift=False)
            model.go_off_shift(user.pk)
        with transaction.atomic():
            late = bookings(3, transport=True, days_ahead=9)
            Trip.objects.filter(appointment__in=late).update(passengers=2)
        settle()
        logs = [w.log() for w in team]

    assert inversions == [], inversions
    total = Trip.objects.count()
    assert total >= 500
    assert overlapping_trips() == []

    # Every trip is driven, or waits with the dispatcher's explanation.
    waiting = Trip.objects.filter(status="queued")
    assert waiting.count() == 6
    for trip in waiting:
        last = DispatchDecision.objects.filter(trip=trip).latest("id")
        assert last.outcome == "no_driver"
        assert {s["driver"] for s in last.skipped} == {q["driver"] for q in last.queue}
        assert {s["reason"] for s in last.skipped} <= {"vehicle"}
    assert Trip.objects.exclude(status="queued").filter(driver__isnull=True).count() == 0

    # The log agrees with itself: the chosen driver is the first one not skipped, and a
    # vehicle refusal is true.
    vehicles = {d.id: d for d in model.drivers.values()}
    passengers = dict(Trip.objects.values_list("pk", "passengers"))
    for decision in DispatchDecision.objects.all():
        skipped = {s["driver"]: s["reason"] for s in decision.skipped}
        ahead = [q["driver"] for q in decision.queue if q["driver"] not in skipped]
        assert decision.queue_length >= len(decision.queue), decision.pk
        if decision.outcome == "assigned":
            assert ahead == [decision.driver_id], decision.pk
        for driver_id, reason in skipped.items():
            if reason == "vehicle":
                assert not model.fits(driver_id, passengers[decision.trip_id]), decision.pk
        assert vehicles.keys() >= {q["driver"] for q in decision.queue}

    # Several processes really did the passes.
    ran = [len(re.findall(r"scheduling\.dispatch\.run\[[^]]+\] succeeded", log)) for log in logs]
    assert sum(1 for n in ran if n) >= 2, ran
