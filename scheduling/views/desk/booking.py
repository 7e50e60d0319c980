"""Booking: the new appointment form, its times fragment, and rescheduling (its times
fragment and the move). A conflict is shown beside the start time, naming what it met.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from scheduling.errors import Conflict, DomainError, SeriesConflict
from scheduling.formats import clock, moment, money
from scheduling.forms import AppointmentForm, ClientForm, RescheduleForm
from scheduling.models import Appointment, Client, Service, User
from scheduling.services.appointments import create_appointment
from scheduling.services.capacity import NO_DRIVER
from scheduling.services.choosing import NOBODY_FREE, book_any_therapist
from scheduling.services.series_scopes import reschedule_appointments
from scheduling.views.common import StaffRequest, form_errors_from
from scheduling.views.desk.appointment import appointment_for, detail_page
from scheduling.views.desk.present import client_choices, day_from, desk_only, int_or_none
from scheduling.views.desk.series import Preview, book_repeat, repeat_of
from scheduling.views.desk.times import times_panel
from scheduling.views.desk.visits import Sessions, book_visit_from, booked_message, sessions_from


def service_choices() -> list[tuple[int, str]]:
    return [
        (s.pk, f"{s.name} · {s.duration_minutes} min · {money(s.price)}")
        for s in Service.objects.bookable().order_by("name")
    ]


def checked(data: Any, name: str) -> bool:
    """A checkbox's value in `data` (a QueryDict or the form's initial dict)."""
    if hasattr(data, "getlist"):
        return bool(forms.CheckboxInput().value_from_datadict(data, MultiValueDict(), name))
    return bool(data.get(name))


def new_form_page(
    request: StaffRequest,
    form: AppointmentForm,
    *,
    client_form: ClientForm | None = None,
    conflicts: Sequence[Appointment] = (),
    preview: Preview | None = None,
    sessions: Sessions | None = None,
    status: int = 200,
) -> HttpResponse:
    values = form.data if form.is_bound else form.initial
    client_id = int_or_none(values.get("client"))
    chosen = Client.objects.filter(pk=client_id) if client_id else Client.objects.none()
    # A bound form's day as cleaned (None when it was not a day), else the initial one.
    day = getattr(form, "cleaned_data", {}).get("date") if form.is_bound else values.get("date")
    context_services = service_choices()
    context = {
        "form": form,
        "services": context_services,
        "client_form": client_form or ClientForm(),
        "client_results": client_choices(chosen, client_id),
        "times": times_panel(
            values.get("service"),
            day,
            values.get("therapist"),
            values.get("start", ""),
            needs_transport=checked(values, "needs_transport"),
            client_id=client_id,
            area_id=values.get("area"),
        ),
        "conflicts": conflicts,
        "preview": preview or Preview(rows=[]),
        "sessions": sessions or sessions_from(None, services=context_services),
    }
    return render(request, "desk/new.html", context, status=status)


def prefill(request: StaffRequest) -> dict[str, Any]:
    """Initial values from the link that opened the form: the board (a day, a therapist)
    or a rejected booking to rebook (?rebook=<id>: client, service, address, notes,
    transport and an area chosen for it)."""
    initial: dict[str, Any] = {"date": timezone.localdate()}
    day = day_from(request)
    if day is not None and request.GET.get("date"):
        initial["date"] = day
    for name in ("client", "service", "therapist"):
        if int_or_none(request.GET.get(name)):
            initial[name] = int_or_none(request.GET.get(name))
    source_id = int_or_none(request.GET.get("rebook"))
    source = (
        Appointment.objects.select_related("client").filter(pk=source_id).first()
        if source_id
        else None
    )
    if source is not None:
        initial.update(
            client=source.client_id,
            service=source.service_id,
            address=source.address,
            notes=source.notes,
            needs_transport=source.needs_transport,
        )
        if source.area_id and source.area_id != source.client.area_id:
            initial["area"] = source.area_id
    return initial


def conflict_message(error: Conflict, therapist_name: str) -> tuple[str, list[Appointment]]:
    """The service's conflict, with the appointments it names as the desk knows them."""
    ids = [c.appointment_id for c in error.conflicts if c.appointment_id]
    if not ids:
        return error.message, []
    clashing = list(
        Appointment.objects.filter(pk__in=ids).select_related("client", "service").order_by("start")
    )
    named = "; ".join(
        f"{a.client.name}, {a.service.name}, "
        f"{moment(a.start)}–{clock(a.end)} "
        f"(away {clock(a.busy_from)}–{clock(a.busy_until)} with travel and clean-up)"
        for a in clashing
    )
    text = f"{therapist_name} is already booked then: {named}. Pick another time."
    return text, clashing


def book(
    form: AppointmentForm, actor: User
) -> tuple[Appointment | None, list[Appointment], Preview | None]:
    data = form.cleaned_data
    fields = dict(
        actor=actor,
        client_id=data["client"],
        service_id=data["service"],
        start=data["start"],
        address=data["address"],
        notes=data["notes"],
        needs_transport=data["needs_transport"],
        area_id=data["area"],
    )
    try:
        if repeat_of(data) is not None:
            first, preview = book_repeat(form, actor, fields)
            return first, [], preview
        if data["therapist"] is None:
            appointment = book_any_therapist(**fields)
        else:
            appointment = create_appointment(therapist_id=data["therapist"], **fields)
    except Conflict as error:
        if error.reason in (NO_DRIVER, NOBODY_FREE):
            # The therapist could make it; the drivers cannot: said in the service's words
            # beside the time, which the form now shows as one with no driver.
            form.add_error("start", error.message)
            return None, [], None
        therapist = User.objects.filter(pk=data["therapist"]).first()
        text, clashing = conflict_message(error, str(therapist or "The therapist"))
        form.add_error("start", text)
        return None, clashing, None
    except DomainError as error:
        form_errors_from(form, error)
        return None, [], None
    return appointment, [], None


def redrawn(data: Any) -> AppointmentForm:
    """The form as posted, unbound: redrawn after "Add a therapist" or "Remove", keeping
    what was chosen without saying what is still missing."""
    initial = {name: data.get(name, "") for name in AppointmentForm.base_fields}
    initial["needs_transport"] = checked(data, "needs_transport")
    initial["skip_conflicts"] = checked(data, "skip_conflicts")
    try:
        initial["date"] = AppointmentForm.base_fields["date"].clean(initial["date"])
    except forms.ValidationError:
        initial["date"] = None
    return AppointmentForm(initial=initial)


def visit_post(request: StaffRequest) -> HttpResponse | None:
    """The form's sessions after the first (visits.py): Add and Remove redraw the form;
    with other sessions the form books a visit (book_visit), all or nothing, each refusal
    beside its session (400 for what can never book, 409 for what clashes). None: a
    booking of one."""
    data = request.POST
    remove = int_or_none(data.get("remove_session"))
    add = "add_session" in data
    services = service_choices()
    if add or remove:
        sessions = sessions_from(data, services=services, add=add, remove=remove, bound=False)
        return new_form_page(request, redrawn(data), sessions=sessions)
    sessions = sessions_from(data, services=services)
    if not sessions.any and not sessions.too_many:
        return None
    form = AppointmentForm(data)
    valid = form.is_valid()
    if not sessions.valid() or not valid:
        return new_form_page(request, form, sessions=sessions, status=400)
    if repeat_of(form.cleaned_data) is not None:
        form.add_error(
            "every_weeks",
            "A couples or group visit is booked for one date: set Repeat to “Does not "
            "repeat”, or book one therapist.",
        )
        return new_form_page(request, form, sessions=sessions, status=400)
    first, status = book_visit_from(form, sessions, request.user)
    if first is None:
        return new_form_page(request, form, sessions=sessions, status=status)
    messages.success(request, booked_message(first))
    return redirect("desk:appointment", pk=first.pk)


@desk_only
@require_http_methods(["GET", "POST"])
def new_appointment(request: StaffRequest) -> HttpResponse:
    if request.method == "GET":
        return new_form_page(request, AppointmentForm(initial=prefill(request)))
    visit = visit_post(request)
    if visit is not None:
        return visit
    form = AppointmentForm(request.POST)
    if not form.is_valid():
        return new_form_page(request, form)
    appointment, clashing, preview = book(form, request.user)
    if appointment is None:
        return new_form_page(request, form, conflicts=clashing, preview=preview)
    dates = getattr(appointment, "booked_count", 0)
    skipped = getattr(appointment, "skipped", [])
    messages.success(
        request,
        f"Booked {appointment.client.name} with {appointment.therapist} on "
        f"{moment(appointment.start)}"
        + (f" and {dates - 1} more dates" if dates else "")
        + (f" ({len(skipped)} left out: they clash)" if skipped else "")
        + ". Waiting for the therapist to accept.",
    )
    return redirect("desk:appointment", pk=appointment.pk)


@desk_only
@require_GET
def booking_times(request: StaffRequest) -> HttpResponse:
    """How the therapist gets there, the therapist select and the start times of the
    booking form (htmx fragment)."""
    field = AppointmentForm.base_fields["date"]
    try:
        day = field.clean(request.GET.get("date", ""))
        day_error = ""
    except forms.ValidationError as error:
        day, day_error = None, error.messages[0]
    panel = times_panel(
        request.GET.get("service"),
        day,
        request.GET.get("therapist"),
        request.GET.get("start", ""),
        needs_transport=checked(request.GET, "needs_transport"),
        client_id=request.GET.get("client"),
        area_id=request.GET.get("area"),
    )
    if day_error and panel.service is not None:
        panel.note = day_error
    return render(request, "desk/_times.html", {"times": panel})


@desk_only
@require_GET
def reschedule_times(request: StaffRequest, pk: int) -> HttpResponse:
    appointment = appointment_for(pk, request.user)
    try:
        day = RescheduleForm.base_fields["date"].clean(request.GET.get("reschedule-date", ""))
        day_error = ""
    except forms.ValidationError as error:
        day, day_error = None, error.messages[0]
    panel = times_panel(
        appointment.service_id,
        day,
        appointment.therapist_id,
        request.GET.get("reschedule-start", ""),
        moving=appointment,
    )
    if day_error:
        panel.note = day_error
    return render(
        request, "desk/_reschedule_times.html", {"times": panel, "appointment": appointment}
    )


@desk_only
@require_POST
def reschedule(request: StaffRequest, pk: int) -> HttpResponse:
    appointment = appointment_for(pk, request.user)
    form = RescheduleForm(request.POST)
    if form.is_valid():
        try:
            moved = reschedule_appointments(
                actor=request.user,
                appointment_id=appointment.pk,
                start=form.cleaned_data["start"],
                scope=form.cleaned_data["scope"] or "this",
                reason=form.cleaned_data["reason"],
            )[0]
        except SeriesConflict as error:
            form.add_error(
                "start",
                f"{error.message} Nothing was moved: "
                + "; ".join(f"{moment(f.start)}: {f.message}" for f in error.failures),
            )
        except Conflict as error:
            form.add_error("start", conflict_message(error, str(appointment.therapist))[0])
        except DomainError as error:
            form_errors_from(form, error)
        else:
            messages.success(
                request,
                f"Moved to {moment(moved.start)}. {moved.therapist} has to accept the new time.",
            )
            return redirect("desk:appointment", pk=appointment.pk)
    return detail_page(request, appointment, {"reschedule": form})
