"""Every all-day query has an index of its shape, and PostgreSQL uses it.

Each query is built exactly as the product builds it (model querysets and services) and
run against a few thousand rows shaped like the business (weeks of past, mostly finished
work; three weeks ahead booked), after ANALYZE. A predicate that does not match its
index's expression or partial condition (a cast, a different IN list, a missing filter)
shows up here as the index going unused.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Client,
    DriverProfile,
    Service,
    Trip,
    TripStatus,
    User,
)
from scheduling.phones import digits_only

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

THERAPISTS = 40
DRIVERS = 60
CLIENTS = 3000
PAST_DAYS = 45
FUTURE_DAYS = 21
# Two sessions a day per therapist, far enough apart for the longest service plus buffer,
# so active rows never trip the exclusion constraint.
SESSION_HOURS = (9, 14)

# Client names as the book has them: "santos" matches about one in ten.
FIRST_NAMES = ("Maria", "Jose", "Juan", "Ana", "Mark", "Grace", "Paolo", "Carla", "Miguel", "Joy")
LAST_NAMES = ("Santos", "Reyes", "Cruz", "Garcia", "Mendoza", "Torres", "Flores", "Ramos", "Lim")


@dataclass(frozen=True)
class Dataset:
    today: date
    now: datetime
    therapist: User
    colleague: User
    driver: User


def local(day: date, hour: int) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


def staff(role: str, count: int) -> list[User]:
    return User.objects.bulk_create(
        User(username=f"{role}{i}", role=role, password="!") for i in range(count)
    )


def clients(rng: random.Random) -> list[Client]:
    rows = []
    for i in range(CLIENTS):
        # Philippine mobile numbers; `i` in the middle keeps them unique.
        phone = f"+63{rng.choice((917, 918, 927, 939, 998))}{i:04d}{rng.randrange(1000):03d}"
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        # bulk_create skips Client.save(), which is what fills phone_digits.
        rows.append(Client(name=name, phone=phone, phone_digits=digits_only(phone)))
    return Client.objects.bulk_create(rows)


def past_status(rng: random.Random) -> str:
    return rng.choices(
        [
            AppointmentStatus.COMPLETED,
            AppointmentStatus.CANCELLED,
            AppointmentStatus.NO_SHOW,
            AppointmentStatus.EXPIRED,
            AppointmentStatus.REJECTED,
        ],
        weights=[85, 7, 3, 3, 2],
    )[0]


def future_status(rng: random.Random) -> str:
    return rng.choices(
        [AppointmentStatus.CONFIRMED, AppointmentStatus.PENDING, AppointmentStatus.CANCELLED],
        weights=[70, 15, 15],
    )[0]


@pytest.fixture
def dataset() -> Dataset:
    rng = random.Random(20240601)  # fixed: the same rows every run
    now = timezone.now()
    today = timezone.localdate()
    services = Service.objects.bulk_create(
        Service(name=name, duration_minutes=minutes, buffer_minutes=buffer, price=Decimal(p))
        for name, minutes, buffer, p in (
            ("Swedish", 60, 15, "1200"),
            ("Shiatsu", 90, 15, "1500"),
            ("Hot stone", 120, 30, "2000"),
        )
    )
    therapists = staff("therapist", THERAPISTS)
    drivers = staff("driver", DRIVERS)
    DriverProfile.objects.bulk_create(
        DriverProfile(
            user=d,
            on_shift=i % 4 == 0,  # a quarter of the fleet on shift at any time
            available_since=now - timedelta(minutes=i) if i % 4 == 0 else None,
        )
        for i, d in enumerate(drivers)
    )
    book = clients(rng)

    appointments = []
    for offset in range(-PAST_DAYS, FUTURE_DAYS):
        day = today + timedelta(days=offset)
        for therapist in therapists:
            for hour in SESSION_HOURS:
                if rng.random() < 0.3:  # nobody is fully booked
                    continue
                service = rng.choice(services)
                start = local(day, hour)
                end = start + service.duration
                status = past_status(rng) if offset < 0 else future_status(rng)
                appointments.append(
                    Appointment(
                        client=rng.choice(book),
                        service=service,
                        therapist=therapist,
                        start=start,
                        end=end,
                        blocked_until=end + service.buffer,
                        busy_from=start,
                        busy_until=end + service.buffer,
                        status=status,
                        price=service.price,
                        needs_transport=rng.random() < 0.5,
                        # Pending ones: a few already overdue, most still open.
                        response_deadline=now + timedelta(minutes=rng.randrange(-20, 30)),
                    )
                )
    appointments = Appointment.objects.bulk_create(appointments)

    trips = []
    for a in appointments:
        if not a.needs_transport:
            continue
        past = a.start < now
        for leg, window_start in (
            ("dropoff", a.start - timedelta(minutes=45)),
            ("pickup", a.end),
        ):
            if past:
                status, driver = TripStatus.DONE, rng.choice(drivers)
            elif a.status == AppointmentStatus.CANCELLED:
                status, driver = TripStatus.CANCELLED, None
            else:
                status, driver = TripStatus.QUEUED, None
            trips.append(
                Trip(
                    appointment=a,
                    leg=leg,
                    window_start=window_start,
                    window_end=window_start + timedelta(minutes=45),
                    status=status,
                    driver=driver,
                )
            )
    Trip.objects.bulk_create(trips)

    with connection.cursor() as cursor:
        for model in (Appointment, Trip, Client, DriverProfile, User):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return Dataset(
        today=today,
        now=now,
        therapist=therapists[0],
        colleague=therapists[1],
        driver=drivers[0],
    )


def plan(queryset: QuerySet) -> str:
    """The plan with sequential scans priced out of the running.

    On a few thousand rows a sequential scan is sometimes honestly the cheapest (for the
    trip and driver queues and the client search, here), and which plan wins then depends
    on statistics sampling. Forbidding it (SET LOCAL: this test's transaction only) leaves
    the planner choosing among indexes, which is what is under test: that the index
    matches the query's shape, expression and partial condition. An index that does not
    match cannot be chosen however sequential scans are priced.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def tomorrow_between(d: Dataset, start: int, end: int) -> tuple[datetime, datetime]:
    day = d.today + timedelta(days=1)
    return local(day, start), local(day, end)


# (index, or the indexes either of which serves it; the queryset as the product builds
# it). Keep in step with the code quoted.
QUERIES: dict[str, tuple[str | tuple[str, ...], Callable[[Dataset], QuerySet]]] = {
    # The desk's day board, narrowed by status.
    "day board": (
        "appt_day_board_idx",
        lambda d: Appointment.objects.on_day(d.today + timedelta(days=1)).filter(
            status=AppointmentStatus.CONFIRMED
        ),
    ),
    # A therapist's upcoming active appointments.
    "therapist upcoming": (
        "appt_therapist_active_idx",
        lambda d: (
            Appointment.objects.active().filter(therapist=d.therapist).filter(start__gte=d.now)
        ),
    ),
    # services.appointments._conflicts, the booking pre-check (and the names of what a
    # booking met): one therapist's few active appointments, bounded by either end.
    "booking pre-check": (
        ("appt_therapist_active_idx", "appt_therapist_busy_idx"),
        lambda d: (
            Appointment.objects.active()
            .filter(therapist_id=d.therapist.pk)
            .overlapping(*tomorrow_between(d, 9, 11))
            .exclude(pk=None)
            .order_by("start")
        ),
    ),
    # services.availability.busy_intervals, behind every availability page.
    "availability": (
        "appt_therapist_busy_idx",
        lambda d: (
            Appointment.objects.active()
            .overlapping(*tomorrow_between(d, 0, 23))
            .filter(therapist_id__in=[d.therapist.pk, d.colleague.pk])
            .values_list("therapist_id", "start", "blocked_until")
        ),
    ),
    # services.appointments.expire_overdue.
    "expiry sweep": (
        "appt_pending_deadline_idx",
        lambda d: (
            Appointment.objects.filter(
                status=AppointmentStatus.PENDING, response_deadline__lte=d.now
            )
            .order_by("response_deadline")
            .values_list("pk", flat=True)
        ),
    ),
    # The dispatcher's queue of trips waiting for a driver.
    "trip queue": (
        "trip_queued_idx",
        lambda d: Trip.objects.filter(status=TripStatus.QUEUED).order_by(
            "window_start", "created_at"
        ),
    ),
    # services.trips._clashes, the assignment pre-check.
    "assignment pre-check": (
        "trip_driver_busy_idx",
        lambda d: (
            Trip.objects.busy()
            .filter(driver_id=d.driver.pk)
            .overlapping(*tomorrow_between(d, 9, 11))
            .exclude(pk=0)
        ),
    ),
    # The FIFO queue of on-shift drivers.
    "driver queue": (
        "driver_queue_idx",
        lambda d: DriverProfile.objects.filter(on_shift=True).order_by("available_since"),
    ),
    # The client search's predicate, by a name fragment and by a phone fragment. (Without
    # an order: in name order the name index below can serve it too, by walking all of it
    # here, where the book has 3,000 clients; on 100,000 the planner walks it only for a
    # common name's page, bench/api's search showed, and finds rare ones by trigrams.)
    "client by name": (
        "client_name_trgm_idx",
        lambda d: Client.objects.search("santos").order_by(),
    ),
    "client by phone": (
        "client_phone_trgm_idx",
        lambda d: Client.objects.search("1234").order_by(),
    ),
    # The first half of the API's search page (a deferred join, api.views.ClientViewSet):
    # a common name's page is found by walking the names in order (it needs no table row),
    # not by fetching and sorting every match.
    "client page, common name": (
        "client_name_idx",
        lambda d: Client.objects.search("santos").order_by("name", "id").values("id", "name")[:51],
    ),
    "address book page": (
        "client_name_idx",
        lambda d: Client.objects.order_by("name", "id").values("id", "name")[:51],
    ),
}


def uses(index: str, text: str) -> bool:
    # "Index Scan using <index> on …", "Bitmap Index Scan on <index>  (cost…"
    return f" using {index} " in text or f" on {index} " in text


def test_every_all_day_query_uses_its_index(dataset: Dataset, subtests: pytest.Subtests) -> None:
    # One dataset for all queries (building it is most of the cost); a subtest per query
    # so that each mismatch is reported on its own.
    for name, (index, build) in QUERIES.items():
        with subtests.test(query=name, index=index):
            text = plan(build(dataset))
            acceptable = index if isinstance(index, tuple) else (index,)
            assert any(uses(i, text) for i in acceptable), text

    # Control: the method does catch a mismatch. Without active() the partial index on
    # active appointments cannot answer, so the planner must look elsewhere.
    text = plan(Appointment.objects.filter(therapist=dataset.therapist, start__gte=dataset.now))
    assert not uses("appt_therapist_active_idx", text), text
    assert not uses("appt_therapist_busy_idx", text), text
