"""The manager's figures for a range of business days: appointments by status, revenue,
sessions and revenue per therapist, trips per driver, and the money (selectors/revenue.py:
collected by method and by day less refunds, balances owed, each therapist's collections).

One function, `build_report`, feeds the reports page and its CSV export, so the two can
never disagree. Every figure is a SQL aggregate; the whole report is eight queries
whatever the number of rows (statuses, therapists, drivers, payments received, refunds,
balances owed, collections, and the names).

Days are business-time-zone days (settings.TIME_ZONE): an appointment belongs to the day
its start falls on there, a trip to the day its window starts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from scheduling import states
from scheduling.domain import local_day_bounds
from scheduling.errors import ValidationFailed
from scheduling.models import Appointment, Leg, Trip, User
from scheduling.selectors.revenue import ZERO, Money, cents, money_figures, with_names
from scheduling.states import AppointmentStatus, TripStatus

MAX_DAYS = 366
FIRST_YEAR, LAST_YEAR = 2000, 2999
# The order a manager reads a booking's life in.
STATUS_ORDER = (
    AppointmentStatus.PENDING,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.IN_PROGRESS,
    AppointmentStatus.COMPLETED,
    AppointmentStatus.NO_SHOW,
    AppointmentStatus.CANCELLED,
    AppointmentStatus.REJECTED,
    AppointmentStatus.EXPIRED,
)
STATUS_LABELS = dict(AppointmentStatus.choices)
# Booked but not yet delivered: money expected, not earned.
BOOKED_STATUSES = (AppointmentStatus.CONFIRMED, AppointmentStatus.IN_PROGRESS)
# The therapist said no, or never answered.
DECLINED_STATUSES = (AppointmentStatus.REJECTED, AppointmentStatus.EXPIRED)


@dataclass(frozen=True)
class StatusRow:
    status: str
    label: str
    count: int
    value: Decimal


@dataclass(frozen=True)
class TherapistRow:
    therapist_id: int
    name: str
    appointments: int
    sessions: int
    revenue: Decimal
    no_shows: int
    declined: int


@dataclass(frozen=True)
class DriverRow:
    driver_id: int
    name: str
    trips: int
    dropoffs: int
    pickups: int


@dataclass(frozen=True)
class Standing:
    """Standing bookings (issue 14): each series with an occurrence in the range counted
    once, beside its occurrences counted per session."""

    series: int = 0
    occurrences: int = 0


@dataclass(frozen=True)
class Grouped:
    """Couples and group visits (issue 14): each visit with a session in the range counted
    once, beside its sessions counted per appointment (as series are)."""

    visits: int = 0
    sessions: int = 0


@dataclass(frozen=True)
class Report:
    first_day: date
    last_day: date
    by_status: list[StatusRow]
    therapists: list[TherapistRow]
    drivers: list[DriverRow]
    money: Money
    standing: Standing = Standing()
    grouped: Grouped = Grouped()

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def count(self, status: str) -> int:
        return next((row.count for row in self.by_status if row.status == status), 0)

    def value(self, *statuses: str) -> Decimal:
        return cents(sum((row.value for row in self.by_status if row.status in statuses), ZERO))

    @property
    def appointments(self) -> int:
        return sum(row.count for row in self.by_status)

    @property
    def listed_value(self) -> Decimal:
        return cents(sum((row.value for row in self.by_status), ZERO))

    @property
    def revenue(self) -> Decimal:
        """The price of the completed appointments: money earned."""
        return self.value(AppointmentStatus.COMPLETED)

    @property
    def booked_value(self) -> Decimal:
        """The price of the confirmed and in-progress ones: money expected, not earned."""
        return self.value(*BOOKED_STATUSES)

    @property
    def sessions(self) -> int:
        return self.count(AppointmentStatus.COMPLETED)

    @property
    def therapist_totals(self) -> TherapistRow:
        rows = self.therapists
        return TherapistRow(
            therapist_id=0,
            name="Total",
            appointments=sum(r.appointments for r in rows),
            sessions=sum(r.sessions for r in rows),
            revenue=cents(sum((r.revenue for r in rows), ZERO)),
            no_shows=sum(r.no_shows for r in rows),
            declined=sum(r.declined for r in rows),
        )

    @property
    def driver_totals(self) -> DriverRow:
        rows = self.drivers
        return DriverRow(
            driver_id=0,
            name="Total",
            trips=sum(r.trips for r in rows),
            dropoffs=sum(r.dropoffs for r in rows),
            pickups=sum(r.pickups for r in rows),
        )


def check_range(first_day: date, last_day: date) -> None:
    """A range a person meant: in order, at most MAX_DAYS days, in plausible years."""
    for field, day in (("from", first_day), ("to", last_day)):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise ValidationFailed.on(
                field, f"Give a date in the years {FIRST_YEAR} to {LAST_YEAR}."
            )
    if first_day > last_day:
        raise ValidationFailed.on("to", "The end date is before the start date.")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise ValidationFailed.on(
            "to", f"A report covers at most {MAX_DAYS} days; shorten the range."
        )


def build_report(*, first_day: date, last_day: date) -> Report:
    """The figures for the business days `first_day` to `last_day`, both included."""
    check_range(first_day, last_day)
    start, _ = local_day_bounds(first_day)
    _, end = local_day_bounds(last_day)
    appointments = Appointment.objects.filter(start__gte=start, start__lt=end)
    by_status = _by_status(appointments)
    per_therapist = _per_therapist(appointments)
    per_driver = _per_driver(
        Trip.objects.filter(
            status=TripStatus.DONE,
            driver__isnull=False,
            window_start__gte=start,
            window_start__lt=end,
        )
    )
    money, collected = money_figures(first_day=first_day, last_day=last_day, start=start, end=end)
    names = _staff_names({*per_therapist, *per_driver, *collected})
    standing, grouped = _standing(appointments)
    return Report(
        first_day=first_day,
        last_day=last_day,
        by_status=by_status,
        therapists=_therapist_rows(per_therapist, names),
        drivers=_driver_rows(per_driver, names),
        money=with_names(money, collected, {pk: p.name for pk, p in names.items()}),
        standing=standing,
        grouped=grouped,
    )


def _standing(appointments: QuerySet[Appointment]) -> tuple[Standing, Grouped]:
    """Series and visits, each counted once and per session, in one query."""
    figures = appointments.aggregate(
        series_count=Count("series", distinct=True),
        occurrence_count=Count("id", filter=Q(series__isnull=False)),
        visit_count=Count("visit", distinct=True),
        visit_sessions=Count("id", filter=Q(visit__isnull=False)),
    )
    return (
        Standing(series=figures["series_count"], occurrences=figures["occurrence_count"]),
        Grouped(visits=figures["visit_count"], sessions=figures["visit_sessions"]),
    )


def _by_status(appointments: QuerySet[Appointment]) -> list[StatusRow]:
    counted = {
        row["status"]: row
        for row in appointments.values("status")
        .annotate(count=Count("id"), value=Sum("price"))
        .order_by()
    }
    known = [*STATUS_ORDER, *sorted(set(counted) - set(STATUS_ORDER))]
    return [
        StatusRow(
            status=status,
            label=STATUS_LABELS.get(status, status),
            count=counted.get(status, {}).get("count", 0),
            value=cents(counted.get(status, {}).get("value")),
        )
        for status in known
    ]


def _per_therapist(appointments: QuerySet[Appointment]) -> dict[int, dict[str, Any]]:
    completed = Q(status=AppointmentStatus.COMPLETED)
    return {
        row["therapist_id"]: row
        for row in appointments.values("therapist_id")
        .annotate(
            appointments=Count("id"),
            sessions=Count("id", filter=completed),
            revenue=Sum("price", filter=completed),
            no_shows=Count("id", filter=Q(status=AppointmentStatus.NO_SHOW)),
            declined=Count("id", filter=Q(status__in=DECLINED_STATUSES)),
        )
        .order_by()
    }


def _per_driver(done_trips: QuerySet[Trip]) -> dict[int, dict[str, Any]]:
    return {
        row["driver_id"]: row
        for row in done_trips.values("driver_id")
        .annotate(
            trips=Count("id"),
            dropoffs=Count("id", filter=Q(leg=Leg.DROPOFF)),
            pickups=Count("id", filter=Q(leg=Leg.PICKUP)),
        )
        .order_by()
    }


@dataclass(frozen=True)
class _Person:
    name: str
    role: str
    active: bool


def _staff_names(ids: set[int]) -> dict[int, _Person]:
    """Everyone with figures, and every active therapist and driver: a manager wants to
    see who did nothing in the range too."""
    people = User.objects.filter(
        Q(pk__in=ids) | Q(role__in=[states.THERAPIST, states.DRIVER], is_active=True)
    ).values("pk", "first_name", "last_name", "username", "role", "is_active")
    return {
        p["pk"]: _Person(
            name=f"{p['first_name']} {p['last_name']}".strip() or p["username"],
            role=p["role"],
            active=p["is_active"],
        )
        for p in people
    }


def _therapist_rows(
    counted: dict[int, dict[str, Any]], people: dict[int, _Person]
) -> list[TherapistRow]:
    ids = set(counted) | {pk for pk, p in people.items() if p.role == states.THERAPIST and p.active}
    rows = [
        TherapistRow(
            therapist_id=pk,
            name=people[pk].name if pk in people else f"Staff #{pk}",
            appointments=counted.get(pk, {}).get("appointments", 0),
            sessions=counted.get(pk, {}).get("sessions", 0),
            revenue=cents(counted.get(pk, {}).get("revenue")),
            no_shows=counted.get(pk, {}).get("no_shows", 0),
            declined=counted.get(pk, {}).get("declined", 0),
        )
        for pk in ids
    ]
    return sorted(rows, key=lambda r: (-r.revenue, -r.sessions, r.name.lower(), r.therapist_id))


def _driver_rows(counted: dict[int, dict[str, Any]], people: dict[int, _Person]) -> list[DriverRow]:
    ids = set(counted) | {pk for pk, p in people.items() if p.role == states.DRIVER and p.active}
    rows = [
        DriverRow(
            driver_id=pk,
            name=people[pk].name if pk in people else f"Staff #{pk}",
            trips=counted.get(pk, {}).get("trips", 0),
            dropoffs=counted.get(pk, {}).get("dropoffs", 0),
            pickups=counted.get(pk, {}).get("pickups", 0),
        )
        for pk in ids
    ]
    return sorted(rows, key=lambda r: (-r.trips, r.name.lower(), r.driver_id))


def csv_rows(report: Report, *, business: str, zone: str) -> list[list[str]]:
    """The report as CSV rows: one block per table, money as decimal strings."""
    rows: list[list[str]] = [
        ["Report", business],
        ["From", report.first_day.isoformat()],
        ["To", report.last_day.isoformat()],
        ["Time zone", zone],
        [],
        ["Appointments by status"],
        ["Status", "Appointments", "Value"],
        *([row.label, str(row.count), str(row.value)] for row in report.by_status),
        ["Total", str(report.appointments), str(report.listed_value)],
        [],
        ["Standing bookings"],
        ["Series (each counted once)", str(report.standing.series)],
        ["Their sessions in the range", str(report.standing.occurrences)],
        [],
        ["Couples and group visits"],
        ["Visits (each counted once)", str(report.grouped.visits)],
        ["Their sessions in the range", str(report.grouped.sessions)],
        [],
        ["Revenue"],
        ["Completed (earned)", str(report.revenue)],
        ["Confirmed and in progress (booked, not yet earned)", str(report.booked_value)],
        [],
        ["Per therapist"],
        ["Therapist", "Appointments", "Sessions completed", "Revenue", "No-shows", "Declined"],
    ]
    for therapist in [*report.therapists, report.therapist_totals]:
        rows.append(
            [
                therapist.name,
                str(therapist.appointments),
                str(therapist.sessions),
                str(therapist.revenue),
                str(therapist.no_shows),
                str(therapist.declined),
            ]
        )
    rows += [[], ["Per driver"], ["Driver", "Trips done", "Drop-offs", "Pickups"]]
    for driver in [*report.drivers, report.driver_totals]:
        rows.append([driver.name, str(driver.trips), str(driver.dropoffs), str(driver.pickups)])
    return rows + _money_rows(report.money)


def _money_rows(money: Money) -> list[list[str]]:
    """The money blocks: the same figures as the page's, in the same order."""
    rows: list[list[str]] = [
        [],
        ["Money collected"],
        ["Method", "Collected", "Refunded", "Net"],
        *([m.label, str(m.collected), str(m.refunded), str(m.net)] for m in money.methods),
        ["Total", str(money.collected), str(money.refunded), str(money.net)],
        [],
        ["Money collected by day"],
        ["Day", *(m.label for m in money.methods), "Refunded", "Net"],
    ]
    for day in money.days:
        rows.append(
            [
                day.day.isoformat(),
                *(str(day.method(m.method)) for m in money.methods),
                str(day.refunded),
                str(day.net),
            ]
        )
    rows += [
        [],
        ["Outstanding balances (completed sessions)"],
        ["Appointment", "Start", "Client", "Therapist", "Price", "Paid", "Due"],
    ]
    for owed in money.owing:
        rows.append(
            [
                str(owed.appointment_id),
                timezone.localtime(owed.start).strftime("%Y-%m-%d %H:%M"),
                owed.client,
                owed.therapist,
                str(owed.price),
                str(owed.paid),
                str(owed.due),
            ]
        )
    rows.append(
        ["Total", f"{money.owing_count} appointments", "", "", "", "", str(money.owing_total)]
    )
    rows += [
        [],
        ["Collections per therapist"],
        ["Therapist", "Cash verified", "E-wallet verified", "Verified total", "Not yet verified"],
    ]
    for c in [*money.collectors, money.collector_totals]:
        rows.append([c.name, str(c.cash), str(c.ewallet), str(c.verified), str(c.unverified)])
    return rows


def default_range(today: date) -> tuple[date, date]:
    """This month, first to last day."""
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return first, next_month - timedelta(days=1)
