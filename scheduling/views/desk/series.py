"""Standing bookings on the desk: the booking form's Repeat preview (every date, and
which clash, from `series.preview_series`) and booking the series through `book_series`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from scheduling.errors import DomainError, OccurrenceFailure, SeriesConflict
from scheduling.forms import AppointmentForm
from scheduling.models import Appointment, User
from scheduling.services.series import Repeat, book_series, preview_series
from scheduling.views.common import StaffRequest
from scheduling.views.desk.present import desk_only

# What the preview needs from the form before it can say anything.
NEEDED = ("client", "service", "start")


@dataclass(frozen=True)
class Row:
    start: datetime
    failure: OccurrenceFailure | None


@dataclass
class Preview:
    rows: list[Row]
    note: str = ""

    @property
    def clashes(self) -> int:
        return sum(1 for row in self.rows if row.failure)


def repeat_of(data: dict) -> Repeat | None:
    """The form's repeat, or None for a single booking."""
    if not data.get("every_weeks"):
        return None
    return Repeat(every_weeks=data["every_weeks"], count=data.get("count"), until=data.get("until"))


def rows_for(starts: list[datetime], failures: list[OccurrenceFailure]) -> list[Row]:
    failed = {f.start: f for f in failures}
    return [Row(start=start, failure=failed.get(start)) for start in starts]


def preview_for(data: dict, actor: User) -> Preview:
    """Every date of the form's repeat and which would clash, in the service's words."""
    repeat = repeat_of(data)
    if repeat is None:
        return Preview(rows=[])
    if any(data.get(name) is None for name in NEEDED):
        return Preview(rows=[], note="Choose the client, the service and a start time first.")
    try:
        starts, failures = preview_series(
            actor=actor,
            client_id=data["client"],
            service_id=data["service"],
            therapist_id=data.get("therapist"),
            start=data["start"],
            repeat=repeat,
            address=data.get("address", ""),
            needs_transport=data.get("needs_transport", False),
            area_id=data.get("area"),
        )
    except DomainError as error:
        return Preview(rows=[], note=error.message)
    return Preview(rows=rows_for(starts, failures))


@desk_only
@require_GET
def repeat_preview(request: StaffRequest) -> HttpResponse:
    """The booking form's Repeat panel: each date and whether it clashes (htmx fragment)."""
    form = AppointmentForm(request.GET)
    form.is_valid()  # what is valid is previewed; the rest is said on booking
    data = {k: v for k, v in form.cleaned_data.items() if k not in form.errors}
    return render(
        request,
        "desk/_repeat_preview.html",
        {"form": form, "preview": preview_for(data, request.user)},
    )


def book_repeat(
    form: AppointmentForm, actor: User, fields: dict
) -> tuple[Appointment | None, Preview | None]:
    """Book the form's series; a clash (all or nothing) is put on the form with the preview
    of every date, so the desk sees which ones."""
    data = form.cleaned_data
    repeat = repeat_of(data)
    assert repeat is not None
    try:
        booking = book_series(
            therapist_id=data["therapist"],
            repeat=repeat,
            skip_conflicts=data["skip_conflicts"],
            **fields,
        )
    except SeriesConflict as error:
        form.add_error(
            "every_weeks",
            f"{error.message} Nothing was booked: move those dates, or tick “Book the free dates”.",
        )
        starts = repeat.starts(data["start"])
        return None, Preview(rows=rows_for(starts, error.failures))
    first = booking.appointments[0]
    first.booked_count = len(booking.appointments)  # type: ignore[attr-defined]
    first.skipped = booking.skipped  # type: ignore[attr-defined]
    return first, None
