"""An appointment's page: its trips with the dispatcher's reason, its history, its
messages, and the actions the state machine allows (cancel, no-show; rescheduling is in
booking.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from scheduling import states
from scheduling.domain import local_date
from scheduling.formats import money
from scheduling.forms import ReasonForm, RescheduleForm
from scheduling.models import Appointment, Transition, Trip, TripStatus, User
from scheduling.permissions import role
from scheduling.services.appointments import act_on_appointment
from scheduling.services.series import position
from scheduling.services.series_scopes import cancel_appointments
from scheduling.views.common import StaffRequest, call_for_form, live_after
from scheduling.views.desk.choice import choice_view
from scheduling.views.desk.control import reassign_context
from scheduling.views.desk.dispatch import dispatch_context
from scheduling.views.desk.payments import payments_context
from scheduling.views.desk.present import (
    desk_only,
    labelled,
    national_phone,
    transport_of,
    trips_prefetch,
    word,
)
from scheduling.views.desk.queues import failed_lines, waiting_trips
from scheduling.views.desk.times import times_panel
from scheduling.views.desk.visits import CancelVisitForm, visit_card

# The actions the detail page has a form for; the rules table decides when each is shown.
PAGE_ACTIONS = ("reschedule", "reassign", "cancel", "no_show")


@dataclass
class TripLine:
    trip: Trip
    reason: str = ""
    checked_at: datetime | None = None


def allowed_actions(appointment: Appointment, actor_role: str | None) -> list[str]:
    """The page's actions that the rules table allows from the current status."""
    return states.offered(
        states.APPOINTMENT_RULES, PAGE_ACTIONS, current=appointment.status, role=actor_role
    )


@dataclass
class LogLine:
    at: datetime
    subject: str
    from_label: str
    to_label: str
    action_note: str
    actor: User | None
    reason: str
    # The therapist or driver the desk acted for, confirmed by phone (issue 13).
    on_behalf_of: User | None = None


# Actions whose status change alone does not say what happened.
TOLD_ACTIONS = {
    "create": "booked",
    "reschedule": "rescheduled",
    "request_pickup": "pickup asked for",
    "unassign": "taken back by hand",
}


def log_lines(appointment: Appointment) -> list[LogLine]:
    """The appointment's and its trips' transitions, oldest first, in one query."""
    rows = (
        Transition.objects.filter(Q(appointment=appointment) | Q(trip__appointment=appointment))
        .select_related("actor", "trip", "on_behalf_of")
        .order_by("at", "id")
    )
    return [
        LogLine(
            at=t.at,
            subject=f"{word(t.trip.leg)} trip" if t.trip is not None else "Appointment",
            from_label=word(t.from_status) if t.from_status else "",
            to_label=word(t.to_status),
            action_note="planned"
            if t.trip_id and t.action == "create"
            else TOLD_ACTIONS.get(t.action, ""),
            actor=t.actor,
            reason=t.reason,
            on_behalf_of=t.on_behalf_of,
        )
        for t in rows
    ]


def detail_context(appointment: Appointment) -> dict[str, Any]:
    """Everything about one appointment. `appointment` comes from `appointment_for`."""
    trips = labelled(list(appointment.trips.all()), "status", "leg")
    queued = [t for t in trips if t.status == TripStatus.QUEUED]
    reasons = {w.trip.pk: w for w in waiting_trips(queued)} if queued else {}
    sent = appointment.notifications.select_related("client", "user").order_by("-created_at", "-id")
    return {
        "appointment": appointment,
        "status_label": word(appointment.status),
        "payment_label": word(appointment.payment_status),
        "client_phone": national_phone(appointment.client.phone),
        "price": money(appointment.price),
        "transport": transport_of(appointment),
        "trips": [
            TripLine(t, reasons[t.pk].reason, reasons[t.pk].checked_at)
            if t.pk in reasons
            else TripLine(t)
            for t in trips
        ],
        "log": log_lines(appointment),
        "choice": choice_view(appointment),
        "sent": failed_lines(list(sent)),
    }


def appointment_for(pk: int, user: User) -> Appointment:
    rows = (
        Appointment.objects.visible_to(user)
        .select_related("client__area", "service", "therapist", "created_by", "area")
        .prefetch_related(trips_prefetch())
    )
    return get_object_or_404(rows, pk=pk)


def actions_context(
    appointment: Appointment, user: User, forms_by_action: dict[str, forms.Form] | None = None
) -> dict[str, Any]:
    given = forms_by_action or {}
    actions = allowed_actions(appointment, role(user))
    day = local_date(appointment.start)
    reschedule = given.get("reschedule") or RescheduleForm(initial={"date": day})
    values = reschedule.data if reschedule.is_bound else {}
    bound = reschedule.is_bound
    chosen_day = getattr(reschedule, "cleaned_data", {}).get("date") if bound else day
    return {
        "appointment": appointment,
        "status_label": word(appointment.status),
        "actions": actions,
        "reschedule_form": reschedule,
        "reschedule_times": times_panel(
            appointment.service_id,
            chosen_day,
            appointment.therapist_id,
            values.get("reschedule-start", ""),
            moving=appointment,
        )
        if "reschedule" in actions
        else None,
        "cancel_form": given.get("cancel") or ReasonForm(prefix="cancel", reason_required=True),
        "no_show_form": given.get("no_show") or ReasonForm(prefix="no_show"),
        **reassign_context(appointment, actions, given.get("reassign")),
    }


def detail_page(
    request: StaffRequest,
    appointment: Appointment,
    forms_by_action: dict[str, forms.Form] | None = None,
    *,
    after: int | None = None,
    visit_form: CancelVisitForm | None = None,
) -> HttpResponse:
    actions = actions_context(appointment, request.user, forms_by_action)
    for action, form in (forms_by_action or {}).items():
        # The status moved on and the action's form is no longer drawn: say why here.
        if action not in actions["actions"]:
            for error in form.non_field_errors():
                messages.error(request, str(error))
    context = {
        "live_after": after if after is not None else live_after(request.user),
        **payments_context(appointment, request.user),
        **detail_context(appointment),
        **dispatch_context(appointment, request.user),
        "series_position": position(appointment),
        "visit": visit_card(appointment, visit_form),
        **actions,
    }
    return render(request, "desk/detail.html", context)


@desk_only
@require_GET
def appointment_detail(request: StaffRequest, pk: int) -> HttpResponse:
    after = live_after(request.user)
    return detail_page(request, appointment_for(pk, request.user), after=after)


@desk_only
@require_GET
def appointment_fragment(request: StaffRequest, pk: int) -> HttpResponse:
    appointment = appointment_for(pk, request.user)
    return render(request, "desk/_appointment.html", detail_context(appointment))


@desk_only
@require_GET
def appointment_actions(request: StaffRequest, pk: int) -> HttpResponse:
    """The actions panel, redrawn only when the status it was drawn for has changed: a
    change elsewhere must not wipe a reason being typed (204: htmx leaves it as it is)."""
    appointment = appointment_for(pk, request.user)
    if request.GET.get("drawn_for") == appointment.status:
        return HttpResponse(status=204)
    return render(request, "desk/_actions.html", actions_context(appointment, request.user))


@desk_only
@require_POST
def act(request: StaffRequest, pk: int, action: str) -> HttpResponse:
    """Cancel or no-show: the status action with the reason typed."""
    appointment = appointment_for(pk, request.user)
    form = ReasonForm(request.POST, prefix=action, reason_required=action == "cancel")
    if form.is_valid():
        fields = dict(
            actor=request.user, appointment_id=appointment.pk, reason=form.cleaned_data["reason"]
        )
        if action == "cancel":
            scope = form.cleaned_data["scope"] or "this"
            many = call_for_form(form, cancel_appointments, scope=scope, **fields)
            done = many[0] if many else None
        else:
            many, done = None, call_for_form(form, act_on_appointment, action=action, **fields)
        if done is not None:
            label = {"cancel": "Cancelled", "no_show": "Marked as a no-show"}[action]
            if many and len(many) > 1:
                label = f"Cancelled {len(many)} dates"
            messages.success(request, f"{label}. {done.client.name} and the therapist are told.")
            return redirect("desk:appointment", pk=appointment.pk)
    return detail_page(request, appointment, {action: form})
