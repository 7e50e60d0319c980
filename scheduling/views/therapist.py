"""The therapist's day (phone-first): today's and the next week's appointments, each with
the buttons the state machine allows a therapist from its status.

Every button is a POST to one service call (act_on_appointment, request_pickup). A
refusal is shown on the appointment's own card, in the service's words. The list is a
live region: the stream says when it changed and the server renders it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from scheduling import states
from scheduling.domain import local_date, local_day_bounds
from scheduling.formats import moment, money
from scheduling.forms import CollectionForm, ReasonForm
from scheduling.models import Appointment, AppointmentStatus, Leg, Trip
from scheduling.services.appointments import act_on_appointment
from scheduling.services.dispatch import pickup_refusal, request_pickup
from scheduling.services.payments import COLLECTABLE, balance_of, held_by, record_collection
from scheduling.services.series import positions
from scheduling.views.common import StaffRequest, call_for_form, live_after, role_required
from scheduling.views.desk.visits import partners_of, visit_trips

DAYS_AHEAD = 7
# The status actions this page offers, in the order its buttons appear. Which of them a
# card shows is APPOINTMENT_RULES' answer for a therapist from the card's status.
OFFERED_ACTIONS = ("accept", "start", "complete", "reject", "no_show")
ACTION_TEXT = {
    "accept": "Accept",
    "start": "Start session",
    "complete": "Complete session",
    "reject": "Reject",
    "no_show": "Mark no-show",
}
DONE_TEXT = {
    "accept": "Accepted",
    "start": "Started",
    "complete": "Completed",
    "reject": "Rejected",
    "no_show": "Marked as no-show",
}
# The statuses' own labels, but a pending booking is the therapist's to answer.
STATUS_TEXT = {**dict(AppointmentStatus.choices), "pending": "Waiting for you"}
# Finished or called off: shown quietly, below the attention of the day.
CLOSED_STATUSES = frozenset(
    {"completed", "rejected", "cancelled", "expired", "no_show"},
)
# What counts as a session of the day: booked, held or missed by the client; not the
# ones that were called off.
SESSION_STATUSES = frozenset({"pending", "confirmed", "in_progress", "completed", "no_show"})
# appointment.removed: one given to another therapist leaves the day at once (issue 13).
LIVE_EVENTS = (
    "appointment.created appointment.updated appointment.removed trip.assigned trip.updated"
    " payment.updated"
)


class ActionForm(ReasonForm):
    """The desk's reason form in the therapist's words: the reason goes into the
    appointment's history, and is required to reject (the desk rebooks from it)."""

    def __init__(self, *args, action: str = "reject", **kwargs) -> None:
        super().__init__(*args, reason_required=action == "reject", **kwargs)
        field = self.fields["reason"]
        assert isinstance(field, forms.CharField)  # ReasonForm's reason, a text field
        field.label = "Reason"
        field.widget = forms.Textarea(attrs={"rows": 2, "maxlength": field.max_length})
        field.help_text = "The desk reads this when they rebook the client."
        field.error_messages["required"] = "Say why you cannot take it."


@dataclass(frozen=True)
class LegView:
    trip: Trip
    name: str
    state: str


def trip_state(trip: Trip) -> str:
    """A leg's state as the therapist thinks of it: who is coming, and how far along."""
    driver = (trip.driver.get_full_name() or trip.driver.username) if trip.driver else ""
    return {
        "queued": "Requested, finding a driver" if trip.requested_at else "Waiting for a driver",
        "assigned": f"{driver} assigned",
        "en_route": f"{driver} on the way",
        "arrived": f"{driver} has arrived",
        "done": "Done",
    }.get(trip.status, "Cancelled")


@dataclass
class Card:
    """One appointment as the therapist's page shows it."""

    appointment: Appointment
    form: ActionForm
    dropoff: Trip | None = None
    pickup: Trip | None = None
    actions: list[str] = field(default_factory=list)
    can_request_pickup: bool = False
    # Once the session has started: what is still to collect, and the form to record it.
    collect_form: CollectionForm | None = None
    due: str = ""
    # A standing booking's occurrence: "weekly, 3 of 8" (services/series.positions).
    series_label: str = ""
    # A couples or group visit's session: the partner therapists (issue 14).
    partners: list[Appointment] = field(default_factory=list)

    @property
    def visit_text(self) -> str:
        """ "Couples session with Ben Reyes" or "Group session of 3 with Ben Reyes and
        Cara Lim": who else is there with you."""
        live = [p for p in self.partners if p.status not in CLOSED_STATUSES]
        if not live:
            return ""
        names = [str(p.therapist) for p in live]
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
        kind = "Couples session" if len(live) == 1 else f"Group session of {len(live) + 1}"
        return f"{kind} with {who}"

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.appointment.status, self.appointment.status)

    @property
    def closed(self) -> bool:
        return self.appointment.status in CLOSED_STATUSES

    @property
    def legs(self) -> list[LegView]:
        return [
            LegView(trip, "Drop-off" if trip.leg == Leg.DROPOFF else "Pickup", trip_state(trip))
            for trip in (self.dropoff, self.pickup)
            if trip is not None
        ]

    @property
    def primary_actions(self) -> list[tuple[str, str]]:
        return [(a, ACTION_TEXT[a]) for a in self.actions if a not in {"reject", "no_show"}]

    @property
    def can_reject(self) -> bool:
        return "reject" in self.actions

    @property
    def can_mark_no_show(self) -> bool:
        return "no_show" in self.actions


@dataclass
class DayGroup:
    day: date
    label: str
    cards: list[Card]


def allowed_actions(status: str) -> list[str]:
    """The page's actions that the state machine lets a therapist take from `status`."""
    return states.offered(
        states.APPOINTMENT_RULES, OFFERED_ACTIONS, current=status, role=states.THERAPIST
    )


def latest_legs(trips: list[Trip]) -> dict[str, Trip]:
    """Each leg's newest trip: a reschedule cancels the old legs and plans new ones."""
    legs: dict[str, Trip] = {}
    for trip in sorted(trips, key=lambda t: t.pk):
        legs[trip.leg] = trip
    return legs


def build_card(
    appointment: Appointment,
    form: ActionForm | None = None,
    collect_form: CollectionForm | None = None,
    shared_trips: list[Trip] | None = None,
) -> Card:
    """`shared_trips`: a visit's trips, which carry this session's therapist though they
    hang on the visit's lead session."""
    legs = latest_legs(list(appointment.trips.all()) or shared_trips or [])
    pickup = legs.get(Leg.PICKUP)
    due = ""
    if appointment.status in COLLECTABLE:
        due = money(balance_of(appointment).due)
        collect_form = collect_form or CollectionForm(prefix=f"p{appointment.pk}")
    return Card(
        collect_form=collect_form,
        due=due,
        appointment=appointment,
        form=form or ActionForm(prefix=f"a{appointment.pk}"),
        dropoff=legs.get(Leg.DROPOFF),
        pickup=pickup,
        actions=allowed_actions(appointment.status),
        can_request_pickup=(
            pickup is not None
            and pickup.requested_at is None
            and pickup_refusal(appointment, pickup) is None
        ),
    )


def day_label(day: date, today: date) -> str:
    if day == today:
        return "Today"
    if day == today + timedelta(days=1):
        return "Tomorrow"
    return day.strftime("%A")


def day_groups(
    user,
    forms_by_id: dict[int, ActionForm] | None = None,
    collect_forms: dict[int, CollectionForm] | None = None,
) -> list[DayGroup]:
    """Today (always, even when empty) and each following day that has appointments."""
    forms_by_id = forms_by_id or {}
    collect_forms = collect_forms or {}
    today = timezone.localdate()
    start, _ = local_day_bounds(today)
    _, end = local_day_bounds(today + timedelta(days=DAYS_AHEAD))
    appointments = list(
        Appointment.objects.visible_to(user)
        .filter(start__gte=start, start__lt=end)
        .select_related("client", "service")
        .prefetch_related(
            Prefetch("trips", queryset=Trip.objects.select_related("driver").order_by("id"))
        )
        .order_by("start", "id")
    )
    groups: dict[date, DayGroup] = {today: DayGroup(today, "Today", [])}
    labels = positions(appointments)  # no query unless some belong to a series
    partners = partners_of(appointments)  # nor unless some are a visit's sessions
    shared = visit_trips(appointments)
    for appointment in appointments:
        day = local_date(appointment.start)
        group = groups.setdefault(day, DayGroup(day, day_label(day, today), []))
        card = build_card(
            appointment,
            forms_by_id.get(appointment.pk),
            collect_forms.get(appointment.pk),
            shared.get(appointment.visit_id or 0),
        )
        card.series_label = labels.get(appointment.pk, "")
        card.partners = partners.get(appointment.pk, [])
        group.cards.append(card)
    return sorted(groups.values(), key=lambda g: g.day)


def context(
    request: StaffRequest,
    forms_by_id: dict[int, ActionForm] | None = None,
    collect_forms: dict[int, CollectionForm] | None = None,
) -> dict:
    groups = day_groups(request.user, forms_by_id, collect_forms)
    cards = [card for group in groups for card in group.cards]
    today = groups[0]
    held = held_by(request.user)
    return {
        "held": held,
        "held_total": money(sum((p.amount for p in held), Decimal("0"))),
        "groups": groups,
        "days_ahead": DAYS_AHEAD,
        "today_count": sum(1 for c in today.cards if c.appointment.status in SESSION_STATUSES),
        "today_done": sum(1 for c in today.cards if c.appointment.status == "completed"),
        "waiting_count": sum(1 for c in cards if c.appointment.status == "pending"),
        "live_events": LIVE_EVENTS,
    }


def render_day(
    request: StaffRequest,
    forms_by_id: dict[int, ActionForm] | None = None,
    collect_forms: dict[int, CollectionForm] | None = None,
) -> HttpResponse:
    """The whole page, or (for htmx) the list region and the page's messages."""
    if request.htmx:
        return render(
            request, "therapist/_response.html", context(request, forms_by_id, collect_forms)
        )
    after = live_after(request.user)  # before the data: see live_after
    return render(
        request,
        "therapist/day.html",
        {"live_after": after, **context(request, forms_by_id, collect_forms)},
    )


@role_required(states.THERAPIST)
@require_GET
def day(request: StaffRequest) -> HttpResponse:
    return render_day(request)


@role_required(states.THERAPIST)
@require_GET
def appointments(request: StaffRequest) -> HttpResponse:
    """The live region on its own: what the page fetches when the stream says so."""
    return render(request, "therapist/_day.html", context(request))


def own_appointment(request: StaffRequest, pk: int) -> Appointment:
    """The therapist's own appointment, or 404: another's is not told apart from none."""
    return get_object_or_404(
        Appointment.objects.visible_to(request.user).select_related("client"), pk=pk
    )


def done(request: StaffRequest) -> HttpResponse:
    """After a successful action: the list again (htmx), or back to the page (PRG)."""
    if request.htmx:
        return render_day(request)
    return redirect("therapist:day")


@role_required(states.THERAPIST)
@require_POST
def act(request: StaffRequest, pk: int, action: str) -> HttpResponse:
    if action not in OFFERED_ACTIONS:
        raise Http404("No such action.")
    appointment = own_appointment(request, pk)
    form = ActionForm(request.POST, action=action, prefix=f"a{appointment.pk}")
    if not form.is_valid():
        return render_day(request, {appointment.pk: form})
    changed = call_for_form(
        form,
        act_on_appointment,
        actor=request.user,
        appointment_id=appointment.pk,
        action=action,
        reason=form.cleaned_data["reason"],
    )
    if changed is None:
        return render_day(request, {appointment.pk: form})
    messages.success(
        request, f"{DONE_TEXT[action]}: {appointment.client.name}, {moment(changed.start)}."
    )
    return done(request)


@role_required(states.THERAPIST)
@require_POST
def ask_for_pickup(request: StaffRequest, pk: int) -> HttpResponse:
    appointment = own_appointment(request, pk)
    form = ActionForm({}, action="request_pickup", prefix=f"a{appointment.pk}")
    form.is_valid()
    trip = call_for_form(form, request_pickup, actor=request.user, appointment_id=appointment.pk)
    if trip is None:
        return render_day(request, {appointment.pk: form})
    messages.success(request, f"Pickup requested from {appointment.client.name}'s address.")
    return done(request)


@role_required(states.THERAPIST)
@require_POST
def collect(request: StaffRequest, pk: int) -> HttpResponse:
    """Record cash or an e-wallet transfer taken at the visit (record_collection)."""
    appointment = own_appointment(request, pk)
    form = CollectionForm(request.POST, prefix=f"p{appointment.pk}")
    if not form.is_valid():
        return render_day(request, collect_forms={appointment.pk: form})
    payment = call_for_form(
        form,
        record_collection,
        actor=request.user,
        appointment_id=appointment.pk,
        method=form.cleaned_data["method"],
        amount=form.cleaned_data["amount"],
        reference=form.cleaned_data["reference"],
    )
    if payment is None:
        return render_day(request, collect_forms={appointment.pk: form})
    messages.success(
        request,
        f"Recorded {money(payment.amount)} {payment.currency} {payment.get_method_display()} "
        f"from {appointment.client.name}: the desk verifies it.",
    )
    return done(request)


urlpatterns = [
    path("", day, name="day"),
    path("appointments/", appointments, name="appointments"),
    path(
        "appointments/<int:pk>/request-pickup/",
        ask_for_pickup,
        name="request_pickup",
    ),
    path("appointments/<int:pk>/collect/", collect, name="collect"),
    path("appointments/<int:pk>/<slug:action>/", act, name="act"),
]
