"""Manual dispatch under concurrency, on real PostgreSQL (issue 13 item 3).

Real threads with their own connections, released together: two desks giving one driver
two overlapping trips at once, and a desk assigning by hand while the dispatcher runs a
pass. Exactly one assignment of the driver stands; nobody gets two overlapping trips.
Outcomes and invariants are asserted, never timings.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from scheduling.errors import Conflict, InvalidTransition
from scheduling.models import DispatchDecision, Trip
from scheduling.services.appointments import create_appointment
from scheduling.services.dispatch import run_pass
from scheduling.services.manual_dispatch import assign_by_hand
from scheduling.services.trips import set_shift
from tests import factories
from tests.races import overlapping_trips, run_together

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("statement_timeout"),
]

ROUNDS = 4


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    day = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def world(trips: int):
    service = factories.ServiceFactory(duration_minutes=60, buffer_minutes=15)
    desks = [factories.UserFactory(role="receptionist") for _ in range(2)]
    client = factories.ClientFactory()
    drivers = [factories.driver() for _ in range(trips)]  # enough for every booking
    for driver in drivers:
        set_shift(driver=driver, on_shift=True, now=tomorrow_at(7))
    queued = []
    for _ in range(trips):
        appointment = create_appointment(
            actor=desks[0],
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=factories.therapist(service).pk,
            start=tomorrow_at(10),
            needs_transport=True,
        )
        queued.append(appointment.trips.get(leg="dropoff"))
    return desks, drivers, queued


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_desks_give_one_driver_two_overlapping_trips_exactly_one_wins(round_):
    desks, drivers, (first, second) = world(2)
    liza = drivers[0]

    results = run_together(
        [
            lambda: assign_by_hand(
                actor=desks[0], trip_id=first.pk, driver_id=liza.pk, reason="desk 1"
            ),
            lambda: assign_by_hand(
                actor=desks[1], trip_id=second.pk, driver_id=liza.pk, reason="desk 2"
            ),
        ]
    )

    won = [r for r in results if isinstance(r, Trip)]
    lost = [r for r in results if not isinstance(r, Trip)]
    assert len(won) == 1, results
    assert len(lost) == 1 and isinstance(lost[0], Conflict), results
    assert lost[0].reason == "driver_busy"
    assert Trip.objects.filter(driver=liza, status="assigned").count() == 1
    assert overlapping_trips() == []
    assert DispatchDecision.objects.filter(decided_by__isnull=False).count() == 1


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_the_dispatcher_racing_a_manual_assign_never_double_assigns(round_):
    desks, drivers, trips = world(3)
    liza = drivers[0]
    # The desk wants the last trip for the first driver in the queue, the one the
    # dispatcher would give the first trip to.
    results = run_together(
        [
            lambda: assign_by_hand(
                actor=desks[0], trip_id=trips[-1].pk, driver_id=liza.pk, reason="by hand"
            ),
            lambda: run_pass(now=tomorrow_at(9, 30)),
        ]
    )

    manual, decisions = results
    assert not isinstance(decisions, Exception), decisions
    # Whoever came second saw the other's commit: the desk's assignment either stood
    # (and the pass gave the others), or was refused because the pass gave the trip or
    # the driver first.
    if isinstance(manual, Exception):
        assert isinstance(manual, Conflict | InvalidTransition), manual
    else:
        assert Trip.objects.get(pk=trips[-1].pk).driver_id == liza.pk
    assert overlapping_trips() == []
    assert Trip.objects.filter(driver=liza).busy().count() == 1
    # Every trip is given, each to a different driver.
    given = list(
        Trip.objects.filter(pk__in=[t.pk for t in trips]).values_list("driver_id", flat=True)
    )
    assert None not in given and len(set(given)) == len(given) == 3
