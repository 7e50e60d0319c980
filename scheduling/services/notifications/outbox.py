"""Notifications, writing: the rows written in the transaction of their cause.

A booking, a status change, an assignment, the reminder scan: each writes its rows inside
its own transaction, with a unique key built from the cause (the transition, the trip, the
appointment's time), and enqueues on commit one delivery task for all the rows the
transaction wrote (`delivery.enqueue`). A transaction that makes many (a dispatcher pass)
collects them in an `Outbox` and writes them in one statement.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils import timezone

from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Audience,
    Channel,
    Client,
    Notification,
    NotificationStatus,
    Transition,
    Trip,
    User,
)
from scheduling.services.notifications import delivery

BOOKING_CREATED = "booking_created"
ACCEPTED = "appointment_accepted"
REJECTED = "appointment_rejected"
CANCELLED = "appointment_cancelled"
RESCHEDULED = "appointment_rescheduled"
FOLLOW_UP = "follow_up"
REMINDER_24H = "reminder_24h"
REMINDER_2H = "reminder_2h"
TRIP_ASSIGNED = "trip_assigned"

# Who hears about what. Templates: templates/notifications/<kind>.<audience>.txt.
AUDIENCES: dict[str, tuple[str, ...]] = {
    BOOKING_CREATED: (Audience.CLIENT, Audience.THERAPIST),
    ACCEPTED: (Audience.CLIENT,),
    REJECTED: (Audience.CLIENT,),
    CANCELLED: (Audience.CLIENT, Audience.THERAPIST),
    RESCHEDULED: (Audience.CLIENT, Audience.THERAPIST),
    FOLLOW_UP: (Audience.CLIENT,),
    REMINDER_24H: (Audience.CLIENT, Audience.THERAPIST),
    REMINDER_2H: (Audience.CLIENT, Audience.THERAPIST),
    TRIP_ASSIGNED: (Audience.DRIVER,),
    # Reassigning (services/reassign.py): the new therapist, the old one, the client.
    "appointment_reassigned": (Audience.THERAPIST,),
    "appointment_unassigned": (Audience.THERAPIST,),
    "appointment_moved_therapist_changed": (Audience.CLIENT,),
    # A gateway link to pay (services/gateway_payments.py).
    "payment_link": (Audience.CLIENT,),
}
SUBJECTS = {
    BOOKING_CREATED: "Booking received",
    ACCEPTED: "Booking confirmed",
    REJECTED: "Booking not accepted",
    CANCELLED: "Booking cancelled",
    RESCHEDULED: "Booking moved",
    FOLLOW_UP: "Thank you",
    REMINDER_24H: "Reminder: tomorrow",
    REMINDER_2H: "Reminder: in two hours",
    TRIP_ASSIGNED: "New trip",
    "appointment_reassigned": "New booking",
    "appointment_unassigned": "Booking given to another therapist",
    "appointment_moved_therapist_changed": "Booking moved",
    "payment_link": "Your payment link",
}
# The appointment action (its transition) that produces each message.
ACTION_KINDS = {
    "create": BOOKING_CREATED,
    "accept": ACCEPTED,
    "reject": REJECTED,
    "cancel": CANCELLED,
    "reschedule": RESCHEDULED,
    "complete": FOLLOW_UP,
}
# Reminders, longest lead first; each is sent once its lead is reached and before the
# next one's is.
REMINDERS = {REMINDER_24H: timedelta(hours=24), REMINDER_2H: timedelta(hours=2)}
REMINDED_STATUSES = (AppointmentStatus.PENDING, AppointmentStatus.CONFIRMED)
# The appointment's time is no longer the one its pending reminders are about.
VOIDS_REMINDERS = frozenset({"reschedule", "cancel", "reject", "expire", "no_show"})
# Rows one sweep or scan handles; the next one takes the rest.
SWEEP_LIMIT = 2000


def appointment_changed(appointment: Appointment, transition: Transition) -> list[Notification]:
    """The messages an appointment's transition causes. Runs in the caller's transaction."""
    if transition.action in VOIDS_REMINDERS:
        cancel_pending_reminders(appointment)
    kind = ACTION_KINDS.get(transition.action)
    if kind is None:
        return []
    send_after = transition.at
    if kind == FOLLOW_UP:
        delay = int(settings.SCHEDULING["FOLLOW_UP_DELAY_MINUTES"])
        send_after += timedelta(minutes=delay)
    return _write(
        kind,
        appointment=appointment,
        cause=f"t{transition.pk}",
        send_after=send_after,
        now=transition.at,
    )


def payment_link_sent(
    appointment: Appointment,
    *,
    payment_id: int,
    url: str,
    amount: str,
    currency: str,
    now: datetime,
) -> list[Notification]:
    """The client's link to pay; keyed by the payment, so it is written once per link."""
    return _write(
        "payment_link",
        appointment=appointment,
        cause=f"payment{payment_id}",
        send_after=now,
        now=now,
        may_exist=True,
        extra={"url": url, "amount": amount, "currency": currency},
    )


def trip_assigned(
    trip: Trip, driver: User, *, now: datetime, outbox: Outbox | None = None
) -> list[Notification]:
    """Tell the driver. A trip is assigned once in its life, so the trip names the cause."""
    return _write(
        TRIP_ASSIGNED,
        appointment=trip.appointment,
        trip=trip,
        driver=driver,
        cause=f"trip{trip.pk}",
        send_after=now,
        now=now,
        outbox=outbox,
    )


class Outbox:
    """Messages collected by a transaction that makes many (a dispatcher pass) and written
    in one statement by `flush()`, before it commits."""

    def __init__(self) -> None:
        self.rows: list[Notification] = []

    def flush(self) -> list[Notification]:
        rows, self.rows = self.rows, []
        return _save(rows)


def cancel_pending_reminders(appointment: Appointment) -> int:
    return Notification.objects.filter(
        appointment=appointment, kind__in=REMINDERS, status=NotificationStatus.PENDING
    ).update(status=NotificationStatus.CANCELLED, updated_at=timezone.now())


def queue_reminders(*, now: datetime | None = None) -> list[int]:
    """The periodic reminder scan: write the reminders that are due; return their ids.

    A reminder is due once its lead is reached and until the next shorter lead is, for an
    appointment that was booked (or last moved) before the lead: one booked later has
    just had its confirmation. The appointment rows are locked (skipping those locked by a
    reschedule or cancel in progress; the next scan sees them), so a reminder is never
    written for a time that a concurrent reschedule is replacing.
    """
    now = now or timezone.now()
    written: list[int] = []
    leads = list(REMINDERS.items())
    for index, (kind, lead) in enumerate(leads):
        after = leads[index + 1][1] if index + 1 < len(leads) else timedelta(0)
        with transaction.atomic():
            due = (
                Appointment.objects.filter(
                    status__in=REMINDED_STATUSES, start__gt=now + after, start__lte=now + lead
                )
                .exclude(
                    Exists(
                        Transition.objects.filter(
                            appointment=OuterRef("pk"),
                            action__in=("create", "reschedule"),
                            at__gt=OuterRef("start") - lead,
                        )
                    )
                )
                .exclude(
                    Exists(
                        Notification.objects.filter(
                            appointment=OuterRef("pk"),
                            kind=kind,
                            created_at__gte=OuterRef("start") - lead,
                        )
                    )
                )
                .select_for_update(of=("self",), skip_locked=True)
                .select_related("client", "therapist", "service")
                .order_by("start", "id")[:SWEEP_LIMIT]
            )
            for appointment in due:
                stamp = int(appointment.start.timestamp())
                rows = _write(
                    kind,
                    appointment=appointment,
                    cause=f"at{stamp}",
                    send_after=now,
                    now=now,
                    may_exist=True,
                )
                written.extend(row.pk for row in rows)
    return written


def _write(
    kind: str,
    *,
    appointment: Appointment,
    cause: str,
    send_after: datetime,
    now: datetime,
    trip: Trip | None = None,
    driver: User | None = None,
    may_exist: bool = False,
    outbox: Outbox | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Notification]:
    """Write the messages of one cause; return the rows written. Keys naming a transition
    or a trip are new by construction; a scan's keys (`may_exist`) may be written already,
    and those are left alone."""
    rows = []
    context = {
        "appointment": appointment,
        "client": appointment.client,
        "therapist": appointment.therapist,
        "service": appointment.service,
        "trip": trip,
        "driver": driver,
        **(extra or {}),
    }
    for audience in AUDIENCES[kind]:
        person: Client | User | None = (
            appointment.client
            if audience == Audience.CLIENT
            else appointment.therapist
            if audience == Audience.THERAPIST
            else driver
        )
        # Only a trip's messages go to a driver, and those are written with the driver.
        assert person is not None, f"{kind}: no {audience} to write to"
        client = person if isinstance(person, Client) else None
        user = person if isinstance(person, User) else None
        address = _address(person)
        if address is None:  # nobody to write to: no phone, no email
            continue
        channel, to = address
        recipient = person.pk
        rows.append(
            Notification(
                key=f"appointment{appointment.pk}:{kind}:{cause}:{channel}:{audience}{recipient}",
                kind=kind,
                channel=channel,
                audience=audience,
                client=client,
                user=user,
                to=to,
                appointment=appointment,
                trip=trip,
                subject=SUBJECTS[kind],
                body=render(kind, audience, context),
                send_after=send_after,
                enqueued_at=now if send_after <= now else None,
            )
        )
    if rows and may_exist:
        # The scan holds the appointment's row lock, so no other scan writes these keys
        # between this read and the insert.
        existing = set(
            Notification.objects.filter(key__in=[r.key for r in rows]).values_list("key", flat=True)
        )
        rows = [r for r in rows if r.key not in existing]
    if outbox is not None:
        outbox.rows.extend(rows)
        return rows
    return _save(rows)


def _save(rows: list[Notification]) -> list[Notification]:
    """Insert; the due rows join the transaction's delivery task, sent on commit."""
    if not rows:
        return []
    created = Notification.objects.bulk_create(rows)
    delivery.enqueue(row.pk for row in created if row.enqueued_at is not None)
    return created


def _address(person: Client | User) -> tuple[str, str] | None:
    """(channel, address) for a recipient: the client's preferred channel when it can be
    used, SMS to a phone number, else email."""
    if isinstance(person, Client):
        preferred = (person.preferences or {}).get("channel")
        if preferred == Channel.WHATSAPP and person.phone:
            return Channel.WHATSAPP, person.phone
        if preferred == Channel.EMAIL and person.email:
            return Channel.EMAIL, person.email
    phone, email = person.phone, person.email
    if phone:
        return Channel.SMS, phone
    if email:
        return Channel.EMAIL, email
    return None


def render(kind: str, audience: str, context: dict[str, Any]) -> str:
    """The message text; times in the business time zone whatever zone is active."""
    family = "reminder" if kind in REMINDERS else kind
    context = {**context, "kind": kind}
    with timezone.override(settings.TIME_ZONE):
        text = render_to_string(f"notifications/{family}.{audience}.txt", context)
    return text.strip()
