"""Test data builders. Staff come with their profile and working hours, as in life."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import factory
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling.models import (
    Appointment,
    Client,
    DriverProfile,
    Service,
    ServiceArea,
    TherapistProfile,
    Trip,
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


def api(user, *, raise_request_exception: bool = True) -> APIClient:
    """An API client signed in as `user` (no token or session round trip). Race tests
    pass raise_request_exception=False: a 500 comes back as a response to count."""
    client = APIClient(raise_request_exception=raise_request_exception)
    client.force_authenticate(user)
    return client


# --- a month of the business as the reports read it (the reports service, page and the
# field browser test count the same rows) ----------------------------------------------------

MANILA = ZoneInfo("Asia/Manila")


def local(day: str, hm: str = "10:00", zone: ZoneInfo = MANILA) -> datetime:
    return datetime.fromisoformat(f"{day}T{hm}").replace(tzinfo=zone)


class Book:
    """Rows written straight to the tables: the report only reads, and its day edges
    (midnight) are outside anyone's working hours, so the booking service would refuse
    them."""

    def __init__(self, service) -> None:
        self.service = service
        self.client = ClientFactory()

    def appointment(self, therapist, start: datetime, status: str, price: str) -> Appointment:
        end = start + timedelta(minutes=60)
        return Appointment.objects.create(
            client=self.client,
            service=self.service,
            therapist=therapist,
            start=start,
            end=end,
            blocked_until=end,
            status=status,
            price=Decimal(price),
            response_deadline=start,
        )

    def trip(self, appointment, driver, start: datetime, status: str, leg: str) -> Trip:
        return Trip.objects.create(
            appointment=appointment,
            driver=driver,
            leg=leg,
            window_start=start,
            window_end=start + timedelta(minutes=20),
            status=status,
        )


def may_data(service) -> Book:
    """A month of the business, with every edge that could be counted wrongly."""
    book = Book(service)
    ana = therapist(service, first_name="Ana", last_name="Cruz")
    ben = therapist(service, first_name="Ben", last_name="Lim")
    therapist(service, first_name="Cora", last_name="Diaz")  # idle all month
    therapist(service, first_name="Dan", last_name="Old", is_active=False)
    eve = therapist(service, first_name="Eve", last_name="Gone", is_active=False)

    first = book.appointment(ana, local("2030-05-01", "00:00"), "completed", "1000.00")
    book.appointment(ana, local("2030-05-31", "23:00"), "completed", "1500.00")
    book.appointment(ana, local("2030-04-30", "23:00"), "completed", "9999.00")  # April
    book.appointment(ana, local("2030-06-01", "00:00"), "completed", "8888.00")  # June
    book.appointment(ana, local("2030-05-10"), "no_show", "1200.00")
    book.appointment(ana, local("2030-05-11"), "rejected", "1200.00")
    book.appointment(ben, local("2030-05-05"), "completed", "1200.50")
    book.appointment(ben, local("2030-05-20"), "confirmed", "800.00")
    book.appointment(ben, local("2030-05-21"), "in_progress", "700.00")
    book.appointment(ben, local("2030-05-22"), "pending", "600.00")
    book.appointment(ben, local("2030-05-23"), "expired", "900.00")
    book.appointment(ben, local("2030-05-24"), "cancelled", "1100.00")
    book.appointment(eve, local("2030-05-15"), "completed", "500.00")  # left since

    fay = driver(first_name="Fay", last_name="Uy")
    gus = driver(first_name="Gus", last_name="Tan")
    driver(first_name="Hal", last_name="Ong")  # idle all month
    book.trip(first, fay, local("2030-05-01", "00:00"), "done", "dropoff")
    book.trip(first, fay, local("2030-05-31", "23:50"), "done", "pickup")
    book.trip(first, fay, local("2030-04-30", "23:59"), "done", "dropoff")  # April
    book.trip(first, fay, local("2030-05-10"), "cancelled", "dropoff")
    book.trip(first, gus, local("2030-05-12"), "done", "pickup")
    book.trip(first, gus, local("2030-05-13"), "arrived", "dropoff")  # not done yet
    return book
