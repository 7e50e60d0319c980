"""What the desk knows about one client (their page, issue 13 item 5): appointments
ahead and behind, how often they failed to come or called off late, the messages sent
to them, their payments and what they still owe. Reads only; each list is bounded and
each is one query, whatever the client's history.

A **late cancellation** is a cancelled appointment whose cancel was recorded once the
therapist had to leave for it: at or after its `busy_from` (the start less the travel
as booked, the time the booking rules hold the therapist from). Before that moment the
time can still be given to someone else; after it the therapist was already on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import (
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
)

from scheduling.models import Appointment, Client, Notification, Payment, Transition
from scheduling.services.payments import COLLECTABLE
from scheduling.states import AppointmentStatus

UPCOMING_LIMIT = 20
MESSAGES_LIMIT = 20
PAYMENTS_LIMIT = 20
PAST_PAGE = 20


@dataclass(frozen=True)
class Counts:
    booked: int
    completed: int
    no_shows: int
    cancelled: int
    late_cancellations: int


@dataclass(frozen=True)
class Owed:
    """Money for the sessions that took place (in progress or completed): their prices,
    what of them was received and kept, and what is still due."""

    charged: Decimal
    paid: Decimal
    due: Decimal


def appointments_of(client: Client) -> QuerySet[Appointment]:
    """The client's appointments with what their rows show (service, therapist)."""
    return Appointment.objects.filter(client=client).select_related("service", "therapist")


def upcoming(client: Client, *, now: datetime, limit: int = UPCOMING_LIMIT) -> list[Appointment]:
    """Appointments not yet over, soonest first (any status: a cancelled one shows as such)."""
    return list(appointments_of(client).filter(end__gt=now).order_by("start", "id")[:limit])


def past(client: Client, *, now: datetime) -> QuerySet[Appointment]:
    """Appointments over, latest first (the page takes them a page at a time)."""
    return appointments_of(client).filter(end__lte=now).order_by("-start", "-id")


def late_cancel() -> Exists:
    """The appointment's cancel was recorded once its therapist had to leave."""
    return Exists(
        Transition.objects.filter(
            appointment=OuterRef("pk"), action="cancel", at__gte=OuterRef("busy_from")
        )
    )


def counts(client: Client) -> Counts:
    """The client's record in one query."""
    cancelled = Q(status=AppointmentStatus.CANCELLED)
    totals = Appointment.objects.filter(client=client).aggregate(
        booked=Count("pk"),
        completed=Count("pk", filter=Q(status=AppointmentStatus.COMPLETED)),
        no_shows=Count("pk", filter=Q(status=AppointmentStatus.NO_SHOW)),
        cancelled=Count("pk", filter=cancelled),
        late_cancellations=Count("pk", filter=cancelled & Q(late_cancel())),
    )
    return Counts(**totals)


def messages_to(client: Client, *, limit: int = MESSAGES_LIMIT) -> list[dict[str, Any]]:
    """The latest messages to the client: what, how, where delivery stands, when (no
    bodies: the page does not need them and they hold addresses and times)."""
    rows = (
        Notification.objects.filter(client=client)
        .order_by("-created_at", "-id")
        .values("pk", "kind", "channel", "status", "created_at", "sent_at", "appointment_id")
    )
    return [dict(row) for row in rows[:limit]]


def payments_of(client: Client, *, limit: int = PAYMENTS_LIMIT) -> list[Payment]:
    """The latest payments for the client's appointments."""
    rows = (
        Payment.objects.filter(appointment__client=client)
        .select_related("appointment__service", "collected_by", "verified_by")
        .order_by("-created_at", "-id")
    )
    return list(rows[:limit])


def owed(client: Client) -> Owed:
    """What the client owes, in one query: for each session that took place
    (`services.payments.COLLECTABLE`), its price less its settled payments less their
    refunds (`PaymentQuerySet.settled_total`'s sum, per appointment), never below zero
    (`services.payments.balance_of`'s rule), added up."""
    rows = (
        Appointment.objects.filter(client=client, status__in=COLLECTABLE)
        .with_paid()
        .values_list("price", "paid")
    )
    charged = paid = due = Decimal("0.00")
    for price, received in rows:
        charged += price
        paid += received
        due += max(price - received, Decimal("0.00"))
    return Owed(charged=charged, paid=paid, due=due)
