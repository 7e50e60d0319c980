"""The bench database: realistic volumes, loaded in seconds, reused while still valid.

Volumes come in by COPY rather than through the booking services (20,000 bookings one
by one would take minutes), but every row is one the services would have written:
appointments on 15-minute steps whose busy range (travel there, the session, its buffer,
travel back) lies inside their therapist's working hours and outside breaks, never
overlapping one another (the exclusion constraint on [busy_from, busy_until) checks that
as they land), statuses that follow the state machine with a transition row for each
step, trips with their windows and statuses, clients with E.164 phones and their search
digits, and the stream-event history those changes would have recorded.

Travel: the history (days before the seed's anchor) was booked before travel was counted
and has travel 0, as migration 0008 leaves such rows; from the anchor on, bookings have
the default travel (TRAVEL_ALLOWANCE_MINUTES, 45) and, with transport, the legs the
engine plans (drop-off [start - travel, start), pick-up [end + buffer, + travel)). The
future days are busier with transport than the history: on each, the queued trips are
a day's work for the 15 drivers (on mixed hours: some 08-14, some 12-20, most 08-20, two
with a lunch break), and only bookings whose legs fit beside those already placed keep
their transport, so every day's trips can be carried, as the engine's capacity check
would have ensured.

A run reuses the data when `bench_meta` says it was seeded at the same scale and seed
version less than REUSE_DAYS ago (so the seeded future days still lie ahead);
otherwise it truncates the product's tables and loads them again.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta

from django.apps import apps
from django.contrib.auth.hashers import make_password
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb
from rest_framework.authtoken.models import Token

from scheduling.domain import DaySchedule, Interval, at_wall_time, business_zone
from scheduling.management.commands.seed_demo import (
    FIRST_NAMES,
    LAST_NAMES,
    MOBILE_PREFIXES,
    SERVICES,
    _address,
)
from scheduling.models import (
    Appointment,
    Break,
    Client,
    DriverProfile,
    EventCounter,
    Service,
    StreamEvent,
    StreamEventRecipient,
    TherapistProfile,
    Transition,
    Trip,
    User,
    WorkingHours,
)
from scheduling.services.capacity import legs_for
from scheduling.services.common import minutes

# Bump when the shape of the seeded data changes, so old bench databases are reloaded.
SEED_VERSION = 6
SEED = 20260
REUSE_DAYS = 10
PASSWORD = "bench-password-2026"
# The API caller of the benchmark: its bookings (and the ceiling's raw inserts) are
# deleted before every run, so each run starts from the seeded data.
LOAD_USER = "bench-load"
SEEDED_CREATORS = ("bench-desk", "bench-desk2")
# The service used by the availability scenario: exactly this many therapists perform it.
AVAILABILITY_SERVICE = SERVICES[0].name
AVAILABILITY_THERAPISTS = 20
# The legs the engine wrote before travel was counted (history): 45 minutes each, the
# drop-off ending at the start and the pick-up beginning at the end.
OLD_LEG = timedelta(minutes=45)
STEP = 15
# Shares of the bookings that need transport: in the history, and from the anchor on
# (where the drivers' days are to be busy; those whose legs no driver could take then
# are booked without).
PAST_TRANSPORT = 0.4
FUTURE_TRANSPORT = 0.9
# Share of the possible bookings (slots with travel) taken on the seeded future days:
# enough for a busy day that still leaves the therapists free time to offer.
FUTURE_FILL = 0.75
# Drivers' weekly hours by number: some mornings, some afternoons, most the whole day.
DRIVER_HOURS = {1: (8, 14), 2: (12, 20), 3: (8, 20), 4: (8, 20), 0: (8, 20)}
DRIVER_LUNCH = {4, 8}  # drivers with a 12:00-13:00 break on weekdays, as therapists have


def driver_hours(n: int) -> tuple[time, time]:
    start, end = DRIVER_HOURS[n % 5]
    return time(start), time(end)


def travel_allowance() -> timedelta:
    return minutes("TRAVEL_ALLOWANCE_MINUTES")


@dataclass(frozen=True)
class Scale:
    clients: int = 100_000
    therapists: int = 40
    drivers: int = 15
    appointments: int = 20_000
    past_days: int = 100
    future_days: int = 30


@dataclass
class Seeded:
    anchor: date
    reused: bool
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def first_future_day(self) -> date:
        return self.anchor + timedelta(days=1)


# --- entry point --------------------------------------------------------------------------


def ensure_seeded(scale: Scale, *, log=print) -> Seeded:
    started = timezone.now()
    meta = _read_meta()
    today = timezone.localdate()
    if _reusable(meta, scale, today):
        anchor = date.fromisoformat(meta["anchor"])
        log(f"seed: reusing data seeded on {anchor} (scale and version match)")
        return Seeded(anchor, True, (timezone.now() - started).total_seconds(), _counts())
    log("seed: loading the bench database (truncating the product's tables first)")
    with transaction.atomic():
        _truncate()
        _load(scale, anchor=today, now=timezone.now())
        _write_meta({"version": SEED_VERSION, "scale": asdict(scale), "anchor": today.isoformat()})
    # VACUUM as well as ANALYZE: rows that arrive by COPY sit in the trigram (GIN) indexes'
    # pending lists, which every search would scan linearly until autovacuum got round to
    # them; a database that has been running for a while has them merged.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    seconds = (timezone.now() - started).total_seconds()
    return Seeded(today, False, seconds, _counts())


def _reusable(meta: dict | None, scale: Scale, today: date) -> bool:
    if not meta or meta.get("version") != SEED_VERSION or meta.get("scale") != asdict(scale):
        return False
    if date.fromisoformat(meta["anchor"]) < today - timedelta(days=REUSE_DAYS):
        return False
    # Someone may have flushed or hand-edited the database since.
    counts = _counts()
    return counts["clients"] == scale.clients and counts["seeded_appointments"] == (
        scale.appointments
    )


def _counts() -> dict[str, int]:
    return {
        "clients": Client.objects.count(),
        "seeded_appointments": Appointment.objects.filter(
            created_by__username__in=SEEDED_CREATORS
        ).count(),
        "trips": Trip.objects.count(),
        "transitions": Transition.objects.count(),
        "stream_events": StreamEvent.objects.count(),
        "therapists": User.objects.filter(role="therapist").count(),
        "drivers": User.objects.filter(role="driver").count(),
    }


# --- meta ---------------------------------------------------------------------------------


def _read_meta() -> dict | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SELECT value FROM bench_meta WHERE key = 'seed'")
        row = cursor.fetchone()
    if row is None:
        return None
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def _write_meta(value: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
        cursor.execute(
            "INSERT INTO bench_meta (key, value) VALUES ('seed', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [Jsonb(value)],
        )


# --- loading ------------------------------------------------------------------------------


def _truncate() -> None:
    tables = {m._meta.db_table for m in apps.get_app_config("scheduling").get_models()}
    for model in apps.get_app_config("scheduling").get_models():
        for m2m in model._meta.local_many_to_many:
            tables.add(m2m.remote_field.through._meta.db_table)
    tables |= {Token._meta.db_table, "django_admin_log", "django_session"}
    existing = set(connection.introspection.table_names())
    names = ", ".join(connection.ops.quote_name(t) for t in sorted(tables & existing))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@dataclass
class Person:
    id: int
    username: str
    hours: tuple[time, time] = (time(8), time(20))
    lunch: bool = False
    services: list[Service] = field(default_factory=list)


def _load(scale: Scale, *, anchor: date, now: datetime) -> None:
    rng = random.Random(SEED)
    services = _services()
    staff = _staff(scale, services, rng, now)
    client_addresses = _clients(scale, rng, now)
    _appointments(scale, rng, anchor=anchor, now=now, staff=staff, addresses=client_addresses)
    _reset_sequences()


def _services() -> list[Service]:
    return Service.objects.bulk_create(
        Service(
            id=n,
            name=spec.name,
            description=spec.description,
            duration_minutes=spec.duration_minutes,
            price=spec.price,
            buffer_minutes=spec.buffer_minutes,
        )
        for n, spec in enumerate(SERVICES, start=1)
    )


HOUR_PATTERNS = ((time(8), time(20)), (time(9), time(19)), (time(10), time(21)))


def _staff(
    scale: Scale, services: list[Service], rng: random.Random, now: datetime
) -> dict[str, list[Person]]:
    password = make_password(PASSWORD)  # one hash for all: PBKDF2 is slow by design
    users: list[User] = []
    people: dict[str, list[Person]] = {"therapist": [], "driver": [], "desk": []}

    def add(role: str, username: str, first: str, last: str, **extra) -> Person:
        person = Person(len(users) + 1, username, **extra)
        users.append(
            User(
                id=person.id,
                username=username,
                password=password,
                first_name=first,
                last_name=last,
                role=role,
                is_staff=role == "manager",
                date_joined=now - timedelta(days=400),
            )
        )
        return person

    add("manager", "bench-manager", "Carmela", "Lim")
    for username in (*SEEDED_CREATORS, LOAD_USER):
        people["desk"].append(add("receptionist", username, "Desk", username.split("-")[-1]))
    swedish, others = services[0], services[1:]
    for n in range(1, scale.therapists + 1):
        offered = rng.sample(others, rng.randint(2, 4))
        if n <= AVAILABILITY_THERAPISTS:
            offered.insert(0, swedish)
        people["therapist"].append(
            add(
                "therapist",
                f"bench-therapist{n:02d}",
                rng.choice(FIRST_NAMES),
                rng.choice(LAST_NAMES),
                hours=HOUR_PATTERNS[n % len(HOUR_PATTERNS)],
                lunch=n % 2 == 0,
                services=offered,
            )
        )
    for n in range(1, scale.drivers + 1):
        people["driver"].append(
            add(
                "driver",
                f"bench-driver{n:02d}",
                rng.choice(FIRST_NAMES),
                rng.choice(LAST_NAMES),
                hours=driver_hours(n),
                lunch=n in DRIVER_LUNCH,
            )
        )
    User.objects.bulk_create(users)

    profiles = TherapistProfile.objects.bulk_create(
        TherapistProfile(id=n, user_id=p.id) for n, p in enumerate(people["therapist"], start=1)
    )
    through = TherapistProfile.services.through
    through.objects.bulk_create(
        through(therapistprofile_id=profile.id, service_id=s.id)
        for profile, p in zip(profiles, people["therapist"], strict=True)
        for s in p.services
    )
    DriverProfile.objects.bulk_create(
        DriverProfile(
            id=n,
            user_id=p.id,
            vehicle="car" if n % 3 == 0 else "motorcycle",
            seats=4 if n % 3 == 0 else 1,
            on_shift=n % 2 == 1,
            available_since=now - timedelta(minutes=5 * n) if n % 2 == 1 else None,
        )
        for n, p in enumerate(people["driver"], start=1)
    )
    field_staff = [*people["therapist"], *people["driver"]]
    WorkingHours.objects.bulk_create(
        WorkingHours(staff_id=p.id, weekday=day, start=p.hours[0], end=p.hours[1])
        for p in field_staff
        for day in range(7)
    )
    Break.objects.bulk_create(
        Break(staff_id=p.id, weekday=day, start=time(12), end=time(13))
        for p in field_staff
        if p.lunch
        for day in range(5)
    )
    Token.objects.create(user_id=people["desk"][-1].id)
    return people


def _clients(scale: Scale, rng: random.Random, now: datetime) -> list[str]:
    phones: set[str] = set()
    rows = []
    addresses = [""]  # index = client id
    while len(rows) < scale.clients:
        phone = f"+63{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**7):07d}"
        if phone in phones:
            continue
        phones.add(phone)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        # A middle initial for some, as the desk types them: more distinct names.
        middle = f" {rng.choice('ABCDEFGHJLMNPRSTV')}." if rng.random() < 0.5 else ""
        address = _address(rng)
        addresses.append(address)
        created = now - timedelta(minutes=rng.randrange(2 * 365 * 24 * 60))
        rows.append(
            {
                "id": len(rows) + 1,
                "name": f"{first}{middle} {last}",
                "phone": phone,
                "phone_digits": phone[1:],
                "email": f"{first}.{last}{len(rows)}@example.com".lower().replace(" ", "")
                if rng.random() < 0.3
                else "",
                "address": address,
                "notes": rng.choice(("", "", "", "Prefers firm pressure.", "Has a dog.")),
                "preferences": {},
                "created_at": created,
                "updated_at": created,
            }
        )
    _copy(Client, rows)
    return addresses


# Shares of statuses among past and future bookings.
PAST_STATUSES = (
    ("completed", 0.82),
    ("cancelled", 0.07),
    ("rejected", 0.03),
    ("expired", 0.04),
    ("no_show", 0.04),
)
FUTURE_STATUSES = (("confirmed", 0.65), ("pending", 0.25), ("cancelled", 0.10))


@dataclass
class Slot:
    therapist: Person
    service: Service
    start: datetime
    end: datetime
    blocked_until: datetime
    travel: timedelta = timedelta(0)

    @property
    def busy_from(self) -> datetime:
        return self.start - self.travel

    @property
    def busy_until(self) -> datetime:
        return self.blocked_until + self.travel


def candidate_slots(
    people: Iterable[Person],
    days: Iterable[date],
    rng: random.Random,
    *,
    travel: timedelta = timedelta(0),
) -> list[Slot]:
    """Bookings filling each therapist's days, with gaps: each busy range (travel there,
    session, buffer, travel back) inside working hours and outside the lunch break, no two
    overlapping."""
    zone = business_zone()
    people = list(people)
    slots = []
    for day in days:
        for person in people:
            opens = at_wall_time(day, person.hours[0], zone)
            closes = at_wall_time(day, person.hours[1], zone)
            lunch = (
                (at_wall_time(day, time(12), zone), at_wall_time(day, time(13), zone))
                if person.lunch and day.weekday() < 5
                else None
            )
            # `cursor` is where the next busy range may begin (leaving base).
            cursor = opens + timedelta(minutes=STEP * rng.choice((0, 0, 1, 2, 4)))
            while True:
                service = rng.choice(person.services)
                start = cursor + travel
                end = start + service.duration
                blocked = end + service.buffer
                back = blocked + travel
                if back > closes:
                    break
                if lunch and cursor < lunch[1] and lunch[0] < back:
                    cursor = lunch[1]
                    continue
                slots.append(Slot(person, service, start, end, blocked, travel))
                gap = STEP * rng.choice((0, 0, 0, 0, 1, 2, 4))
                cursor = back + timedelta(minutes=gap)
    return slots


class DriverPlan:
    """One day's drivers and a driver for every queued trip placed so far: a leg is
    placed only beside the others (on a driver working then, free of their other legs),
    so the day's queued trips can always all be carried. The one who is free for the
    shortest time after the leg takes it, keeping long hours for what only they can do."""

    def __init__(self, free: dict[int, list[Interval]]):
        self.free = free  # each driver's working time that day
        self.held: dict[int, list[Interval]] = {driver: [] for driver in free}

    @classmethod
    def of(cls, drivers: list[Person], day: date) -> DriverPlan:
        zone = business_zone()
        return cls(
            {
                p.id: DaySchedule.build(
                    day,
                    hours=[p.hours],
                    breaks=[(time(12), time(13))] if p.lunch and day.weekday() < 5 else [],
                    zone=zone,
                ).working
                for p in drivers
            }
        )

    def take(self, windows: list[Interval]) -> bool:
        """Place every window (all or none)."""
        placed: list[tuple[int, Interval]] = []
        for window in windows:
            best = None
            for driver, pieces in self.free.items():
                piece = next((p for p in pieces if p.contains(window)), None)
                if piece is None or any(h.overlaps(window) for h in self.held[driver]):
                    continue
                if any(d == driver and w.overlaps(window) for d, w in placed):
                    continue
                if best is None or (piece.end, driver) < best[0]:
                    best = ((piece.end, driver), driver)
            if best is None:
                return False
            placed.append((best[1], window))
        for driver, window in placed:
            self.held[driver].append(window)
        return True


def _pick(rng: random.Random, shares: tuple[tuple[str, float], ...]) -> str:
    roll, total = rng.random(), 0.0
    for status, share in shares:
        total += share
        if roll < total:
            return status
    return shares[-1][0]


def _appointments(
    scale: Scale,
    rng: random.Random,
    *,
    anchor: date,
    now: datetime,
    staff: dict[str, list[Person]],
    addresses: list[str],
) -> None:
    past = [anchor + timedelta(days=d) for d in range(-scale.past_days, 0)]
    future = [anchor + timedelta(days=d) for d in range(scale.future_days)]
    travel = travel_allowance()
    ahead = candidate_slots(staff["therapist"], future, rng, travel=travel)
    ahead = rng.sample(ahead, round(len(ahead) * FUTURE_FILL))
    behind = candidate_slots(staff["therapist"], past, rng)
    if len(behind) < scale.appointments - len(ahead):
        raise RuntimeError(
            f"only {len(behind) + len(ahead)} bookable slots in {len(past) + len(future)} days "
            f"for {scale.appointments} appointments: widen past_days/future_days"
        )
    chosen = ahead + rng.sample(behind, scale.appointments - len(ahead))
    chosen.sort(key=lambda s: (s.start, s.therapist.id))
    desks = [p for p in staff["desk"] if p.username in SEEDED_CREATORS]
    drivers = staff["driver"]
    zone = business_zone()
    plans = {day: DriverPlan.of(drivers, day) for day in future}
    appointments, trips, transitions = [], [], []

    def log(at: datetime, action: str, source: str, target: str, actor: int | None, **subject):
        transitions.append(
            {
                "id": len(transitions) + 1,
                "action": action,
                "from_status": source,
                "to_status": target,
                "actor_id": actor,
                "reason": "",
                "at": at,
                **subject,
            }
        )

    for n, slot in enumerate(chosen, start=1):
        desk = rng.choice(desks).id
        therapist = slot.therapist.id
        if slot.end <= now:
            status = _pick(rng, PAST_STATUSES)
            created = slot.start - timedelta(minutes=rng.randrange(60, 14 * 24 * 60))
        elif slot.start <= now:
            status = "in_progress"
            created = slot.start - timedelta(minutes=rng.randrange(60, 3 * 24 * 60))
        else:
            status = _pick(rng, FUTURE_STATUSES)
            # Pending ones were booked minutes ago: their response window is still open.
            latest = 25 if status == "pending" else 14 * 24 * 60
            created = now - timedelta(minutes=rng.randrange(1, latest))
        created = min(created, slot.start, now)
        deadline = min(created + timedelta(minutes=30), slot.start)
        if slot.travel:
            legs = [
                (leg.leg, (leg.window.start, leg.window.end))
                for leg in legs_for(
                    slot.start, slot.end, buffer=slot.service.buffer, travel=slot.travel
                )
            ]
        else:  # as the engine planned them before travel was counted
            legs = [
                ("dropoff", (slot.start - OLD_LEG, slot.start)),
                ("pickup", (slot.end, slot.end + OLD_LEG)),
            ]
        transport = rng.random() < (FUTURE_TRANSPORT if slot.travel else PAST_TRANSPORT)
        if transport and slot.travel and status in {"pending", "confirmed", "in_progress"}:
            # Queued legs (an in-progress visit's drop-off is done; its pick-up waits).
            waiting = legs[1:] if status == "in_progress" else legs
            plan = plans[slot.start.astimezone(zone).date()]
            transport = plan.take([Interval(*window) for _, window in waiting])
        appointments.append(
            {
                "id": n,
                "client_id": rng.randrange(1, scale.clients + 1),
                "service_id": slot.service.id,
                "therapist_id": therapist,
                "start": slot.start,
                "end": slot.end,
                "blocked_until": slot.blocked_until,
                "travel_minutes": slot.travel // timedelta(minutes=1),
                "area_id": None,
                "busy_from": slot.busy_from,
                "busy_until": slot.busy_until,
                "status": status,
                "address": addresses[rng.randrange(1, scale.clients + 1)],
                "notes": rng.choice(("", "", "", "Gate code at the guardhouse.")),
                "needs_transport": transport,
                "price": slot.service.price,
                "payment_status": (
                    "paid" if status == "completed" and rng.random() < 0.9 else "unpaid"
                ),
                "response_deadline": deadline,
                "created_by_id": desk,
                "created_at": created,
                "updated_at": min(max(created, slot.end), now),
            }
        )
        subject = {"appointment_id": n, "trip_id": None}
        log(created, "create", "", "pending", desk, **subject)
        accepted = created + timedelta(minutes=rng.randrange(1, 29))
        accepted = min(accepted, slot.start)
        if status in {"confirmed", "in_progress", "completed", "no_show"}:
            log(accepted, "accept", "pending", "confirmed", therapist, **subject)
        if status in {"in_progress", "completed"}:
            log(slot.start, "start", "confirmed", "in_progress", therapist, **subject)
        if status == "completed":
            log(slot.end, "complete", "in_progress", "completed", therapist, **subject)
        elif status == "no_show":
            log(
                slot.start + timedelta(minutes=20),
                "no_show",
                "confirmed",
                "no_show",
                therapist,
                **subject,
            )
        elif status == "rejected":
            log(accepted, "reject", "pending", "rejected", therapist, **subject)
        elif status == "expired":
            log(deadline, "expire", "pending", "expired", None, **subject)
        elif status == "cancelled":
            log(accepted, "cancel", "pending", "cancelled", desk, **subject)
        if not transport:
            continue
        for leg, window in legs:
            trip_id = len(trips) + 1
            driven = status in {"completed", "no_show"} or (
                status == "in_progress" and leg == "dropoff"
            )
            cancelled = status in {"cancelled", "rejected", "expired"}
            trip_status = "done" if driven else "cancelled" if cancelled else "queued"
            driver = rng.choice(drivers).id if driven else None
            trips.append(
                {
                    "id": trip_id,
                    "appointment_id": n,
                    "leg": leg,
                    "window_start": window[0],
                    "window_end": window[1],
                    "passengers": 1,
                    "status": trip_status,
                    "driver_id": driver,
                    "assigned_at": window[0] - timedelta(minutes=20) if driven else None,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            on_trip = {"appointment_id": None, "trip_id": trip_id}
            log(created, "create", "", "queued", None, **on_trip)
            if driven:
                log(
                    window[0] - timedelta(minutes=20),
                    "assign",
                    "queued",
                    "assigned",
                    None,
                    **on_trip,
                )
                log(window[0], "depart", "assigned", "en_route", driver, **on_trip)
                log(
                    window[1] - timedelta(minutes=5),
                    "arrive",
                    "en_route",
                    "arrived",
                    driver,
                    **on_trip,
                )
                log(window[1], "complete", "arrived", "done", driver, **on_trip)
            elif cancelled:
                log(accepted, "cancel", "queued", "cancelled", None, **on_trip)
    _copy(Appointment, appointments)
    _copy(Trip, trips)
    _copy(Transition, transitions)
    _stream_history(appointments, trips, transitions)


def _stream_history(appointments: list[dict], trips: list[dict], transitions: list[dict]) -> None:
    """The stream events those changes would have recorded, one per transition in time
    order, each with its recipients (the therapist, and the drivers of its trips), as
    `EventBatch` writes them: a booking's cost depends on this history (the per-user
    previous sequence is read under the counter lock)."""
    therapist = {a["id"]: a["therapist_id"] for a in appointments}
    trip_of = {t["id"]: t for t in trips}
    drivers: dict[int, set[int]] = {}
    for t in trips:
        if t["driver_id"]:
            drivers.setdefault(t["appointment_id"], set()).add(t["driver_id"])
    events, recipients = [], []
    for seq, row in enumerate(sorted(transitions, key=lambda r: (r["at"], r["id"])), start=1):
        if row["appointment_id"]:
            appointment = row["appointment_id"]
            kind = "appointment.created" if row["action"] == "create" else "appointment.updated"
            users = {therapist[appointment], *drivers.get(appointment, ())}
            data = {"id": appointment, "status": row["to_status"]}
        else:
            trip = trip_of[row["trip_id"]]
            appointment = trip["appointment_id"]
            kind = "trip.assigned" if row["action"] == "assign" else "trip.updated"
            users = {therapist[appointment]} | ({trip["driver_id"]} if trip["driver_id"] else set())
            data = {"id": trip["id"], "appointment": appointment, "status": row["to_status"]}
        events.append(
            {
                "seq": seq,
                "type": kind,
                "data": data,
                "appointment_id": row["appointment_id"],
                "trip_id": row["trip_id"],
                "created_at": row["at"],
            }
        )
        base = len(recipients)
        recipients.extend(
            {"id": base + n, "event_id": seq, "user_id": user}
            for n, user in enumerate(sorted(users), start=1)
        )
    _copy(StreamEvent, events)
    _copy(StreamEventRecipient, recipients)
    EventCounter.objects.update_or_create(pk=1, defaults={"last_seq": len(events)})


# --- COPY ---------------------------------------------------------------------------------


def _copy(model: type[models.Model], rows: list[dict]) -> None:
    """COPY `rows` (dicts by attname) into `model`'s table; fields a row leaves out get
    their declared default, so a column someone adds later does not break the bench."""
    fields = model._meta.concrete_fields
    fallback = {}
    for f in fields:
        if f.has_default():
            fallback[f.attname] = f.get_default()
        elif f.null:
            fallback[f.attname] = None
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            fallback[f.attname] = timezone.now()
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with (
        connection.cursor() as wrapper,
        wrapper.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            values = []
            for f in fields:
                value = row[f.attname] if f.attname in row else fallback[f.attname]
                values.append(Jsonb(value) if f.attname in json_fields else value)
            copy.write_row(values)


def _reset_sequences() -> None:
    models_ = list(apps.get_app_config("scheduling").get_models())
    models_.append(TherapistProfile.services.through)
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models_):
            cursor.execute(statement)
