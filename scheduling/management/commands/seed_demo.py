"""`manage.py seed_demo`: demo staff, services, clients, the past four weeks (completed,
paid, refunded, no-show: _demo_history.py) and two days of bookings ahead.

Idempotent: each step creates only what is missing, so a second run changes nothing.
Bookings go through the same services the desk uses, at times `availability()` offers,
so every demo appointment is one the product itself would accept.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from scheduling import states
from scheduling.errors import ValidationFailed
from scheduling.models import Appointment, Break, Client, Service, ServiceArea, User
from scheduling.phones import digits_only, normalize_phone
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.availability import availability
from scheduling.services.staff import create_staff
from scheduling.services.travel import travel_for

from ._demo_history import HISTORY_DAYS, seed_history

SEED = 2026
# One service area per city the demo addresses are in: one-way minutes from the base
# (in Makati), as a dispatcher in Metro Manila traffic would reckon them.
AREA_TRAVEL_MINUTES = {
    "Makati City": 20,
    "Mandaluyong City": 30,
    "San Juan City": 35,
    "Taguig City": 35,
    "Pasig City": 40,
    "Manila": 45,
    "Quezon City": 60,
    "Muntinlupa City": 60,
}
CLIENT_COUNT = 500
BOOKINGS_PER_DAY = 24
TRANSPORT_SHARE = 0.4
ACCEPTED_SHARE = 0.5
FIELD_HOURS = "08:00-20:00"
LUNCH = (time(12), time(13))
WEEKDAYS = range(5)  # Monday to Friday


@dataclass(frozen=True)
class DemoService:
    name: str
    duration_minutes: int
    price: Decimal
    buffer_minutes: int
    description: str


SERVICES = (
    DemoService("Swedish massage", 60, Decimal("900.00"), 15, "Long, gliding strokes."),
    DemoService("Shiatsu", 60, Decimal("1000.00"), 15, "Finger pressure along meridians."),
    DemoService("Hot stone massage", 90, Decimal("1500.00"), 30, "Heated basalt stones."),
    DemoService("Thai massage", 120, Decimal("1400.00"), 30, "Assisted stretching, on a mat."),
    DemoService("Foot reflexology", 60, Decimal("700.00"), 15, "Pressure points of the feet."),
    DemoService("Prenatal massage", 90, Decimal("1300.00"), 15, "Side-lying, after 12 weeks."),
)


@dataclass(frozen=True)
class DemoStaff:
    role: str
    username: str
    password: str
    first_name: str
    last_name: str
    phone: str
    services: tuple[str, ...] = ()
    vehicle: str | None = None
    lunch_break: bool = False


SWEDISH, SHIATSU, HOT_STONE, THAI, FOOT, PRENATAL = (s.name for s in SERVICES)


def _therapist(
    n: int, first: str, last: str, services: tuple[str, ...], *, lunch_break: bool = False
) -> DemoStaff:
    return DemoStaff(
        states.THERAPIST,
        f"therapist{n}",
        "demo-therapist-2026",
        first,
        last,
        f"0917555011{n}",
        services,
        lunch_break=lunch_break,
    )


def _driver(n: int, first: str, last: str, vehicle: str) -> DemoStaff:
    return DemoStaff(
        states.DRIVER, f"driver{n}", "demo-driver-2026", first, last, f"0917555012{n}", (), vehicle
    )


STAFF = (
    DemoStaff(states.MANAGER, "manager", "demo-manager-2026", "Carmela", "Lim", "09175550101"),
    DemoStaff(states.RECEPTIONIST, "desk", "demo-desk-2026", "Joy", "Pascual", "09175550102"),
    _therapist(1, "Maricel", "Dela Cruz", (SWEDISH, SHIATSU, FOOT), lunch_break=True),
    _therapist(2, "Jennifer", "Bautista", (SWEDISH, HOT_STONE, PRENATAL), lunch_break=True),
    _therapist(3, "Rodel", "Villanueva", (SHIATSU, THAI, FOOT)),
    _therapist(4, "Kristine", "Mendoza", (SWEDISH, PRENATAL, FOOT), lunch_break=True),
    _therapist(5, "Jomar", "Santos", (SWEDISH, THAI, HOT_STONE)),
    _therapist(6, "Liza", "Garcia", (SHIATSU, HOT_STONE, THAI, PRENATAL), lunch_break=True),
    _driver(1, "Ramon", "Aquino", "motorcycle"),
    _driver(2, "Edgardo", "Castillo", "car"),
    _driver(3, "Noel", "Ramos", "motorcycle"),
    _driver(4, "Arnel", "Navarro", "car"),
)

FIRST_NAMES = (
    "Maria", "Jose", "Juan", "Ana", "Mark", "Angelica", "John Paul", "Kimberly", "Christian",
    "Jasmine", "Rhea", "Paolo", "Camille", "Miguel", "Patricia", "Rafael", "Bea", "Carlo",
    "Danica", "Enrique", "Francesca", "Gabriel", "Hazel", "Ivan", "Jocelyn", "Kevin",
    "Lorna", "Marites", "Nestor", "Olivia", "Ricardo", "Rosario", "Teresita", "Victor",
    "Wilma", "Aileen", "Benjie", "Cherry", "Dindo", "Erlinda",
)  # fmt: skip
LAST_NAMES = (
    "Santos", "Reyes", "Cruz", "Bautista", "Ocampo", "Garcia", "Mendoza", "Torres",
    "Tomas", "Andrada", "Castillo", "Flores", "Villanueva", "Ramos", "Castro", "Rivera",
    "Aquino", "Navarro", "Salazar", "Mercado", "Dizon", "Pascual", "Soriano", "Gonzales",
    "Lim", "Tan", "Sy", "Domingo", "Manalo", "Aguilar", "De Leon", "Dela Cruz",
    "Fernandez", "Lopez", "Macaraeg", "Panganiban", "Quiambao", "Sison", "Valdez", "Yap",
)  # fmt: skip
# Globe, Smart and DITO mobile prefixes (the digits after +63).
MOBILE_PREFIXES = (
    "905", "906", "915", "916", "917", "926", "927", "935", "936", "945", "955", "956",
    "965", "966", "975", "977", "995", "997", "908", "909", "910", "912", "918", "919",
    "920", "921", "928", "929", "930", "938", "939", "946", "947", "948", "949", "950",
    "951", "961", "998", "999", "991", "992", "993", "994",
)  # fmt: skip
BARANGAYS = {
    "Makati City": ("Poblacion", "Bel-Air", "San Antonio", "Guadalupe Nuevo", "Pio del Pilar"),
    "Taguig City": ("Fort Bonifacio", "Western Bicutan", "Ususan", "Pinagsama"),
    "Pasig City": ("Kapitolyo", "San Antonio", "Ugong", "Rosario"),
    "Quezon City": ("Diliman", "Cubao", "Loyola Heights", "Kamuning", "Teachers Village East"),
    "Mandaluyong City": ("Highway Hills", "Plainview", "Wack-Wack Greenhills"),
    "Manila": ("Malate", "Ermita", "Sampaloc", "Santa Mesa"),
    "San Juan City": ("Greenhills", "Little Baguio"),
    "Parañaque City": ("BF Homes", "San Antonio"),
    "Muntinlupa City": ("Alabang", "Ayala Alabang"),
}
STREETS = (
    "Mabini St.", "Rizal St.", "Bonifacio St.", "Luna St.", "Acacia Ln.", "Sampaguita St.",
    "Narra St.", "Molave St.", "Ilang-Ilang St.", "Kamagong St.", "Jupiter St.",
    "Kalayaan Ave.", "Aguinaldo St.", "Mayon St.", "Orchid St.", "Dao St.",
)  # fmt: skip
TOWERS = ("Tower 1", "Tower 2", "Bldg. A", "North Wing", "Residences")
CLIENT_NOTES = (
    "",
    "",
    "",
    "Prefers firm pressure.",
    "Prefers a female therapist.",
    "Guardhouse asks for ID; give the unit number.",
    "Has a dog; ring the bell twice.",
    "Lower back pain; avoid deep pressure on the spine.",
)
BOOKING_NOTES = ("", "", "", "Gate code at the guardhouse.", "Please bring a mat.")


@dataclass
class Tally:
    created: int = 0
    existing: int = 0

    def __str__(self) -> str:
        return f"{self.created} new, {self.existing} already there"


class Command(BaseCommand):
    help = (
        "Load demo data (staff, services, 500 clients, the past four weeks settled, two "
        "days of bookings ahead) and print the demo logins. Running it again changes nothing."
    )

    def handle(self, *args, **options) -> None:
        # One transaction: a failure part-way leaves the database as it was.
        with transaction.atomic():
            services, service_tally = self.seed_services()
            users, staff_tally = self.seed_staff(services)
            area_tally = self.seed_areas()
            client_ids, client_tally = self.seed_clients()
            history_tally = self.seed_history(users, services, client_ids)
            booking_tally = self.seed_appointments(users, services, client_ids)
        self.stdout.write(f"Services: {service_tally}")
        self.stdout.write(f"Staff: {staff_tally}")
        self.stdout.write(f"Service areas: {area_tally}")
        self.stdout.write(f"Clients: {client_tally}")
        self.stdout.write(
            f"Past {HISTORY_DAYS} days: {history_tally} (completed, paid, refunded, no-show)"
        )
        self.stdout.write(f"Appointments: {booking_tally} (days with demo bookings are skipped)")
        self.print_logins()

    # --- steps ----------------------------------------------------------------------------

    def seed_services(self) -> tuple[dict[str, Service], Tally]:
        tally = Tally()
        services = {}
        for spec in SERVICES:
            # Matched by name only: a manager's later price change is kept, not reverted.
            service, created = Service.objects.get_or_create(
                name=spec.name,
                defaults={
                    "duration_minutes": spec.duration_minutes,
                    "price": spec.price,
                    "buffer_minutes": spec.buffer_minutes,
                    "description": spec.description,
                },
            )
            services[spec.name] = service
            tally.created += created
            tally.existing += not created
        return services, tally

    def seed_staff(self, services: dict[str, Service]) -> tuple[dict[str, User], Tally]:
        tally = Tally()
        existing = {u.username: u for u in User.objects.filter(username__in=_usernames())}
        users = {}
        for spec in STAFF:
            user = existing.get(spec.username)
            if user is None:
                user = self.create_demo_staff(spec, services)
                tally.created += 1
            elif user.role != spec.role:
                raise CommandError(
                    f"User '{spec.username}' exists as a {user.role}, not a {spec.role}; "
                    "seed_demo will not book with it. Rename that user or use a fresh database."
                )
            else:
                tally.existing += 1
            users[spec.username] = user
        return users, tally

    def create_demo_staff(self, spec: DemoStaff, services: dict[str, Service]) -> User:
        try:
            user = create_staff(
                role=spec.role,
                username=spec.username,
                password=spec.password,
                first_name=spec.first_name,
                last_name=spec.last_name,
                phone=spec.phone,
                service_ids=[services[name].pk for name in spec.services],
                vehicle=spec.vehicle,
                hours=FIELD_HOURS if spec.role in {states.THERAPIST, states.DRIVER} else None,
            )
        except ValidationFailed as exc:
            raise CommandError(f"{spec.username}: {exc.message}") from exc
        # Breaks only with a new user: one a manager removed later is not brought back.
        if spec.lunch_break:
            Break.objects.bulk_create(
                Break(staff=user, weekday=day, start=LUNCH[0], end=LUNCH[1]) for day in WEEKDAYS
            )
        return user

    def seed_areas(self) -> Tally:
        tally = Tally()
        for city, minutes in AREA_TRAVEL_MINUTES.items():
            # Matched by name: a manager's later change of the minutes is kept.
            _, created = ServiceArea.objects.get_or_create(
                name=city, defaults={"travel_minutes": minutes}
            )
            tally.created += created
            tally.existing += not created
        return tally

    def seed_clients(self) -> tuple[list[int], Tally]:
        wanted = demo_clients()
        phones = [c.phone for c in wanted]
        taken = set(Client.objects.filter(phone__in=phones).values_list("phone", flat=True))
        areas = dict(ServiceArea.objects.values_list("name", "pk"))
        # bulk_create skips Client.save(), which is what fills phone_digits: fill it here.
        for client in wanted:
            client.phone_digits = digits_only(client.phone)
            client.area_id = areas.get(_city_of(client.address))
        Client.objects.bulk_create(c for c in wanted if c.phone not in taken)
        ids = list(
            Client.objects.filter(phone__in=phones).order_by("pk").values_list("pk", flat=True)
        )
        return ids, Tally(created=len(wanted) - len(taken), existing=len(taken))

    def seed_history(
        self, users: dict[str, User], services: dict[str, Service], client_ids: list[int]
    ) -> Tally:
        therapists = {
            u.pk: u for u in User.objects.filter(role=states.THERAPIST, username__in=_usernames())
        }
        today = timezone.localdate()
        self.history_from = (today - timedelta(days=HISTORY_DAYS)).isoformat()
        self.history_to = (today - timedelta(days=1)).isoformat()
        created, existing = seed_history(
            desk=users["desk"],
            manager=users["manager"],
            therapists=therapists,
            services=list(services.values()),
            client_ids=client_ids,
            today=today,
        )
        return Tally(created=created, existing=existing)

    def seed_appointments(
        self, users: dict[str, User], services: dict[str, Service], client_ids: list[int]
    ) -> Tally:
        tally = Tally()
        desk = users["desk"]
        tomorrow = timezone.localdate() + timedelta(days=1)
        for day in (tomorrow, tomorrow + timedelta(days=1)):
            booked = Appointment.objects.on_day(day).filter(created_by=desk)
            if booked.exists():
                tally.existing += booked.count()
                continue
            tally.created += self.book_day(day, desk, list(services.values()), client_ids)
        return tally

    def book_day(
        self, day: date, desk: User, services: list[Service], client_ids: list[int]
    ) -> int:
        # Seeded by the day so that a given date always gets the same bookings.
        rng = random.Random(f"{SEED}-{day.isoformat()}")
        therapists = {
            u.pk: u for u in User.objects.filter(role=states.THERAPIST, username__in=_usernames())
        }
        booked = 0
        for _ in range(BOOKINGS_PER_DAY):
            service = rng.choice(services)
            client = Client.objects.select_related("area").get(pk=rng.choice(client_ids))
            needs_transport = rng.random() < TRANSPORT_SHARE
            # Only demo therapists: a database with real staff keeps their diaries clean.
            # Asked as the desk asks, so every start offered books (drivers included).
            offers = [
                o
                for o in availability(
                    service=service,
                    day=day,
                    travel=travel_for(client=client).time,
                    needs_transport=needs_transport,
                )
                if o.starts and o.therapist.pk in therapists
            ]
            if not offers:
                continue
            offer = rng.choice(offers)
            appointment = create_appointment(
                actor=desk,
                client_id=client.pk,
                service_id=service.pk,
                therapist_id=offer.therapist.pk,
                start=rng.choice(offer.starts),
                notes=rng.choice(BOOKING_NOTES),
                needs_transport=needs_transport,
            )
            booked += 1
            if rng.random() < ACCEPTED_SHARE:
                act_on_appointment(
                    actor=therapists[appointment.therapist_id],
                    appointment_id=appointment.pk,
                    action="accept",
                )
        return booked

    # --- output ---------------------------------------------------------------------------

    def print_logins(self) -> None:
        rows = [("role", "username", "password")]
        rows += [(s.role, s.username, s.password) for s in STAFF]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        self.stdout.write("")
        self.stdout.write("Demo logins (demo credentials: never seed a production database):")
        for n, row in enumerate(rows):
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
            if n == 0:
                self.stdout.write("  ".join("-" * w for w in widths))
        by_role: dict[str, list[str]] = {}
        for spec in STAFF:
            by_role.setdefault(spec.role, []).append(spec.username)

        def who(*roles: str) -> str:
            return ", ".join(name for role in roles for name in by_role.get(role, []))

        site = "http://127.0.0.1:8000"  # where `make run` serves it
        self.stdout.write("")
        self.stdout.write(f"Open {site}/ and sign in: each role lands on its own page.")
        for url, users in (
            ("/desk/", who(states.RECEPTIONIST, states.MANAGER)),
            ("/therapist/", who(states.THERAPIST)),
            ("/driver/", who(states.DRIVER)),
            ("/reports/", who(states.MANAGER)),
        ):
            self.stdout.write(f"  {site}{url:<12} {users}")
        self.stdout.write(
            f"The past {HISTORY_DAYS} days' money: {site}/reports/?from={self.history_from}"
            f"&to={self.history_to} (as manager); cash still to verify: {site}/desk/queues/."
        )
        self.stdout.write(f"Open {site}/admin/ as {who(states.MANAGER)} for the admin.")
        self.stdout.write(
            f"REST API: {site}/api/docs/ (a token from POST /api/auth/token/ with any login above)."
        )


def _usernames() -> list[str]:
    return [s.username for s in STAFF]


def demo_clients() -> list[Client]:
    """The same CLIENT_COUNT clients on every run (unsaved), with unique phones."""
    rng = random.Random(SEED)
    clients: list[Client] = []
    phones: set[str] = set()
    while len(clients) < CLIENT_COUNT:
        phone = normalize_phone(f"+63{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**7):07d}")
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        address, notes = _address(rng), rng.choice(CLIENT_NOTES)
        if phone in phones:
            continue
        phones.add(phone)
        email = f"{first}.{last}{len(clients)}@example.com".lower().replace(" ", "")
        clients.append(
            Client(
                name=f"{first} {last}",
                phone=phone,
                email=email if rng.random() < 0.3 else "",
                address=address,
                notes=notes,
            )
        )
    return clients


def _city_of(address: str) -> str:
    """'12 Mabini St, Poblacion, Makati City, Metro Manila' -> 'Makati City'."""
    parts = [p.strip() for p in address.split(",")]
    return parts[-2] if len(parts) >= 2 else ""


def _address(rng: random.Random) -> str:
    city = rng.choice(sorted(BARANGAYS))
    barangay = rng.choice(BARANGAYS[city])
    street = f"{rng.randint(1, 250)} {rng.choice(STREETS)}"
    if rng.random() < 0.25:
        street = f"Unit {rng.randint(2, 40)}{rng.choice('ABCDEF')}, {rng.choice(TOWERS)}, {street}"
    return f"{street}, {barangay}, {city}, Metro Manila"
