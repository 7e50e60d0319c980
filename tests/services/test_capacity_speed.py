"""The fleet read written for speed (fleet_read._fleet_rows_postgres, one statement) reads
exactly what its ORM twin (fleet_read._fleet_rows_orm, the SQLite path) reads.

Every booking passes `now=`, a fixed instant well before the day booked."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from django.utils import timezone

from scheduling.models import DriverProfile, Trip, TripStatus
from scheduling.services import fleet_read
from scheduling.services.appointments import create_appointment
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
DAY = date(2030, 5, 1)
NOW = datetime.fromisoformat("2030-04-20T00:00:00+00:00")


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def test_the_one_statement_read_equals_the_orm_read(desk, therapist, service, client_record):
    car = factories.driver(vehicle="car", seats=3, first_name="Cara")
    bike = factories.driver(first_name="Bo")
    gone = factories.driver(first_name="Gone", is_active=False)
    # A profile left on a user who is no longer a driver is not a driver.
    other = factories.UserFactory(role="receptionist")
    DriverProfile.objects.create(user=other)
    booked = [
        create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
            now=NOW,
            needs_transport=True,
        )
        for start in (at(10), at(13), at(16))
    ]
    trips = list(Trip.objects.order_by("pk"))
    assert len(trips) == 6
    Trip.objects.filter(pk=trips[0].pk).update(status=TripStatus.ASSIGNED, driver=car)
    Trip.objects.filter(pk=trips[1].pk).update(status=TripStatus.CANCELLED)
    Trip.objects.filter(pk=trips[2].pk).update(status=TripStatus.EN_ROUTE, driver=bike)
    Trip.objects.filter(pk=trips[3].pk).update(passengers=2)

    day_start, day_end = at(0), at(0, day=DAY + timedelta(days=1))
    cases = [
        (day_start, day_end, None),
        (day_start, day_end, booked[1].pk),
        (at(12), day_end, None),  # from a `now` within the day
        (at(9, 15), at(9, 16), None),  # the first drop-off's first minute only
        (at(11, 30), at(12), None),  # between trips: none
    ]
    seen_trips = set()
    for start, end, excluding in cases:
        fast = fleet_read._fleet_rows_postgres(start, end, excluding)
        slow = fleet_read._fleet_rows_orm(start, end, excluding)
        assert fast[0] == slow[0]
        assert sorted(fast[1]) == sorted(slow[1])
        seen_trips |= {row[0] for row in fast[1]}
    profiles = fleet_read._fleet_rows_postgres(day_start, day_end, None)[0]
    assert profiles == sorted([(car.pk, 3, "car"), (bike.pk, 1, "motorcycle")]) and gone.pk not in {
        p[0] for p in profiles
    }
    # The cases saw every open trip and never the cancelled one.
    assert seen_trips == {t.pk for t in trips} - {trips[1].pk}
    assert fleet_read._fleet_rows_postgres(at(11, 30), at(12), None)[1] == []
    excluded = fleet_read._fleet_rows_postgres(day_start, day_end, booked[1].pk)[1]
    assert {row[0] for row in excluded} == {
        t.pk for t in trips if t.appointment_id != booked[1].pk
    } - {trips[1].pk}
