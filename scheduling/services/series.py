"""Standing bookings (issue 14 item 2): the dates of a repeat, booking every one of them
as one Series, and the occurrences' place in it.

Each occurrence goes through `create_appointment`, the one booking engine, so it meets
exactly the checks of a single booking. The therapist answers the series once: only the
first occurrence booked has a response deadline, and accepting, rejecting or expiring it
carries to the series' other pending occurrences (`appointments.act_on_appointment`).
Cancel and reschedule with a scope are in `services/series_scopes.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Required, TypedDict, Unpack

from django.db import transaction
from django.utils import timezone

from scheduling.errors import (
    Conflict,
    DomainError,
    OccurrenceFailure,
    SeriesConflict,
    ValidationFailed,
)
from scheduling.models import Appointment, Client, Series, User
from scheduling.services.appointments import _bookable_service, _get, create_appointment
from scheduling.services.choosing import _nobody_free, choose_therapist
from scheduling.services.common import require_aware

EVERY_WEEKS = (1, 2, 4)
MIN_COUNT, MAX_COUNT = 2, 26
# The name the desk and the API used before the failure moved to scheduling/errors.py.
Failure = OccurrenceFailure

__all__ = [
    "EVERY_WEEKS",
    "MAX_COUNT",
    "MIN_COUNT",
    "Booking",
    "Failure",
    "Repeat",
    "SeriesBooking",
    "SeriesConflict",
    "book_occurrences",
    "book_series",
    "occurrence_starts",
    "position",
    "preview",
    "preview_series",
]


class Booking(TypedDict, total=False):
    """What every occurrence is booked with: `create_appointment`'s arguments but the
    start and the series."""

    actor: Required[User]
    client_id: Required[int]
    service_id: Required[int]
    therapist_id: Required[int]
    address: str
    notes: str
    needs_transport: bool
    area_id: int | None
    now: datetime | None


@dataclass(frozen=True)
class Repeat:
    """How often and how long: every 1, 2 or 4 weeks, `count` dates or `until` a day."""

    every_weeks: int
    count: int | None = None
    until: date | None = None

    def starts(self, first: datetime) -> list[datetime]:
        return occurrence_starts(
            first=first, every_weeks=self.every_weeks, count=self.count, until=self.until
        )


@dataclass(frozen=True)
class SeriesBooking:
    series: Series
    appointments: list[Appointment]
    skipped: list[OccurrenceFailure] = field(default_factory=list)


def occurrence_starts(
    *, first: datetime, every_weeks: int, count: int | None = None, until: date | None = None
) -> list[datetime]:
    """Every start of the repeat, first included, at the same LOCAL wall time each week.

    Weeks are added to the local date and made aware again, so a series crossing a DST
    change stays at 18:00 rather than drifting by an hour as adding 7×24 h would."""
    require_aware(first, "start")
    if every_weeks not in EVERY_WEEKS:
        raise ValidationFailed.on("every_weeks", "every_weeks must be 1, 2 or 4.")
    if (count is None) == (until is None):
        raise ValidationFailed.on("repeat", "Give either count or until, not both.")
    local = timezone.localtime(first).replace(tzinfo=None)
    if count is None:
        assert until is not None
        count = (until - local.date()).days // (7 * every_weeks) + 1
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise ValidationFailed.on(
            "count" if until is None else "until",
            f"A series has {MIN_COUNT} to {MAX_COUNT} occurrences (this one has {count}).",
        )
    step = timedelta(weeks=every_weeks)
    return [timezone.make_aware(local + i * step) for i in range(count)]


def book_series(
    *,
    actor: User,
    client_id: int,
    service_id: int,
    therapist_id: int | None,
    start: datetime,
    repeat: Repeat,
    skip_conflicts: bool = False,
    address: str = "",
    notes: str = "",
    needs_transport: bool = False,
    area_id: int | None = None,
    now: datetime | None = None,
) -> SeriesBooking:
    """Book `client` every `repeat` from `start` as one Series, in one transaction.

    All or nothing by default (SeriesConflict names every date that cannot be booked, and
    no row is written); with `skip_conflicts` the free dates are booked and the others
    returned as `skipped`. With no therapist, the one "any free therapist" picks for the
    first date takes every date (a standing booking keeps its therapist)."""
    now = now or timezone.now()
    starts = repeat.starts(start)
    if therapist_id is None:
        therapist_id = _chosen(client_id, service_id, start, needs_transport, area_id, now)
    booking = Booking(
        actor=actor,
        client_id=client_id,
        service_id=service_id,
        therapist_id=therapist_id,
        address=address,
        notes=notes,
        needs_transport=needs_transport,
        area_id=area_id,
        now=now,
    )
    with transaction.atomic():
        series = Series.objects.create(
            every_weeks=repeat.every_weeks,
            count=repeat.count,
            until=repeat.until,
            first_start=start,
            wall_time=timezone.localtime(start).time(),
            created_by=actor,
        )
        booked, failures = book_occurrences(
            starts=starts, skip_conflicts=skip_conflicts, series=series, **booking
        )
    return SeriesBooking(series=series, appointments=booked, skipped=failures)


def book_occurrences(
    *,
    starts: list[datetime],
    skip_conflicts: bool = False,
    series: Series | None = None,
    **booking: Unpack[Booking],
) -> tuple[list[Appointment], list[OccurrenceFailure]]:
    """Book one appointment per start with `create_appointment(**booking, start=…)`,
    linked to `series`.

    All or nothing by default: every occurrence is tried (so the desk sees every clash,
    not just the first), then on any failure the whole transaction rolls back and
    SeriesConflict lists them. With `skip_conflicts`, the free ones stay booked and the
    failures are returned beside them. Only the first booked keeps its response deadline:
    the therapist answers the series once."""
    with transaction.atomic():
        booked, failures = _try_each(
            starts,
            lambda start, first: create_appointment(
                **booking, start=start, series=series, answer_by=first or series is None
            ),
        )
        if failures and (not skip_conflicts or not booked):
            raise SeriesConflict(failures)
    return booked, failures


def preview_series(
    *,
    actor: User,
    client_id: int,
    service_id: int,
    therapist_id: int | None,
    start: datetime,
    repeat: Repeat,
    address: str = "",
    needs_transport: bool = False,
    area_id: int | None = None,
    now: datetime | None = None,
) -> tuple[list[datetime], list[OccurrenceFailure]]:
    """Every date of the repeat and which of them would clash (nothing is written); with
    no therapist, for the one `book_series` would choose."""
    now = now or timezone.now()
    starts = repeat.starts(start)
    if therapist_id is None:
        therapist_id = _chosen(client_id, service_id, start, needs_transport, area_id, now)
    failures = preview(
        starts=starts,
        actor=actor,
        client_id=client_id,
        service_id=service_id,
        therapist_id=therapist_id,
        address=address,
        needs_transport=needs_transport,
        area_id=area_id,
        now=now,
    )
    return starts, failures


def preview(*, starts: list[datetime], **booking: Unpack[Booking]) -> list[OccurrenceFailure]:
    """Which starts would clash, found by booking them all and rolling every row back,
    so the preview and the booking can never disagree on a rule."""
    failures: list[OccurrenceFailure] = []
    try:
        with transaction.atomic():
            _, failures = _try_each(
                starts, lambda start, first: create_appointment(**booking, start=start)
            )
            raise _Rollback
    except _Rollback:
        pass  # the point of the exercise: nothing the trial wrote may stay
    return failures


@dataclass(frozen=True)
class Position:
    """Where one occurrence stands in its series: "weekly, 3 of 8"."""

    series_id: int
    cadence: str
    number: int
    total: int
    # Every occurrence of the series, in start order: (id, start, status).
    occurrences: list[tuple[int, datetime, str]]

    @property
    def label(self) -> str:
        return f"{self.cadence}, {self.number} of {self.total}"


def position(appointment: Appointment) -> Position | None:
    """`appointment`'s place in its series (one query for the occurrences), or None."""
    if appointment.series_id is None:
        return None
    series = appointment.series
    assert series is not None  # series_id is set (above)
    occurrences = list(
        Appointment.objects.filter(series_id=series.pk)
        .order_by("start", "id")
        .values_list("id", "start", "status")
    )
    ids = [pk for pk, _, _ in occurrences]
    return Position(
        series_id=series.pk,
        cadence=series.cadence,
        number=ids.index(appointment.pk) + 1,
        total=len(ids),
        occurrences=occurrences,
    )


def positions(appointments: list[Appointment]) -> dict[int, str]:
    """ "weekly, 3 of 8" for each appointment of a series among `appointments`, in one
    query whatever their number (the therapist's page)."""
    series_ids = {a.series_id for a in appointments if a.series_id is not None}
    if not series_ids:
        return {}
    by_series: dict[int, list[int]] = {}
    rows = (
        Appointment.objects.filter(series_id__in=series_ids)
        .order_by("start", "id")
        .values_list("series_id", "id", "series__every_weeks")
    )
    weeks: dict[int, int] = {}
    for series_id, pk, every in rows:
        by_series.setdefault(series_id, []).append(pk)
        weeks[series_id] = every
    labels = {}
    for a in appointments:
        if a.series_id in by_series:
            ids = by_series[a.series_id]
            cadence = Series(every_weeks=weeks[a.series_id]).cadence
            labels[a.pk] = f"{cadence}, {ids.index(a.pk) + 1} of {len(ids)}"
    return labels


class _Rollback(Exception):
    """Raised only to undo a preview's trial bookings."""


def _chosen(
    client_id: int,
    service_id: int,
    start: datetime,
    needs_transport: bool,
    area_id: int | None,
    now: datetime,
) -> int:
    client = _get(Client, client_id, "client")
    choice = choose_therapist(
        service=_bookable_service(service_id),
        start=start,
        client=client,
        needs_transport=needs_transport,
        area_id=area_id,
        now=now,
    )
    if choice.therapist is None:
        raise _nobody_free(choice, start)
    return choice.therapist.pk


def _try_each(
    starts: list[datetime], book: Callable[[datetime, bool], Appointment]
) -> tuple[list[Appointment], list[OccurrenceFailure]]:
    """`book(start, first)` for each start, `first` True until one is booked."""
    booked: list[Appointment] = []
    failures: list[OccurrenceFailure] = []
    for start in starts:
        try:
            # A savepoint per occurrence: a refused one leaves the others' rows intact.
            with transaction.atomic():
                booked.append(book(start, not booked))
        except (Conflict, ValidationFailed) as exc:
            failures.append(
                OccurrenceFailure(start=start, reason=reason_of(exc), message=exc.message)
            )
    return booked, failures


def reason_of(exc: DomainError) -> str:
    if isinstance(exc, Conflict):
        return exc.reason or "conflict"
    return "invalid"
