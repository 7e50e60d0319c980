"""Notifications: written in the transaction of their cause, delivered at most once each.

Writing. A booking, a status change, an assignment, the reminder scan: each writes its
rows inside its own transaction, with a unique key built from the cause (the transition,
the trip, the appointment's time), and enqueues one delivery task per row on commit.

Delivering (`deliver`, one task per row):
1. Claim: in a short transaction, a due `pending` row becomes `sending` with one more
   attempt and a lease. A second task for the same row (the broker delivering twice, the
   sweep enqueueing again) finds it is not `pending` and does nothing.
2. Send, outside any transaction, with the row's key as the provider's idempotency key.
3. Record: `sent`; or back to `pending` after an exponential backoff with jitter; or
   `failed` with the error kept and a `notification.failed` stream event for the desk.

A worker that dies between 1 and 3 leaves the row `sending`. Nobody knows whether the
provider took the message. Once the lease has run out (it outlasts the task's hard time
limit, so the worker is certainly gone) the sweep decides:
- a backend whose provider dedupes by key (`dedupes_by_key`) gets it again with the same
  key: the provider delivers at most once, so the notification is sent exactly once;
- any other backend (console, SMTP, Twilio) does not: the row is `failed` with
  "outcome unknown", and a person may send it again (`retry_failed_notifications`).
The same rule applies to a send that ends in a timeout after the request left.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.template.loader import render_to_string
from django.utils import timezone

from scheduling import background
from scheduling.errors import InvalidTransition, NotFound
from scheduling.events import EventBatch
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
from scheduling.notify import (
    Message,
    OutcomeUnknown,
    PermanentError,
    TransientError,
    backend_for,
)

logger = logging.getLogger(__name__)

NOTIFICATION_FAILED = "notification.failed"

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


# Delivery runs once per message, so its two statements are written out: the ORM's query
# building cost more CPU than the rest of a delivery (bench/worker).
CLAIMED = (
    "id", "key", "kind", "channel", "audience", "to", "subject", "body", "attempts",
    "appointment_id", "trip_id",
)  # fmt: skip


def _column(name: str) -> str:
    return connection.ops.quote_name(Notification._meta.get_field(name).column)


def _claim_sql() -> str:
    table = connection.ops.quote_name(Notification._meta.db_table)
    return (
        f"UPDATE {table} SET status = %s, attempts = attempts + 1, "
        "lease_until = %s, updated_at = %s "
        "WHERE id = %s AND status = %s AND send_after <= %s "
        f"RETURNING {', '.join(_column(name) for name in CLAIMED)}"
    )


@cache
def _outcome_sql(names: tuple[str, ...]) -> str:
    table = connection.ops.quote_name(Notification._meta.db_table)
    assignments = ", ".join(f"{_column(name)} = %s" for name in names)
    return f"UPDATE {table} SET {assignments} WHERE id = %s AND status = %s AND attempts = %s"


CLAIM_SQL = _claim_sql()


# --- writing --------------------------------------------------------------------------------


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
    extra: dict | None = None,
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
        client = appointment.client if audience == Audience.CLIENT else None
        user = {Audience.THERAPIST: appointment.therapist, Audience.DRIVER: driver}.get(audience)
        address = _address(client=client, user=user)
        if address is None:  # nobody to write to: no phone, no email
            continue
        channel, to = address
        recipient = client.pk if client else user.pk
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
    """Insert; each due row gets its delivery task once the transaction commits."""
    if not rows:
        return []
    created = Notification.objects.bulk_create(rows)
    for row in created:
        if row.enqueued_at is not None:
            background.after_commit(background.DELIVER, row.pk)
    return created


def _address(*, client: Client | None, user: User | None) -> tuple[str, str] | None:
    """(channel, address) for a recipient: the client's preferred channel when it can be
    used, SMS to a phone number, else email."""
    if client is not None:
        preferred = (client.preferences or {}).get("channel")
        if preferred == Channel.WHATSAPP and client.phone:
            return Channel.WHATSAPP, client.phone
        if preferred == Channel.EMAIL and client.email:
            return Channel.EMAIL, client.email
        phone, email = client.phone, client.email
    else:
        phone, email = user.phone, user.email
    if phone:
        return Channel.SMS, phone
    if email:
        return Channel.EMAIL, email
    return None


def render(kind: str, audience: str, context: dict) -> str:
    """The message text; times in the business time zone whatever zone is active."""
    family = "reminder" if kind in REMINDERS else kind
    context = {**context, "kind": kind}
    with timezone.override(settings.TIME_ZONE):
        text = render_to_string(f"notifications/{family}.{audience}.txt", context)
    return text.strip()


# --- delivering -----------------------------------------------------------------------------


def deliver(*, notification_id: int, now: datetime | None = None) -> str:
    """Send one notification if it is due and nobody else is sending it.

    Returns what happened: "sent", "retry", "failed", or "skipped" (not due, not pending,
    or claimed by another worker)."""
    now = now or timezone.now()
    row = _claim(notification_id, now)
    if row is None:
        return "skipped"
    try:
        backend = backend_for(row.channel)
    except Exception as exc:
        # Misconfigured (a missing credential): nothing left; a person has to fix it.
        logger.exception("notification %s: no usable %s backend", row.pk, row.channel)
        return _fail(row, f"backend not usable: {exc}")
    message = Message(
        key=row.key, channel=row.channel, to=row.to, subject=row.subject, body=row.body
    )
    try:
        provider_id = backend.send(message)
    except PermanentError as exc:
        return _fail(row, str(exc))
    except TransientError as exc:
        return _retry(row, str(exc))
    except Exception as exc:
        # OutcomeUnknown, or anything unforeseen (a bug, the soft time limit): the provider
        # may have the message.
        if not isinstance(exc, OutcomeUnknown):
            logger.exception("notification %s: unexpected error while sending", row.pk)
        error = f"outcome unknown: {exc}"
        if backend.dedupes_by_key:
            return _retry(row, error)
        return _fail(row, f"{error}; not sent again automatically, to avoid sending twice")
    return _record(row, status=NotificationStatus.SENT, provider_id=provider_id)


def _claim(notification_id: int, now: datetime) -> Notification | None:
    """pending -> sending in one conditional UPDATE: of two tasks for the same row, the
    second waits on the first's row lock, then finds it no longer pending."""
    lease = 2 * timedelta(seconds=int(settings.SCHEDULING["NOTIFY_TIME_LIMIT_SECONDS"]))
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        NotificationStatus.SENDING,
        adapt(now + lease),
        adapt(now),
        notification_id,
        NotificationStatus.PENDING,
        adapt(now),
    ]
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, params)
        found = cursor.fetchone()
    return None if found is None else Notification(**dict(zip(CLAIMED, found, strict=True)))


def _retry(row: Notification, error: str) -> str:
    config = settings.SCHEDULING
    if row.attempts >= int(config["NOTIFY_MAX_ATTEMPTS"]):
        return _fail(row, error)
    delay = backoff(row.attempts)
    now = timezone.now()
    with transaction.atomic():
        updated = _record_fields(
            row,
            status=NotificationStatus.PENDING,
            last_error=error,
            send_after=now + timedelta(seconds=delay),
            enqueued_at=now,
            lease_until=None,
        )
        if updated:
            background.after_commit(background.DELIVER, row.pk, countdown=delay)
    return "retry"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: doubling from the base, capped, with jitter (half
    fixed, half random) so a burst of failures does not come back as one burst."""
    config = settings.SCHEDULING
    ceiling = min(
        float(config["NOTIFY_RETRY_MAX_SECONDS"]),
        float(config["NOTIFY_RETRY_BASE_SECONDS"]) * 2 ** (attempts - 1),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _fail(row: Notification, error: str) -> str:
    with transaction.atomic():
        if _record_fields(row, status=NotificationStatus.FAILED, last_error=error):
            _announce_failures([row])
    logger.warning(
        "notification %s (%s) failed after %s attempt(s)", row.pk, row.kind, row.attempts
    )
    return "failed"


def _record(row: Notification, *, status: str, provider_id: str) -> str:
    _record_fields(
        row, status=status, provider_id=provider_id, sent_at=timezone.now(), lease_until=None
    )
    return "sent"


def _record_fields(row: Notification, **fields) -> bool:
    """Write the outcome of this worker's claim, unless the claim was taken from it (the
    sweep reclaims only after the lease, which outlasts the task, so this is a guard)."""
    fields["updated_at"] = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    values = [adapt(v) if isinstance(v, datetime) else v for v in fields.values()]
    with connection.cursor() as cursor:
        cursor.execute(
            _outcome_sql(tuple(fields)),
            [*values, row.pk, NotificationStatus.SENDING, row.attempts],
        )
        updated = cursor.rowcount
    if not updated:
        logger.error("notification %s: claim lost before its outcome was recorded", row.pk)
    return bool(updated)


def _announce_failures(rows: list[Notification]) -> None:
    batch = EventBatch()
    for row in rows:
        batch.add(
            NOTIFICATION_FAILED,
            {
                "id": row.pk,
                "kind": row.kind,
                "channel": row.channel,
                "audience": row.audience,
                "appointment": row.appointment_id,
                "trip": row.trip_id,
                "attempts": row.attempts,
            },
        )
    batch.flush()


# --- sweeps and retries ---------------------------------------------------------------------


def requeue_stale(*, now: datetime | None = None) -> dict[str, int]:
    """The notification sweep (beat): hand the broker again what nobody picked up.

    - pending rows that are due and were never enqueued (a follow-up's delay is over);
    - pending rows overdue by NOTIFY_STALE_SECONDS (their task was lost: a crash between
      commit and enqueue, Redis down or restarted);
    - `sending` rows whose lease ran out (their worker died mid-send): sent again with
      the same key when the provider dedupes, otherwise failed as outcome unknown.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=float(settings.SCHEDULING["NOTIFY_STALE_SECONDS"]))
    counts = {"requeued": 0, "reclaimed": 0, "abandoned": 0}
    with transaction.atomic():
        orphans = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(status=NotificationStatus.SENDING, lease_until__lt=now)
            .order_by("id")[:SWEEP_LIMIT]
        )
        retry = [row for row in orphans if backend_for(row.channel).dedupes_by_key]
        abandon = [row for row in orphans if row not in retry]
        if retry:
            Notification.objects.filter(pk__in=[r.pk for r in retry]).update(
                status=NotificationStatus.PENDING,
                last_error="outcome unknown: the worker stopped mid-send; sent again with "
                "the same key, which the provider dedupes",
                lease_until=None,
                send_after=now,
                updated_at=now,
            )
        if abandon:
            Notification.objects.filter(pk__in=[r.pk for r in abandon]).update(
                status=NotificationStatus.FAILED,
                last_error="outcome unknown: the worker stopped mid-send; not sent again "
                "automatically, to avoid sending twice",
                lease_until=None,
                updated_at=now,
            )
            _announce_failures(abandon)
        counts["reclaimed"], counts["abandoned"] = len(retry), len(abandon)

        lost = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(status=NotificationStatus.PENDING, send_after__lte=now)
            .filter(Q(enqueued_at__isnull=True) | Q(send_after__lte=stale))
            .order_by("send_after", "id")
            .values_list("pk", flat=True)[:SWEEP_LIMIT]
        )
        ids = [*(r.pk for r in retry), *lost]
        if ids:
            # send_after moves to now so the row is not "overdue" again before it is stale.
            Notification.objects.filter(pk__in=ids).update(
                enqueued_at=now, send_after=now, updated_at=now
            )
            for pk in ids:
                background.after_commit(background.DELIVER, pk)
        counts["requeued"] = len(ids)
    return counts


def retry_failed(
    *,
    since: datetime | None = None,
    only: Collection[int] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Give failed notifications (failed since `since`, and among `only`, when given) a
    fresh set of attempts: a person decided they are worth sending again."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = Notification.objects.select_for_update().filter(status=NotificationStatus.FAILED)
        if since is not None:
            rows = rows.filter(updated_at__gte=since)
        if only is not None:
            rows = rows.filter(pk__in=only)
        ids = list(rows.order_by("id").values_list("pk", flat=True))
        Notification.objects.filter(pk__in=ids).update(
            status=NotificationStatus.PENDING,
            attempts=0,
            send_after=now,
            enqueued_at=now,
            updated_at=now,
        )
        for pk in ids:
            background.after_commit(background.DELIVER, pk)
    return ids


def retry_notification(*, notification_id: int, now: datetime | None = None) -> int:
    """The desk's Retry on one failed notification (retry_failed, for that one row)."""
    if retry_failed(only=[notification_id], now=now):
        return notification_id
    current = (
        Notification.objects.filter(pk=notification_id).values_list("status", flat=True).first()
    )
    if current is None:
        raise NotFound(f"There is no notification with id {notification_id}.")
    raise InvalidTransition(
        f"This message is {current} now, not failed: nothing to retry.", current
    )
