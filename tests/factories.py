"""Test data builders. Staff come with their profile and working hours, as in life."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import factory
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling.models import (
    Client,
    DriverProfile,
    Service,
    ServiceArea,
    TherapistProfile,
    User,
    WorkingHours,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    role = "receptionist"
    password = factory.django.Password("pw")


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service

    name = factory.Sequence(lambda n: f"Massage {n}")
    duration_minutes = 60
    price = Decimal("1200.00")
    buffer_minutes = 15


class ServiceAreaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceArea

    name = factory.Sequence(lambda n: f"Area {n}")
    travel_minutes = 30


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    name = factory.Faker("name")
    phone = factory.Sequence(lambda n: f"+63917{n:07d}")
    address = factory.Faker("street_address")


def add_hours(user: User, start: time = time(8), end: time = time(20), days=range(7)) -> None:
    WorkingHours.objects.bulk_create(
        WorkingHours(staff=user, weekday=d, start=start, end=end) for d in days
    )


def therapist(
    *services: Service, hours: tuple[time, time] | None = (time(8), time(20)), **fields
) -> User:
    user = UserFactory(role="therapist", **fields)
    profile = TherapistProfile.objects.create(user=user)
    profile.services.set(services)
    if hours:
        add_hours(user, *hours)
    return user


def driver(vehicle: str = "motorcycle", seats: int = 1, **fields) -> User:
    user = UserFactory(role="driver", **fields)
    DriverProfile.objects.create(user=user, vehicle=vehicle, seats=seats)
    add_hours(user)
    return user


def ensure_driver() -> None:
    """Some driver works all week (the builders' stand-in for a staffed fleet)."""
    if not DriverProfile.objects.exists():
        driver(username="dan", first_name="Dan", last_name="Reyes")


def soon(at_least: timedelta, length: timedelta, now: datetime | None = None) -> datetime:
    """A start on the 15-minute grid about `at_least` from now (the step at or before
    now + at_least), in the business time zone, for a session of `length` with a therapist
    who works all day.

    Working hours are per weekday, so a session may not run past midnight: late in the
    evening, when it would, it starts at 00:15 tomorrow instead (still soon; tests that
    book "tonight" used to fail in the last hours of the Manila day).
    """
    start = (timezone.localtime(now) + at_least).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 15)
    end = start + length
    if end.date() != start.date() or end.time() > time(23, 59):
        start = (start + timedelta(days=1)).replace(hour=0, minute=15)
    return start


def api(user) -> APIClient:
    """An API client signed in as `user` (no token or session round trip)."""
    client = APIClient()
    client.force_authenticate(user)
    return client
