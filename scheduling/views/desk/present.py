"""What the desk's screens share: the role gate, the words for stored values, the
phone formats (masked and national), the query parameters every screen reads,
and how an appointment's transport stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import phonenumbers
from django import forms
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from scheduling import states
from scheduling.forms import sensible_day
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Audience,
    Channel,
    Client,
    Leg,
    PaymentStatus,
    Trip,
    TripStatus,
)
from scheduling.phones import default_region
from scheduling.views.common import role_required

desk_only = role_required(*states.DESK)


# Words for the stored values: the choices' own labels ("" is the "from" of a creation).
WORDS = {
    **{
        choice.value: choice.label
        for choices in (AppointmentStatus, TripStatus, PaymentStatus, Leg, Channel, Audience)
        for choice in choices
    },
    "": "new",
}


def word(value: str) -> str:
    return str(WORDS.get(value, value.replace("_", " ").capitalize()))


def labelled(rows: list, *names: str) -> list:
    """Give each row a `<name>_label` for the templates (like get_FOO_display, in WORDS)."""
    for row in rows:
        for name in names:
            setattr(row, f"{name}_label", word(getattr(row, name)))
    return rows


def masked_phone(e164: str) -> str:
    """Enough of a number to tell two clients apart on the phone, not enough to copy:
    '0917 ••• 4567'."""
    try:
        national = phonenumbers.format_number(
            phonenumbers.parse(e164, default_region()), phonenumbers.PhoneNumberFormat.NATIONAL
        )
    except phonenumbers.NumberParseException:
        national = e164
    digits = [c for c in national if c.isdigit()]
    if len(digits) < 8:
        return national
    return f"{''.join(digits[:4])} ••• {''.join(digits[-4:])}"


def national_phone(e164: str) -> str:
    try:
        number = phonenumbers.parse(e164, default_region())
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "desk/bad_request.html", {"message": message}, status=400)


def day_from(request: HttpRequest) -> date | None:
    """?date=YYYY-MM-DD (today when absent); None when it is not a day the desk shows."""
    text = request.GET.get("date", "").strip()
    if not text:
        return timezone.localdate()
    try:
        return sensible_day(date.fromisoformat(text))
    except (ValueError, forms.ValidationError):
        return None


def bad_day(request: HttpRequest) -> HttpResponse:
    shown = request.GET.get("date", "")[:40]
    return bad_request(
        request, f"“{shown}” is not a day the board can show. Pick a date like 2030-05-01."
    )


def int_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


@dataclass(frozen=True)
class Transport:
    label: str  # in full: "Drop-off: Dan Lim en route"
    tone: str  # a CSS suffix: none, queued, assigned, moving, done, cancelled
    short: str  # for a small board block: "En route"


def transport_of(appointment: Appointment) -> Transport:
    """Where the appointment's transport stands: the first leg still to be driven.
    Reads `appointment.trips` (prefetch it, ordered by window)."""
    if not appointment.needs_transport:
        return Transport("No transport", "none", "No transport")
    trips = list(appointment.trips.all())
    if not trips or all(t.status == TripStatus.CANCELLED for t in trips):
        return Transport("Transport cancelled", "cancelled", "Transport cancelled")
    ahead = [t for t in trips if t.status not in (TripStatus.DONE, TripStatus.CANCELLED)]
    if not ahead:
        return Transport("Transport done", "done", "Transport done")
    trip = ahead[0]
    leg = word(trip.leg)
    if trip.status == TripStatus.QUEUED:
        return Transport(f"{leg}: trip queued", "queued", "Trip queued")
    driver = str(trip.driver) if trip.driver_id else "driver"
    if trip.status == TripStatus.ASSIGNED:
        return Transport(f"{leg}: {driver} assigned", "assigned", driver)
    if trip.status == TripStatus.EN_ROUTE:
        return Transport(f"{leg}: {driver} en route", "moving", f"En route, {driver}")
    return Transport(f"{leg}: {driver} arrived", "moving", f"Arrived, {driver}")


def trips_prefetch() -> Prefetch:
    return Prefetch(
        "trips", queryset=Trip.objects.select_related("driver").order_by("window_start", "id")
    )


@dataclass
class ClientChoice:
    client: Client
    phone: str
    checked: bool = False


def client_choices(clients, checked_id: int | None = None) -> list[ClientChoice]:
    return [ClientChoice(c, masked_phone(c.phone), c.pk == checked_id) for c in clients]
