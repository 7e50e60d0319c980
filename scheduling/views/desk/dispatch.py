"""The desk runs the day (issue 13 items 3 and 4): manual dispatch on the appointment
page and the drivers panel, and acting for a therapist or driver who confirmed by phone.

Every button calls the same service functions as the API (services/manual_dispatch.py,
act_on_appointment, act_on_trip, request_pickup, with `on_behalf`); the rules table
(`states.may`) decides what is offered. A refusal comes back as a message on the page
it was sent from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from scheduling import states
from scheduling.domain import local_date, local_day_bounds
from scheduling.formats import clock
from scheduling.models import Appointment, DispatchDecision, DriverProfile, Leg, Trip, User
from scheduling.permissions import role
from scheduling.services import dispatch, manual_dispatch
from scheduling.services.appointments import act_on_appointment
from scheduling.services.trips import act_on_trip
from scheduling.views.common import call_for_page
from scheduling.views.desk.present import desk_only, word

# What the desk may do for the therapist, and for the driver, confirmed by phone.
THERAPIST_ACTIONS = ("accept", "reject", "start", "complete", "no_show", "request_pickup")
DRIVER_ACTIONS = ("depart", "arrive", "complete")
PAST = {
    "accept": "accepted",
    "reject": "rejected",
    "start": "started",
    "complete": "completed",
    "no_show": "marked a no-show",
    "request_pickup": "asked for the pickup",
    "depart": "set off",
    "arrive": "arrived",
}
BUTTON = {
    "accept": "Accept",
    "reject": "Reject",
    "start": "Start",
    "complete": "Complete",
    "no_show": "No-show",
    "request_pickup": "Request pickup",
    "depart": "Depart",
    "arrive": "Arrive",
}
# Where a dispatch form sends the desk back to.
BACK = ("appointment", "drivers")


class AssignForm(forms.Form):
    driver = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    reason = forms.CharField(max_length=manual_dispatch.REASON_LIMIT)


class UnassignForm(forms.Form):
    reason = forms.CharField(max_length=manual_dispatch.REASON_LIMIT)


class ActForForm(forms.Form):
    confirmed = forms.BooleanField(
        error_messages={"required": "Tick that they confirmed it by phone."}
    )
    reason = forms.CharField(max_length=manual_dispatch.REASON_LIMIT, required=False)


@dataclass
class TripControl:
    trip: Trip
    can_assign: bool
    can_unassign: bool
    driver_actions: list[tuple[str, str]]
    by_hand: list[str] = field(default_factory=list)


def decision_text(decision: DispatchDecision) -> str:
    """ "Given to Liza by Joy at 08:10: she knows the gate" (a decision taken by hand)."""
    verb = "Given to" if decision.outcome == "assigned" else "Taken back from"
    when = clock(decision.decided_at)
    return f"{verb} {decision.driver} by {decision.decided_by} at {when}: {decision.reason}"


def drivers_on_shift() -> list[DriverProfile]:
    return list(
        DriverProfile.objects.filter(on_shift=True, user__is_active=True)
        .select_related("user")
        .order_by("user__first_name", "user__last_name", "user_id")
    )


def trip_controls(trips: list[Trip], r: str) -> list[TripControl]:
    """What the desk (role `r`) may do with each trip, and what it did by hand."""
    by_hand = manual_dispatch.latest_by_hand([t.pk for t in trips])

    def may(action: str, trip: Trip, on_behalf: bool = False) -> bool:
        return states.may(
            states.TRIP_RULES, action, current=trip.status, role=r, on_behalf=on_behalf
        )

    return [
        TripControl(
            trip=t,
            can_assign=may("assign", t),
            can_unassign=may("unassign", t),
            driver_actions=[
                (a, BUTTON[a]) for a in DRIVER_ACTIONS if t.driver_id and may(a, t, True)
            ],
            by_hand=[decision_text(d) for d in by_hand.get(t.pk, [])],
        )
        for t in trips
    ]


def dispatch_context(appointment: Appointment, user: User) -> dict[str, Any]:
    """The appointment page's dispatch and acting-for panels."""
    r = role(user) or ""
    acting = [
        (a, BUTTON[a])
        for a in THERAPIST_ACTIONS[:-1]
        if states.may(
            states.APPOINTMENT_RULES, a, current=appointment.status, role=r, on_behalf=True
        )
    ]
    trips = sorted(appointment.trips.all(), key=lambda t: (t.window_start, t.pk))
    pickup = next((t for t in reversed(trips) if t.leg == Leg.PICKUP), None)
    if (
        r in states.DESK
        and dispatch.pickup_refusal(appointment, pickup) is None
        and pickup is not None
        and pickup.requested_at is None
    ):
        acting.append(("request_pickup", BUTTON["request_pickup"]))
    controls = trip_controls(trips, r)
    return {
        "dispatch_trips": controls,
        "dispatch_drivers": drivers_on_shift(),
        "acting_actions": acting,
        "acting_driver": [(c.trip, a, label) for c in controls for a, label in c.driver_actions],
    }


def drivers_dispatch_context() -> dict[str, Any]:
    """The drivers panel's manual dispatch (a desk-only page): the queued trips of the rest
    of today and of tomorrow (business days, so a look just after midnight still shows
    tomorrow's morning) to give, and the assigned ones to take back."""
    now = timezone.now()
    _, end_of_tomorrow = local_day_bounds(local_date(now) + timedelta(days=1))
    open_trips = list(
        Trip.objects.filter(
            status__in=(states.TripStatus.QUEUED, states.TripStatus.ASSIGNED),
            window_end__gt=now,
            window_start__lt=end_of_tomorrow,
        )
        .select_related("appointment__client", "driver")
        .order_by("window_start", "id")[:50]
    )
    return {
        "dispatch_open": trip_controls(open_trips, states.RECEPTIONIST),
        "dispatch_drivers": drivers_on_shift(),
    }


def _back(request: HttpRequest, trip: Trip) -> HttpResponse:
    if request.POST.get("back") == "drivers":
        return redirect("desk:drivers")
    return redirect("desk:appointment", pk=trip.appointment_id)


def _trip(pk: int) -> Trip:
    return get_object_or_404(Trip.objects.select_related("appointment", "driver"), pk=pk)


def _form_error(request: HttpRequest, form: forms.Form) -> None:
    for name, errors in form.errors.items():
        label = "" if name == "__all__" else f"{name.replace('_', ' ').capitalize()}: "
        messages.error(request, f"{label}{errors[0]}")


@desk_only
@require_POST
def trip_assign(request: HttpRequest, pk: int) -> HttpResponse:
    trip = _trip(pk)
    form = AssignForm(request.POST, prefix=f"assign{trip.pk}")
    if not form.is_valid():
        _form_error(request, form)
        return _back(request, trip)
    done = call_for_page(
        request,
        manual_dispatch.assign_by_hand,
        actor=request.user,
        trip_id=trip.pk,
        driver_id=form.cleaned_data["driver"],
        reason=form.cleaned_data["reason"],
    )
    if done is not None:
        messages.success(request, f"{word(done.leg)} trip given to {done.driver}, who is told.")
    return _back(request, trip)


@desk_only
@require_POST
def trip_unassign(request: HttpRequest, pk: int) -> HttpResponse:
    trip = _trip(pk)
    form = UnassignForm(request.POST, prefix=f"unassign{trip.pk}")
    if not form.is_valid():
        _form_error(request, form)
        return _back(request, trip)
    driver = trip.driver
    done = call_for_page(
        request,
        manual_dispatch.unassign,
        actor=request.user,
        trip_id=trip.pk,
        reason=form.cleaned_data["reason"],
    )
    if done is not None:
        messages.success(request, f"{word(done.leg)} trip taken back from {driver}: queued again.")
    return _back(request, trip)


@desk_only
@require_POST
def act_for_therapist(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in THERAPIST_ACTIONS:
        raise Http404("No such action.")
    appointment = get_object_or_404(Appointment.objects.select_related("therapist"), pk=pk)
    form = ActForForm(request.POST, prefix=f"for-{action}")
    if not form.is_valid():
        _form_error(request, form)
        return redirect("desk:appointment", pk=appointment.pk)
    if action == "request_pickup":
        done: object = call_for_page(
            request,
            dispatch.request_pickup,
            actor=request.user,
            appointment_id=appointment.pk,
            on_behalf=True,
        )
    else:
        done = call_for_page(
            request,
            act_on_appointment,
            actor=request.user,
            appointment_id=appointment.pk,
            action=action,
            reason=form.cleaned_data["reason"],
            on_behalf=True,
        )
    if done is not None:
        messages.success(request, f"Recorded: {appointment.therapist} {PAST[action]}, by phone.")
    return redirect("desk:appointment", pk=appointment.pk)


@desk_only
@require_POST
def act_for_driver(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in DRIVER_ACTIONS:
        raise Http404("No such action.")
    trip = _trip(pk)
    form = ActForForm(request.POST, prefix=f"for{trip.pk}-{action}")
    if not form.is_valid():
        _form_error(request, form)
        return _back(request, trip)
    done = call_for_page(
        request,
        act_on_trip,
        actor=request.user,
        trip_id=trip.pk,
        action=action,
        reason=form.cleaned_data["reason"],
        on_behalf=True,
    )
    if done is not None:
        verb = "completed the trip" if action == "complete" else PAST[action]
        messages.success(request, f"Recorded: {trip.driver} {verb}, by phone.")
    return _back(request, trip)
