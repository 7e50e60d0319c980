"""Standing bookings (issue 14 item 2): the dates of a repeat and booking every one of them.

Each occurrence goes through `create_appointment`, the one booking engine, so it meets
exactly the checks of a single booking. Not built yet: the Series model and the
occurrences' `series` link, scopes for cancel and reschedule, the API and the pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from scheduling.errors import Conflict, DomainError, ValidationFailed
from scheduling.models import Appointment
from scheduling.services.appointments import create_appointment
from scheduling.services.common import require_aware

EVERY_WEEKS = (1, 2, 4)
MIN_COUNT, MAX_COUNT = 2, 26


@dataclass(frozen=True)
class Failure:
    """One occurrence that cannot be booked, in the words the desk is shown."""

    start: datetime
    reason: str
    message: str


class SeriesConflict(Conflict):
    """Some occurrences cannot be booked; `failures` names each with its start and why."""

    def __init__(self, failures: list[Failure]) -> None:
        super().__init__(f"{len(failures)} of the repeated dates cannot be booked.")
        self.failures = failures
        self.reason = "series_conflict"


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


def book_occurrences(
    *, starts: list[datetime], skip_conflicts: bool = False, **booking
) -> tuple[list[Appointment], list[Failure]]:
    """Book one appointment per start with `create_appointment(**booking, start=…)`.

    All or nothing by default: every occurrence is tried (so the desk sees every clash,
    not just the first), then on any failure the whole transaction rolls back and
    SeriesConflict lists them. With `skip_conflicts`, the free ones stay booked and the
    failures are returned beside them."""
    with transaction.atomic():
        booked, failures = _try_each(
            starts, lambda start: create_appointment(**booking, start=start)
        )
        if failures and (not skip_conflicts or not booked):
            raise SeriesConflict(failures)
    return booked, failures


def preview(*, starts: list[datetime], **booking) -> list[Failure]:
    """Which starts would clash, found by booking them all and rolling every row back,
    so the preview and the booking can never disagree on a rule."""
    failures: list[Failure] = []
    try:
        with transaction.atomic():
            _, failures = _try_each(
                starts, lambda start: create_appointment(**booking, start=start)
            )
            raise _Rollback
    except _Rollback:
        pass  # the point of the exercise: nothing the trial wrote may stay
    return failures


class _Rollback(Exception):
    """Raised only to undo a preview's trial bookings."""


def _try_each(
    starts: list[datetime], book: Callable[[datetime], Appointment]
) -> tuple[list[Appointment], list[Failure]]:
    booked: list[Appointment] = []
    failures: list[Failure] = []
    for start in starts:
        try:
            # A savepoint per occurrence: a refused one leaves the others' rows intact.
            with transaction.atomic():
                booked.append(book(start))
        except (Conflict, ValidationFailed) as exc:
            failures.append(Failure(start=start, reason=_reason(exc), message=exc.message))
    return booked, failures


def _reason(exc: DomainError) -> str:
    if isinstance(exc, Conflict):
        return exc.reason or "conflict"
    return "invalid"
