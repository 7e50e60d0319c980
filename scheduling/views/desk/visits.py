"""Couples and group visits on the desk (issue 14).

The booking form's other sessions ("Add a therapist": a service and a therapist, or any
free one, per row), booked with the form's own service and therapist as one visit by
`book_visit`, each refusal said beside the session it belongs to; the appointment page's
visit card (the other sessions, the shared trips and their passengers) and its "Cancel
the whole visit" (`cancel_visit`); the partner names the board and the therapist's page
show. Nothing here decides whether a visit can be booked: the service does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Prefetch
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from scheduling.errors import Conflict, DomainError, ValidationFailed, VisitConflict
from scheduling.formats import moment
from scheduling.forms import id_field
from scheduling.limits import TEXT_MAX
from scheduling.models import Appointment, Trip, User, Visit
from scheduling.services.visits import SessionAsk, book_visit, cancel_visit
from scheduling.views.common import StaffRequest, form_errors_from
from scheduling.views.desk.present import desk_only, word

# The rows the form draws: the first session (the form's own service and therapist) and
# up to three more. What a visit may hold is the service's to say (book_visit): a post
# with more rows is read (up to READ_ROWS) and passed on, for the service to refuse.
FORM_ROWS = 4
READ_ROWS = 8
ROW_KEY = re.compile(r"^session-(\d{1,3})-(service|therapist)$")


class SessionForm(forms.Form):
    """One more session of the visit: typed, not looked up (the service says if the
    service and therapist exist and can take it)."""

    service = id_field("Service", "a service for this session")
    # Left empty: any free therapist (the visit never gets the same one twice).
    therapist = id_field("Therapist", "a therapist, or any free therapist", required=False)


@dataclass
class SessionRow:
    """A session row of the booking form after the first: its number on the page (2..)."""

    number: int
    form: SessionForm
    refusal: str = ""
    focus: bool = False  # the row just added: the cursor goes to its service

    @property
    def service_value(self) -> str:
        return str(self.form["service"].value() or "")

    @property
    def therapist_value(self) -> str:
        return str(self.form["therapist"].value() or "")


@dataclass
class Sessions:
    """The booking form's other sessions, and what the desk is told about the first."""

    rows: list[SessionRow] = field(default_factory=list)
    too_many: str = ""  # more rows were sent than the form reads
    first_refusal: str = ""  # the first session's (the form's own service and therapist)
    visit_refusal: str = ""  # the visit's as a whole, none of its sessions in particular
    services: list[tuple[int, str]] = field(default_factory=list)
    therapists: list[User] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.rows)

    @property
    def focus(self) -> bool:
        """A row was just added: the cursor goes there, not to the client search."""
        return any(row.focus for row in self.rows)

    @property
    def has_errors(self) -> bool:
        return bool(
            self.too_many
            or self.visit_refusal
            or any(row.refusal or (row.form.is_bound and row.form.errors) for row in self.rows)
        )

    @property
    def count(self) -> int:
        return 1 + len(self.rows)

    @property
    def can_add(self) -> bool:
        return self.count < FORM_ROWS

    @property
    def label(self) -> str:
        return visit_label(self.count)

    def valid(self) -> bool:
        valid = [row.form.is_valid() for row in self.rows]  # every row's errors, not the first
        return all(valid) and not self.too_many


def visit_label(sessions: int) -> str:
    return "Couples visit" if sessions == 2 else f"Group visit of {sessions}"


def therapist_choices() -> list[User]:
    return list(User.objects.therapists().order_by("first_name", "last_name", "id"))


def sessions_from(
    data: QueryDict | dict[str, Any] | None,
    *,
    services: list[tuple[int, str]],
    add: bool = False,
    remove: int | None = None,
    bound: bool = True,
) -> Sessions:
    """The rows posted (session-<n>-service, session-<n>-therapist), in their order; `add`
    draws one more empty row, `remove` leaves the row numbered so out. Unbound rows (a
    redraw after Add or Remove) keep what was chosen without saying what is missing."""
    data = data or {}
    indices = sorted({int(m.group(1)) for key in data if (m := ROW_KEY.match(str(key)))})
    sessions = Sessions(services=services, therapists=therapist_choices())
    if len(indices) > READ_ROWS:
        sessions.too_many = (
            f"{1 + len(indices)} sessions were sent: a visit is booked from at most "
            f"{FORM_ROWS} rows of this form."
        )
        indices = indices[:READ_ROWS]
    kept = [i for n, i in enumerate(indices, start=2) if n != remove]
    for number, index in enumerate(kept, start=2):
        values = {
            "service": data.get(f"session-{index}-service", ""),
            "therapist": data.get(f"session-{index}-therapist", ""),
        }
        form = SessionForm(values) if bound else SessionForm(initial=values)
        sessions.rows.append(SessionRow(number, form))
    if add and sessions.can_add:
        sessions.rows.append(SessionRow(sessions.count + 1, SessionForm(), focus=True))
    return sessions


def session_asks(first: dict[str, Any], sessions: Sessions) -> list[SessionAsk]:
    return [
        SessionAsk(service_id=first["service"], therapist_id=first["therapist"]),
        *(
            SessionAsk(
                service_id=row.form.cleaned_data["service"],
                therapist_id=row.form.cleaned_data["therapist"],
            )
            for row in sessions.rows
        ),
    ]


# Refusals of the visit as a whole (the car for everyone), said once, not per session.
WHOLE_VISIT = frozenset({"no_driver", "driver_busy"})
FIELD_KEY = re.compile(r"^sessions\[(\d{1,3})\]\.(service|therapist)$")


def place_refusals(form: forms.Form, sessions: Sessions, error: DomainError) -> None:
    """Each refusal beside its session: the first's beside the form's own therapist, the
    others' in their rows; one about the whole visit (the car, the number of sessions)
    once, at the top and under the rows."""
    if isinstance(error, VisitConflict):
        form.add_error(None, f"{error.message} Nothing was booked.")
        for failure in error.failures:
            if failure.reason in WHOLE_VISIT:
                if failure.message not in sessions.visit_refusal:
                    sessions.visit_refusal = " ".join([sessions.visit_refusal, failure.message])
                continue
            place(form, sessions, failure.session, None, failure.message)
        sessions.visit_refusal = sessions.visit_refusal.strip()
        return
    if isinstance(error, ValidationFailed) and error.errors:
        for key, texts in error.errors.items():
            match = FIELD_KEY.match(key)
            for text in texts:
                if match:
                    place(form, sessions, int(match.group(1)), match.group(2), text)
                else:
                    form_errors_from(form, ValidationFailed(text, {key: [text]}))
                    sessions.visit_refusal = text
        return
    form_errors_from(form, error)
    sessions.visit_refusal = error.message


def place(form: forms.Form, sessions: Sessions, index: int, field: str | None, text: str) -> None:
    """One refusal beside session `index` (from 0, as the service counts them)."""
    if index == 0:
        sessions.first_refusal = " ".join([sessions.first_refusal, text]).strip()
        form.add_error(field or "therapist", f"Session 1: {text}")
    elif 1 <= index <= len(sessions.rows):
        row = sessions.rows[index - 1]
        row.refusal = " ".join([row.refusal, text]).strip()
    else:
        sessions.visit_refusal = " ".join([sessions.visit_refusal, text]).strip()


def book_visit_from(
    form: forms.Form, sessions: Sessions, actor: User
) -> tuple[Appointment | None, int]:
    """Book the form's sessions as one visit: its first session, or None and the status
    to answer with (409 for a clash, 400 for what can never book), the refusals on the
    form and beside their rows. Nothing was written then."""
    data = form.cleaned_data
    try:
        visit = book_visit(
            actor=actor,
            client_id=data["client"],
            start=data["start"],
            sessions=session_asks(data, sessions),
            needs_transport=data["needs_transport"],
            address=data["address"],
            notes=data["notes"],
            area_id=data["area"],
        )
    except DomainError as error:
        place_refusals(form, sessions, error)
        return None, 409 if isinstance(error, Conflict) else 400
    booked = list(visit.sessions.select_related("client", "therapist").order_by("id"))
    first = booked[0]
    first.visit_booked = booked
    return first, 302


def booked_message(first: Appointment) -> str:
    booked: list[Appointment] = getattr(first, "visit_booked", [first])
    who = ", ".join(str(a.therapist) for a in booked[:-1]) + f" and {booked[-1].therapist}"
    return (
        f"Booked a {visit_label(len(booked)).lower()} for {first.client.name} with {who} on "
        f"{moment(first.start)}. "
        "Waiting for each therapist to accept."
    )


# The appointment page's visit card.


@dataclass
class VisitCard:
    visit: Visit
    sessions: list[Appointment]
    trips: list[Trip]
    current_id: int
    cancel_form: CancelVisitForm | None = None

    @property
    def label(self) -> str:
        return visit_label(len(self.sessions))

    @property
    def open_sessions(self) -> list[Appointment]:
        return [a for a in self.sessions if a.status not in CANCELS]

    @property
    def can_cancel(self) -> bool:
        return bool(self.open_sessions)


# Statuses after which a session will not take place (as the board hides them).
CANCELS = frozenset({"cancelled", "rejected", "expired", "no_show", "completed"})


class CancelVisitForm(forms.Form):
    """Cancel every session of the visit and its shared trips: a reason for the history,
    and a tick that says the whole visit is meant (the confirm step)."""

    reason = forms.CharField(
        label="Reason",
        max_length=TEXT_MAX,
        widget=forms.TextInput(),
        error_messages={"required": "Say why, for the appointments' history."},
    )
    confirm = forms.BooleanField(
        label="Yes, cancel every session of this visit and its shared transport",
        error_messages={"required": "Tick the box to say the whole visit is to be cancelled."},
    )

    prefix = "visit"


def visit_card(appointment: Appointment, form: CancelVisitForm | None = None) -> VisitCard | None:
    """The visit `appointment` is a session of (two queries whatever its size), or None."""
    if appointment.visit_id is None:
        return None
    visit = (
        Visit.objects.filter(pk=appointment.visit_id)
        .prefetch_related(
            Prefetch(
                "sessions",
                queryset=Appointment.objects.select_related("therapist", "service").order_by("id"),
            ),
            Prefetch(
                "trips",
                queryset=Trip.objects.select_related("driver").order_by("window_start", "id"),
            ),
        )
        .first()
    )
    if visit is None:
        return None
    trips = list(visit.trips.all())
    for trip in trips:
        trip.leg_label = word(trip.leg)
        trip.status_label = word(trip.status)
    return VisitCard(
        visit=visit,
        sessions=list(visit.sessions.all()),
        trips=trips,
        current_id=appointment.pk,
        cancel_form=form or CancelVisitForm(),
    )


def partners_of(appointments: Iterable[Appointment]) -> dict[int, list[Appointment]]:
    """For each of `appointments` in a visit, the visit's other sessions (one query
    whatever their number, none when no appointment is in a visit)."""
    visit_ids = {a.visit_id for a in appointments if a.visit_id}
    if not visit_ids:
        return {}
    by_visit: dict[int, list[Appointment]] = {}
    rows = (
        Appointment.objects.filter(visit_id__in=visit_ids)
        .select_related("therapist")
        .order_by("id")
    )
    for row in rows:
        by_visit.setdefault(row.visit_id, []).append(row)
    return {
        a.pk: [p for p in by_visit.get(a.visit_id, []) if p.pk != a.pk]
        for a in appointments
        if a.visit_id
    }


def visit_trips(appointments: Iterable[Appointment]) -> dict[int, list[Trip]]:
    """The shared trips of the visits among `appointments`, by visit (one query, none
    when no appointment is in a visit)."""
    visit_ids = {a.visit_id for a in appointments if a.visit_id}
    if not visit_ids:
        return {}
    by_visit: dict[int, list[Trip]] = {}
    for trip in Trip.objects.filter(visit_id__in=visit_ids).select_related("driver").order_by("id"):
        assert trip.visit_id is not None  # filtered on visit_id__in: a visit's trip
        by_visit.setdefault(trip.visit_id, []).append(trip)
    return by_visit


def visits_among(appointments: list[Appointment]) -> dict[int, list[Appointment]]:
    """The visits' sessions among `appointments` themselves (a board's day holds every
    session of a visit): no query."""
    by_visit: dict[int, list[Appointment]] = {}
    for a in appointments:
        if a.visit_id:
            by_visit.setdefault(a.visit_id, []).append(a)
    return by_visit


@desk_only
@require_POST
def cancel_whole_visit(request: StaffRequest, pk: int) -> HttpResponse:
    """Cancel every session of the visit and its shared trips (cancel_visit), from the
    page of one of its sessions (`?from=<appointment>`)."""
    from scheduling.views.desk.appointment import appointment_for, detail_page

    user = request.user
    assert isinstance(user, User)  # desk_only
    visit = get_object_or_404(Visit.objects.visible_to(user), pk=pk)
    lead = (
        Appointment.objects.filter(visit=visit).order_by("id").values_list("id", flat=True).first()
    )
    from_id = request.GET.get("from", "")
    page_id = int(from_id) if from_id.isdigit() and len(from_id) < 12 else lead
    appointment = appointment_for(page_id or 0, user)
    if appointment.visit_id != visit.pk:
        appointment = appointment_for(lead or 0, user)
    form = CancelVisitForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            cancel_visit(actor=user, visit_id=visit.pk, reason=form.cleaned_data["reason"])
        except DomainError as error:
            form_errors_from(form, error)
            status = 400 if isinstance(error, ValidationFailed) else 409
        else:
            messages.success(
                request,
                f"Cancelled the whole visit. {appointment.client.name} and every therapist "
                "are told; its transport is called off.",
            )
            return redirect("desk:appointment", pk=appointment.pk)
    response = detail_page(request, appointment, visit_form=form)
    response.status_code = status
    return response
