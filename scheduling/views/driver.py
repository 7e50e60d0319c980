"""The driver's shift (phone-first): on or off shift, the place in the FIFO queue, the
trip in hand and the ones after it, with the buttons TRIP_RULES allows a driver.

What a driver sees of an appointment is where and when: the address, the window, the
session's times and the therapist they carry. Never the client's notes or phone: the
queries below do not even read the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from scheduling import states
from scheduling.domain import local_day_bounds
from scheduling.formats import clock
from scheduling.models import DriverProfile, Leg, Trip, TripStatus
from scheduling.services.dispatch import driver_queue, queue_position
from scheduling.services.trips import act_on_trip, set_shift
from scheduling.views.common import StaffRequest, call_for_form, live_after, role_required

# The driver's actions this page offers, in the order of a trip; which of them a trip
# shows is TRIP_RULES' answer for a driver from the trip's status.
OFFERED_ACTIONS = ("depart", "arrive", "complete")
ACTION_TEXT = {"depart": "On my way", "arrive": "I've arrived", "complete": "Trip done"}
DONE_TEXT = {"depart": "On your way", "arrive": "Arrived", "complete": "Trip done"}
STATUS_TEXT = {
    "queued": "Waiting for a driver",
    "assigned": "Assigned to you",
    "en_route": "On the way",
    "arrived": "Arrived",
    "done": "Done",
    "cancelled": "Cancelled",
}
# A trip under way comes before one that has not started, whatever their windows.
UNDER_WAY = (TripStatus.ARRIVED, TripStatus.EN_ROUTE)
STATUS_EVENTS = "driver.queue trip.assigned trip.updated"
TRIP_EVENTS = "trip.assigned trip.updated"


class ShiftForm(forms.Form):
    on_shift = forms.TypedChoiceField(
        choices=[("1", "On shift"), ("0", "Off shift")],
        coerce=lambda value: value == "1",
        error_messages={
            "required": "Choose on shift or off shift.",
            "invalid_choice": "Choose on shift or off shift.",
        },
    )


class TripActionForm(forms.Form):
    """No fields: it carries a refusal from the service onto the trip's card."""


@dataclass
class TripCard:
    trip: Trip
    form: TripActionForm
    actions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def leg_text(self) -> str:
        return "Drop-off" if self.trip.leg == Leg.DROPOFF else "Pickup"

    @property
    def therapist_name(self) -> str:
        therapist = self.trip.appointment.therapist
        return therapist.get_full_name() or therapist.username

    @property
    def task_text(self) -> str:
        if self.trip.leg == Leg.DROPOFF:
            return f"Take {self.therapist_name} to the client"
        return f"Bring {self.therapist_name} back from the client"

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.trip.status, self.trip.status)


def allowed_actions(status: str) -> list[tuple[str, str]]:
    """The page's actions that the state machine lets a driver take from `status`."""
    actions = states.offered(states.TRIP_RULES, OFFERED_ACTIONS, current=status, role=states.DRIVER)
    return [(action, ACTION_TEXT[action]) for action in actions]


def trip_cards(user, forms_by_id: dict[int, TripActionForm]) -> list[TripCard]:
    """The driver's trips that hold their time: under way first, then by window."""
    trips = (
        Trip.objects.visible_to(user)
        .busy()
        .select_related("appointment__therapist")
        .order_by("window_start", "id")
    )
    ordered = sorted(trips, key=lambda t: t.status not in UNDER_WAY)  # stable: by window
    return [
        TripCard(
            trip=trip,
            form=forms_by_id.get(trip.pk) or TripActionForm(prefix=f"t{trip.pk}"),
            actions=allowed_actions(trip.status),
        )
        for trip in ordered
    ]


def done_today(user) -> list[Trip]:
    start, end = local_day_bounds(timezone.localdate())
    return list(
        Trip.objects.visible_to(user)
        .filter(status=TripStatus.DONE, window_start__gte=start, window_start__lt=end)
        .select_related("appointment__therapist")
        .order_by("-window_start", "-id")
    )


def shift_context(user) -> dict:
    profile = DriverProfile.objects.filter(user=user).first()
    position = queue_position(profile) if profile else None
    return {
        "profile": profile,
        "position": position,
        # Only worth a query when the driver is in the queue to be counted.
        "queue_length": driver_queue().count() if position else None,
        "status_events": STATUS_EVENTS,
    }


def trips_context(user, forms_by_id: dict[int, TripActionForm] | None = None) -> dict:
    cards = trip_cards(user, forms_by_id or {})
    return {
        "current": cards[0] if cards else None,
        "later": cards[1:],
        "done_today": done_today(user),
        "today": timezone.localdate(),
        "trip_events": TRIP_EVENTS,
    }


def render_shift(
    request: StaffRequest, forms_by_id: dict[int, TripActionForm] | None = None
) -> HttpResponse:
    """The whole page, or (for htmx) both regions and the page's messages."""
    if request.htmx:
        context = {**shift_context(request.user), **trips_context(request.user, forms_by_id)}
        return render(request, "driver/_response.html", context)
    after = live_after(request.user)  # before the data: see live_after
    context = {**shift_context(request.user), **trips_context(request.user, forms_by_id)}
    return render(request, "driver/shift.html", {"live_after": after, **context})


def done(request: StaffRequest) -> HttpResponse:
    if request.htmx:
        return render_shift(request)
    return redirect("driver:shift")


@role_required(states.DRIVER)
@require_GET
def shift(request: StaffRequest) -> HttpResponse:
    return render_shift(request)


@role_required(states.DRIVER)
@require_GET
def status_region(request: StaffRequest) -> HttpResponse:
    return render(request, "driver/_status.html", shift_context(request.user))


@role_required(states.DRIVER)
@require_GET
def trips_region(request: StaffRequest) -> HttpResponse:
    return render(request, "driver/_trips.html", trips_context(request.user))


@role_required(states.DRIVER)
@require_POST
def change_shift(request: StaffRequest) -> HttpResponse:
    form = ShiftForm(request.POST)
    if not form.is_valid():
        messages.error(request, str(form.errors["on_shift"][0]))
        return done(request)
    if not DriverProfile.objects.filter(user=request.user).exists():
        messages.error(request, "You have no driver profile yet: ask a manager to set it up.")
        return done(request)
    on_shift = form.cleaned_data["on_shift"]
    profile = call_for_form(form, set_shift, driver=request.user, on_shift=on_shift)
    if profile is None:
        messages.error(request, str(form.non_field_errors()[0]))
    elif on_shift:
        messages.success(request, "You are on shift: trips come to you in turn.")
    else:
        messages.success(request, "You are off shift: no new trips until you come back.")
    return done(request)


@role_required(states.DRIVER)
@require_POST
def act(request: StaffRequest, pk: int, action: str) -> HttpResponse:
    if action not in OFFERED_ACTIONS:
        raise Http404("No such action.")
    # Another driver's trip is not told apart from no trip.
    trip = get_object_or_404(
        Trip.objects.visible_to(request.user).select_related("appointment__therapist"), pk=pk
    )
    form = TripActionForm({}, prefix=f"t{trip.pk}")
    form.is_valid()
    changed = call_for_form(form, act_on_trip, actor=request.user, trip_id=trip.pk, action=action)
    if changed is None:
        return render_shift(request, {trip.pk: form})
    card = TripCard(trip=trip, form=form)
    messages.success(
        request,
        f"{DONE_TEXT[action]}: {card.leg_text.lower()} of {card.therapist_name}, "
        f"{clock(trip.window_start)}.",
    )
    return done(request)


urlpatterns = [
    path("", shift, name="shift"),
    path("status/", status_region, name="status"),
    path("trips/", trips_region, name="trips"),
    path("shift/", change_shift, name="change_shift"),
    path("trips/<int:pk>/<slug:action>/", act, name="act"),
]
