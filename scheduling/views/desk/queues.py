"""The queues that need a person: pending acceptance, rejected and expired to rebook,
trips with no driver (and the dispatcher's reason), failed messages with Retry, and cash
and e-wallet collections to verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.db.models import Count, F, QuerySet, Window
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Notification,
    NotificationStatus,
    Payment,
    PaymentState,
    Trip,
    User,
)
from scheduling.services import attention, dispatch, gateway_payments
from scheduling.services.notifications import outbox, sweeps
from scheduling.views.common import StaffRequest, call_for_page, live_after
from scheduling.views.desk.present import desk_only, labelled, masked_phone, word

# Rows a queue lists; its heading says how many there are in all.
QUEUE_LIMIT = 50


# Rejected and expired bookings stay on the rebooking list until this long after their time.
REBOOK_RECENT = timedelta(days=2)


SKIP_REASONS = {
    "off_shift": "off shift",
    "busy": "busy",
    "vehicle": "vehicle too small",
    # Taking this trip would have left another booked trip with no driver who can take it.
    "needed_later": "kept for another booked trip no one else can take",
}


@dataclass
class WaitingTrip:
    trip: Trip
    reason: str
    checked_at: datetime | None


def first_rows(rows: QuerySet, limit: int) -> tuple[list, int]:
    """The first `limit` rows and how many there are in all, in one query."""
    listed = list(rows.annotate(total=Window(Count("pk")))[:limit])
    return listed, (listed[0].total if listed else 0)


def skip_text(decision, names: dict[int, str]) -> str:
    if decision is None:
        return "The dispatcher has not looked at it yet."
    if not decision.skipped:
        return "No driver was waiting in the queue."
    passed = ", ".join(
        f"{names.get(s['driver'], 'a driver')} ({SKIP_REASONS.get(s['reason'], s['reason'])})"
        for s in decision.skipped
    )
    return f"Every waiting driver was passed over: {passed}."


def waiting_trips(trips: list[Trip]) -> list[WaitingTrip]:
    """Queued trips with the dispatcher's last word on each, in two queries."""
    decisions = dispatch.last_decisions([t.pk for t in trips])
    driver_ids = {s["driver"] for d in decisions.values() for s in d.skipped}
    names = {u.pk: str(u) for u in User.objects.filter(pk__in=driver_ids)}
    return [
        WaitingTrip(
            trip=trip,
            reason=skip_text(decisions.get(trip.pk), names),
            checked_at=decisions[trip.pk].decided_at if trip.pk in decisions else None,
        )
        for trip in trips
    ]


@dataclass
class FailedLine:
    notification: Notification
    what: str
    channel: str
    recipient: str
    to: str


def failed_lines(rows: list[Notification]) -> list[FailedLine]:
    """Notifications as the desk reads them (the failed ones, or an appointment's)."""
    return [
        FailedLine(
            notification=n,
            what=outbox.SUBJECTS.get(n.kind, word(n.kind)),
            channel=word(n.channel),
            recipient=f"{word(n.audience)} {n.client or n.user}",
            to=n.to if "@" in n.to else masked_phone(n.to),
        )
        for n in rows
    ]


def queues_context(limit: int = QUEUE_LIMIT) -> dict[str, Any]:
    """The four lists (their first `limit` rows) and how long each is."""
    now = timezone.now()
    pending, pending_total = first_rows(
        Appointment.objects.filter(status=AppointmentStatus.PENDING)
        .select_related("client", "service", "therapist")
        # A series' later occurrences have no deadline of their own: after the rest.
        .order_by(F("response_deadline").asc(nulls_last=True), "id"),
        limit,
    )
    rebook, rebook_total = first_rows(
        Appointment.objects.to_rebook(since=now - REBOOK_RECENT)
        .select_related("client", "service", "therapist")
        .order_by("start", "id"),
        limit,
    )
    trips, trips_total = first_rows(
        Trip.objects.filter(dispatch.dispatchable(now))
        .select_related("appointment__client", "appointment__service")
        .order_by("window_start", "created_at", "id"),
        limit,
    )
    failed, failed_total = first_rows(
        Notification.objects.filter(status=NotificationStatus.FAILED)
        .select_related("client", "user")
        .order_by("-updated_at", "-id"),
        limit,
    )
    # Cash and e-wallet collections nobody has checked yet: oldest first.
    unverified, unverified_total = first_rows(
        Payment.objects.unverified()
        .select_related("appointment__client", "collected_by")
        .order_by("created_at", "id"),
        limit,
    )
    # Gateway payments a webhook or the sweep disagreed with, still open; and money still
    # held for cancelled bookings, for a manager to refund (issue 15, docs/payments.md).
    flagged, flagged_total = first_rows(
        Payment.objects.flagged()
        .filter(status=PaymentState.PENDING)
        .select_related("appointment__client")
        .order_by("-flagged_at", "-id"),
        limit,
    )
    to_refund, to_refund_total = first_rows(
        gateway_payments.to_refund().select_related("appointment__client").order_by("id"),
        limit,
    )
    # Left open two hours past its end (issue 13): the desk calls and acts for them.
    late = attention.overdue(now=now, limit=limit)
    late_total = (
        len(late.appointments)
        if len(late.appointments) < limit
        else Appointment.objects.still_in_progress(before=now - attention.OVERDUE_AFTER).count()
    ) + (
        len(late.trips)
        if len(late.trips) < limit
        else Trip.objects.still_open(before=now - attention.OVERDUE_AFTER).count()
    )
    return {
        "overdue_appointments": late.appointments,
        "overdue_trips": labelled(late.trips, "leg", "status"),
        "overdue_total": late_total,
        "unverified": unverified,
        "unverified_total": unverified_total,
        "flagged_payments": flagged,
        "flagged_total": flagged_total,
        "to_refund": to_refund,
        "to_refund_total": to_refund_total,
        "pending": pending,
        "pending_total": pending_total,
        "rebook": labelled(rebook, "status"),
        "rebook_total": rebook_total,
        "waiting": waiting_trips(labelled(trips, "leg")),
        "waiting_total": trips_total,
        "failed": failed_lines(failed),
        "failed_total": failed_total,
        "attention_total": pending_total
        + late_total
        + rebook_total
        + trips_total
        + failed_total
        + unverified_total
        + flagged_total
        + to_refund_total,
    }


@desk_only
@require_GET
def queues(request: StaffRequest) -> HttpResponse:
    context = {"live_after": live_after(request.user), **queues_context()}
    return render(request, "desk/queues.html", context)


@desk_only
@require_GET
def queues_fragment(request: StaffRequest) -> HttpResponse:
    return render(request, "desk/_queues.html", queues_context())


@desk_only
@require_GET
def attention_fragment(request: StaffRequest) -> HttpResponse:
    """The board's summary of the queues: how many of each, and the most pressing."""
    return render(request, "desk/_attention.html", queues_context(limit=1))


@desk_only
@require_POST
def retry_notification(request: StaffRequest, pk: int) -> HttpResponse:
    done = call_for_page(request, sweeps.retry_notification, notification_id=pk)
    if done is not None:
        messages.success(request, "The message will be sent again.")
    if request.htmx:
        return render(request, "desk/_queues_swap.html", queues_context())
    if request.POST.get("back") == "appointment":
        appointment_id = (
            Notification.objects.filter(pk=pk).values_list("appointment_id", flat=True).first()
        )
        if appointment_id:
            return redirect("desk:appointment", pk=appointment_id)
    return redirect("desk:queues")
