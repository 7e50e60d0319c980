"""What the benchmark sends: the database it needs, and the requests of each scenario."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from django.db import connection, models, transaction
from django.db.models.deletion import get_candidate_relations_to_delete
from django.utils import timezone
from rest_framework.authtoken.models import Token

from bench.api import raw_booking
from bench.api.seed import AVAILABILITY_SERVICE, LOAD_USER, DriverPlan, Scale
from config.settings.base import redis_db_url
from scheduling.domain import bookable, business_zone, candidate_starts, local_day_bounds
from scheduling.models import (
    Appointment,
    DriverProfile,
    IdempotencyKey,
    Service,
    TherapistProfile,
    Trip,
    TripStatus,
    User,
)
from scheduling.services.capacity import legs_for
from scheduling.services.common import latest_bookable, minutes
from scheduling.services.working_time import day_schedules


def forget_previous_runs() -> int:
    """Delete what earlier runs wrote (bookings by the load user, the ceiling's raw
    inserts, and every row that refers to them: trips, log rows, stream events, whatever
    a later model adds), plus the load user's idempotency keys, so that every run starts
    from the seeded data. The bench database only."""
    with transaction.atomic():
        ids = list(
            Appointment.objects.filter(created_by__username=LOAD_USER).values_list("pk", flat=True)
        )
        _purge(Appointment, ids)
        keys = IdempotencyKey.objects.filter(user__username=LOAD_USER).values_list("pk", flat=True)
        _purge(IdempotencyKey, list(keys))
        with connection.cursor() as cursor:
            cursor.execute("CREATE SEQUENCE IF NOT EXISTS bench_insert_seq")
            cursor.execute("ALTER SEQUENCE bench_insert_seq RESTART")
            for sequence in ("bench_raw_booking_seq", "bench_raw_booking_transport_seq"):
                cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS {sequence}")
                cursor.execute(f"ALTER SEQUENCE {sequence} RESTART")
    return len(ids)


def forget_raw_bookings(load_user: int) -> int:
    """Delete the raw booking ceilings' bookings (2098, 2097 with transport) and every row
    that refers to them once they are measured, as the insert ceiling's are. Returns how
    many bookings."""
    with transaction.atomic():
        ids = list(
            Appointment.objects.filter(
                created_by_id=load_user, start__year__in=raw_booking.RAW_YEARS
            ).values_list("pk", flat=True)
        )
        _purge(Appointment, ids)
    return len(ids)


def forget_raw_inserts(load_user: int) -> int:
    """Delete the insert ceiling's rows (pending appointments in 2099, nothing refers to
    them) once it is measured, and vacuum them away: left in place they are thousands of
    active bookings of every therapist that no real timetable has, and the reads measured
    after the ceiling would pay for them. Returns how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM scheduling_appointment WHERE created_by_id = %s AND start >= '2099-01-01'",
            [load_user],
        )
        removed = cursor.rowcount
        cursor.execute("VACUUM ANALYZE scheduling_appointment")
    return removed


def forget_queued_messages(redis_url: str, numbers: Iterable[str]) -> int:
    """Empty the bench's own Redis databases (the broker's queue of notification and
    dispatch tasks that no worker consumes here, old rate-limit counters); returns how many
    keys there were. Only the numbers the bench was given, never the product's."""
    import redis

    removed = 0
    for number in numbers:
        client = redis.Redis.from_url(redis_db_url(redis_url, int(number)))
        removed += client.dbsize()
        client.flushdb()
        client.close()
    return removed


def _purge(model: type[models.Model], pks: list) -> None:
    """Delete rows `pks` of `model` after, recursively, every row that refers to them."""
    if not pks:
        return
    # The relations Django's own deletion follows, hidden ones (related_name="+") and
    # many-to-many through tables included.
    for relation in get_candidate_relations_to_delete(model._meta):
        dependent, column = relation.related_model, relation.field.column
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn(dependent._meta.pk.column)} FROM {qn(dependent._meta.db_table)} "
                f"WHERE {qn(column)} = ANY(%s)",
                [pks],
            )
            _purge(dependent, [row[0] for row in cursor.fetchall()])
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {qn(model._meta.db_table)} WHERE {qn(model._meta.pk.column)} = ANY(%s)",
            [pks],
        )


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def vacuum() -> None:
    with connection.cursor() as cursor:
        for table in (
            "scheduling_appointment",
            "scheduling_trip",
            "scheduling_transition",
            "scheduling_streamevent",
            "scheduling_streameventrecipient",
            "scheduling_idempotencykey",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")


@dataclass(frozen=True)
class Workload:
    token: str
    load_user: int
    service_for_availability: int
    availability_therapists: int
    read_days: list[date]
    insert_env: dict[str, str]
    drivers: int = 0
    # Each read day's queued trips and the share of the drivers' working time they fill.
    trips_per_day: dict[date, tuple[int, float]] | None = None

    def trips_text(self) -> str:
        if not self.trips_per_day:
            return "no queued trips"
        counts = [n for n, _ in self.trips_per_day.values()]
        shares = [share for _, share in self.trips_per_day.values()]
        return (
            f"{self.drivers} drivers; {min(counts)}-{max(counts)} queued trips a day, "
            f"{min(shares):.0%}-{max(shares):.0%} of the drivers' working time"
        )


def describe(seeded_anchor: date, scale: Scale) -> Workload:
    today = timezone.localdate()
    first = max(today + timedelta(days=1), seeded_anchor)
    last = seeded_anchor + timedelta(days=scale.future_days - 1)
    # The desk's next week (inside the seeded future, where days are as full as real ones).
    read_days = [first + timedelta(days=d) for d in range(7) if first + timedelta(days=d) <= last]
    load_user = User.objects.get(username=LOAD_USER)
    service = Service.objects.get(name=AVAILABILITY_SERVICE)
    therapists = list(
        User.objects.filter(role="therapist", is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    drivers = list(
        DriverProfile.objects.filter(user__is_active=True).values_list("user_id", flat=True)
    )
    return Workload(
        token=Token.objects.get(user=load_user).key,
        load_user=load_user.pk,
        service_for_availability=service.pk,
        availability_therapists=service.therapists.count(),
        read_days=read_days,
        drivers=len(drivers),
        trips_per_day={day: queued_trips(day, drivers) for day in read_days},
        insert_env={
            "BENCH_INSERT_THERAPISTS": ",".join(map(str, therapists)),
            "BENCH_INSERT_CLIENT": "1",
            "BENCH_INSERT_SERVICE": str(service.pk),
            "BENCH_INSERT_USER": str(load_user.pk),
        },
    )


def queued_trips(day: date, drivers: list[int]) -> tuple[int, float]:
    """How many trips wait for a driver on `day`, and the share of the drivers' working
    time (hours minus breaks and time off) their windows add up to."""
    first, last = local_day_bounds(day)
    windows = Trip.objects.filter(
        status=TripStatus.QUEUED, window_start__gte=first, window_start__lt=last
    ).values_list("window_start", "window_end")
    taken = sum(((end - start) for start, end in windows), timedelta(0))
    pieces = [p for s in day_schedules(drivers, day).values() for p in s.working]
    working = sum((p.end - p.start for p in pieces), timedelta(0))
    return len(windows), (taken / working if working else 0.0)


# --- request lists --------------------------------------------------------------------------


def day_list_paths(workload: Workload) -> list[str]:
    return [f"/api/appointments/?{urlencode({'date': d.isoformat()})}" for d in workload.read_days]


def availability_paths(workload: Workload, *, transport: bool = False) -> list[str]:
    """A day's start times for the service 20 therapists perform; with `transport`, only
    those whose two legs the drivers can carry beside the day's queued trips (the rest are
    listed as `no_driver`)."""
    extra = {"needs_transport": "true"} if transport else {}
    return [
        "/api/availability/?"
        + urlencode({"service": workload.service_for_availability, "date": d.isoformat(), **extra})
        for d in workload.read_days
    ]


def search_paths(count: int = 64, seed: int = 7) -> list[str]:
    """What a desk types: a surname, a first name and surname, part of a mobile number in
    national form, a full mobile number (taken from real rows, so they find someone)."""
    rng = random.Random(seed)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, phone FROM scheduling_client TABLESAMPLE SYSTEM (1) REPEATABLE (7) "
            "LIMIT %s",
            [count],
        )
        rows = cursor.fetchall()
    queries = []
    for n, (name, phone) in enumerate(rows):
        parts = name.replace(".", "").split()
        national = "0" + phone[3:]  # +63917… is typed 0917…
        kind = n % 4
        if kind == 0:
            queries.append(parts[-1])
        elif kind == 1:
            queries.append(f"{parts[0]} {parts[-1]}"[: rng.randint(6, 30)])
        elif kind == 2:
            queries.append(national[: rng.randint(7, 9)])
        else:
            queries.append(national)
    return [f"/api/clients/?{urlencode({'q': q})}" for q in queries]


def create_bodies(needed: int, *, anchor: date, scale: Scale, seed: int = 11) -> list[bytes]:
    """`needed` distinct bookings without transport (see `booking_bodies`)."""
    return booking_bodies(needed, 0, anchor=anchor, scale=scale, seed=seed)[0]


def booking_bodies(
    plain: int, transport: int, *, anchor: date, scale: Scale, seed: int = 11
) -> tuple[list[bytes], list[bytes]]:
    """`plain` bookings without transport and `transport` with, all distinct and all ones
    the API will accept, in any order and beside each other: 15-minute steps, each busy
    range (travel there and back included, the travel a booking gets: the default
    allowance, as the clients have no area) in working hours, no two overlapping for one
    therapist, on empty days past the seeded ones. Checked with the product's own rule
    (`domain.bookable` over `day_schedules`, with `travel=`). A slot is given transport
    (while more are wanted) when its legs (`capacity.legs_for`) fit beside the same day's
    others on a driver working then, so all of a day's trips can be carried together."""
    rng = random.Random(seed)
    now = timezone.now()
    zone = business_zone()
    step = minutes("SLOT_STEP_MINUTES")
    travel = minutes("TRAVEL_ALLOWANCE_MINUTES")
    drivers = list(
        DriverProfile.objects.filter(user__is_active=True)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    latest = latest_bookable(now) - timedelta(days=1)
    day = max(anchor + timedelta(days=scale.future_days), timezone.localdate() + timedelta(days=2))
    profiles = TherapistProfile.objects.select_related("user").prefetch_related("services")
    therapists = [
        (p.user_id, sorted(p.services.all(), key=lambda s: s.pk))
        for p in profiles.filter(user__is_active=True).order_by("user_id")
    ]
    plain_bodies: list[bytes] = []
    transport_bodies: list[bytes] = []
    while len(plain_bodies) < plain or len(transport_bodies) < transport:
        if datetime.combine(day, datetime.min.time(), zone) > latest:
            raise RuntimeError(
                f"ran out of bookable days after {len(plain_bodies) + len(transport_bodies)} "
                "bookings (the booking horizon "
                "ends there): ask for fewer with --create-bodies"
            )
        schedules = day_schedules([t for t, _ in therapists], day)
        fleet = DriverPlan({d: s.working for d, s in day_schedules(drivers, day).items()})
        for therapist, services in therapists:
            free_from = None
            turn = rng.randrange(len(services))
            for start in candidate_starts(day, step):
                if free_from is not None and start < free_from:
                    continue
                service = services[turn % len(services)]
                if start - travel < now or not bookable(
                    start,
                    duration=service.duration,
                    buffer=service.buffer,
                    schedule=schedules[therapist],
                    busy=[],
                    travel=travel,
                ):
                    continue
                turn += 1
                # The next busy range may begin when this one ends (back at base).
                free_from = start + service.duration + service.buffer + 2 * travel
                carried = len(transport_bodies) < transport and fleet.take(
                    [
                        leg.window
                        for leg in legs_for(
                            start, start + service.duration, buffer=service.buffer, travel=travel
                        )
                    ]
                )
                if not carried and len(plain_bodies) >= plain:
                    continue  # the slot stays free: only trips are still wanted
                body = {
                    "client": rng.randrange(1, scale.clients + 1),
                    "service": service.pk,
                    "therapist": therapist,
                    "start": start.astimezone(zone).isoformat(),
                    "needs_transport": carried,
                }
                encoded = json.dumps(body, separators=(",", ":")).encode()
                (transport_bodies if carried else plain_bodies).append(encoded)
        day += timedelta(days=1)
    # Spread concurrent requests over therapists and days.
    rng.shuffle(plain_bodies)
    rng.shuffle(transport_bodies)
    return plain_bodies[:plain], transport_bodies[:transport]
