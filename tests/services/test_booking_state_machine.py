"""Random days of bookings on real PostgreSQL: the booking engine's invariants hold after
every step, and availability agrees with booking.

Steps: bookings (with and without transport, in the default travel or an area),
reschedules, cancellations, area changes, and drivers hired or given longer hours (hours
only grow here: cutting a driver's hours is the manager's decision, not a booking's, and
may strand trips the desk then has to fix). After every step:

- no therapist's busy ranges overlap (read from the database, not from the services);
- both legs of every appointment with open trips lie inside its busy range;
- an assignment of every waiting trip to a driver who works then exists, by a
  brute-force oracle written without `scheduling.fleet`.

And a step asks availability for a random therapist and transport choice and tries
starts it offers and starts it does not: every offered start books (then is rolled
back), every other is refused with a reason.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from scheduling.errors import Conflict, DomainError, ValidationFailed
from scheduling.models import Appointment, DriverProfile, ServiceArea, Trip, WorkingHours
from scheduling.services.appointments import (
    act_on_appointment,
    create_appointment,
    reschedule_appointment,
)
from scheduling.services.availability import availability
from scheduling.services.travel import travel_for
from tests import factories

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db]

DAY = date(2030, 5, 1)
NOW = datetime.fromisoformat("2030-04-20T00:00:00+00:00")
QUARTERS = st.integers(min_value=7 * 4, max_value=20 * 4)  # 07:00 .. 20:00


def at(quarter: int) -> datetime:
    return timezone.make_aware(datetime.combine(DAY, time())) + timedelta(minutes=15 * quarter)


class Rollback(Exception):
    """Raised to undo a trial booking."""


class BookingDay(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def teardown(self) -> None:
        self._atomic.__exit__(Rollback, Rollback(), None)

    @initialize()
    def staff(self) -> None:
        self.service = factories.ServiceFactory(duration_minutes=60, buffer_minutes=15)
        self.desk = factories.UserFactory(role="receptionist")
        self.therapists = [
            factories.therapist(self.service, hours=(time(8), time(20))) for _ in range(2)
        ]
        self.client = factories.ClientFactory()
        self.areas = [
            ServiceArea.objects.create(name=f"Area {n}", travel_minutes=m)
            for n, m in enumerate((20, 60))
        ]
        self.drivers: list = []
        self.hire(8 * 4, 14 * 4)

    # --- steps ----------------------------------------------------------------------------

    def hire(self, start_q: int, end_q: int) -> None:
        user = factories.UserFactory(role="driver")
        DriverProfile.objects.create(user=user)
        WorkingHours.objects.create(
            staff=user, weekday=DAY.weekday(), start=_wall(start_q), end=_wall(end_q)
        )
        self.drivers.append(user)

    @rule(start=QUARTERS, length=st.integers(4, 40))
    def hire_driver(self, start, length) -> None:
        if len(self.drivers) < 3:
            self.hire(start, min(start + length, 23 * 4))

    @rule(which=st.integers(0, 2), earlier=st.integers(0, 8), later=st.integers(0, 8))
    def longer_hours(self, which, earlier, later) -> None:
        if which >= len(self.drivers):
            return
        hours = WorkingHours.objects.get(staff=self.drivers[which])
        start_q = max(0, _quarter(hours.start) - earlier)
        end_q = min(23 * 4, _quarter(hours.end) + later)
        hours.start, hours.end = _wall(start_q), _wall(end_q)
        hours.save()

    @rule(
        therapist=st.integers(0, 1),
        start=QUARTERS,
        transport=st.booleans(),
        area=st.sampled_from([None, 0, 1]),
    )
    def book(self, therapist, start, transport, area) -> None:
        try:
            create_appointment(
                actor=self.desk,
                client_id=self.client.pk,
                service_id=self.service.pk,
                therapist_id=self.therapists[therapist].pk,
                start=at(start),
                needs_transport=transport,
                area_id=None if area is None else self.areas[area].pk,
                now=NOW,
            )
        except (Conflict, ValidationFailed) as refused:
            assert refused.message  # refused, and said why

    @rule(pick=st.integers(0, 20), start=QUARTERS)
    def reschedule(self, pick, start) -> None:
        active = list(Appointment.objects.active().order_by("id"))
        if not active:
            return
        moving = active[pick % len(active)].pk
        try:
            reschedule_appointment(actor=self.desk, appointment_id=moving, start=at(start), now=NOW)
        except (Conflict, ValidationFailed) as refused:
            assert refused.message

    @rule(pick=st.integers(0, 20))
    def cancel(self, pick) -> None:
        active = list(Appointment.objects.active().order_by("id"))
        if active:
            act_on_appointment(
                actor=self.desk, appointment_id=active[pick % len(active)].pk, action="cancel"
            )

    @rule(which=st.integers(0, 1), minutes=st.sampled_from([15, 30, 45, 75, 120]))
    def change_area(self, which, minutes) -> None:
        area = self.areas[which]
        area.travel_minutes = minutes
        area.save()

    @rule(
        therapist=st.integers(0, 1),
        transport=st.booleans(),
        area=st.sampled_from([None, 0, 1]),
        sample=st.lists(QUARTERS, min_size=1, max_size=6),
    )
    def availability_agrees_with_booking(self, therapist, transport, area, sample) -> None:
        area_id = None if area is None else self.areas[area].pk
        travel = travel_for(client=self.client, area_id=area_id)
        [offer] = availability(
            service=self.service,
            day=DAY,
            therapist_id=self.therapists[therapist].pk,
            now=NOW,
            travel=travel.time,
            needs_transport=transport,
        )
        for start in {*offer.starts[:3], *(at(q) for q in sample)}:
            try:
                with transaction.atomic():
                    create_appointment(
                        actor=self.desk,
                        client_id=self.client.pk,
                        service_id=self.service.pk,
                        therapist_id=self.therapists[therapist].pk,
                        start=start,
                        needs_transport=transport,
                        area_id=area_id,
                        now=NOW,
                    )
                    raise Rollback
            except Rollback:
                assert start in offer.starts, f"booked {start} that was not offered"
            except DomainError as refused:
                assert start not in offer.starts, f"{start} offered but refused: {refused}"
                assert refused.message
                if start in offer.no_driver:
                    assert isinstance(refused, Conflict) and refused.reason == "no_driver"

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def no_busy_ranges_overlap(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT count(*) FROM scheduling_appointment a
                   JOIN scheduling_appointment b
                     ON a.therapist_id = b.therapist_id AND a.id < b.id
                   WHERE a.status IN ('pending', 'confirmed', 'in_progress')
                     AND b.status IN ('pending', 'confirmed', 'in_progress')
                     AND a.busy_from < b.busy_until AND b.busy_from < a.busy_until"""
            )
            assert cursor.fetchone()[0] == 0

    @invariant()
    def legs_lie_inside_the_busy_range(self) -> None:
        for trip in Trip.objects.open().select_related("appointment"):
            a = trip.appointment
            assert a.busy_from <= trip.window_start < trip.window_end <= a.busy_until

    @invariant()
    def every_waiting_trip_has_a_driver(self) -> None:
        trips = [
            (t.window_start, t.window_end)
            for t in Trip.objects.filter(status="queued").order_by("window_start")
        ]
        hours = {
            h.staff_id: (at(_quarter(h.start)), at(_quarter(h.end)))
            for h in WorkingHours.objects.filter(staff__in=self.drivers)
        }
        assert brute_force_assignment(trips, hours), (trips, hours)


def brute_force_assignment(trips, hours) -> bool:
    """Try every way of giving each trip to a driver whose hours contain it."""
    able = [[d for d, (s, e) in hours.items() if s <= a and b <= e] for a, b in trips]
    for choice in itertools.product(*able):
        if all(
            not (a1 < b2 and a2 < b1)
            for (d1, (a1, b1)), (d2, (a2, b2)) in itertools.combinations(
                zip(choice, trips, strict=True), 2
            )
            if d1 == d2
        ):
            return True
    return False


def _wall(quarter: int) -> time:
    return time(quarter // 4, 15 * (quarter % 4))


def _quarter(wall: time) -> int:
    return wall.hour * 4 + wall.minute // 15


def test_random_days_keep_the_invariants():
    run_state_machine_as_test(
        BookingDay,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
