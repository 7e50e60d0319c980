"""Money through a payment gateway (issue 15 items 3-6; docs/payments.md).

- `create_payment_link`: the desk sends the client a hosted link for what is still due.
- `receive_webhook`: a gateway tells us what happened. The body is hostile until its
  signature checks out; it is then stored raw, once per (gateway, event id), in the same
  transaction as what it changes. A replay changes nothing; an event that disagrees with
  our link (another amount, another currency, a link we never made) is flagged for a
  person, never settled; a late `expired` never undoes a payment.
- `reconcile`: asks the gateway about links left pending, for the webhook that never came.
- `refund_payment`: a manager gives back all or part of a payment, through the gateway or
  as cash. `to_refund()`: cancelled appointments that still hold the client's money.

Every writer locks the appointment row, then the payment row (the order
services/payments.py takes them in), so a webhook, the sweep and a refund on one payment
run one after another. A call to the gateway is made holding those locks: it is bounded
by PAYMENTS["TIMEOUT_SECONDS"], and if our commit then failed, the gateway's own webhook
(or the sweep) brings the change back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from scheduling import gateways, states
from scheduling.errors import (
    GatewayUnavailable,
    InvalidTransition,
    NotFound,
    NotPermitted,
    ValidationFailed,
)
from scheduling.formats import moment
from scheduling.gateways import from_minor, to_minor
from scheduling.models import (
    Appointment,
    Payment,
    PaymentMethod,
    PaymentState,
    Refund,
    RefundMethod,
    RefundState,
    User,
    WebhookEvent,
    WebhookOutcome,
)
from scheduling.models.payments import SETTLED_STATES, PaymentQuerySet
from scheduling.services import payments as money
from scheduling.services.common import role_of
from scheduling.services.notifications import outbox
from scheduling.states import AppointmentStatus

# A link is sent for a booking that is going ahead or has happened.
LINKABLE = frozenset(
    {
        AppointmentStatus.PENDING,
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.IN_PROGRESS,
        AppointmentStatus.COMPLETED,
    }
)
# The headers a webhook's verification read, kept with its raw body for audit.
KEPT_HEADERS = ("X-Razorpay-Signature", "X-Razorpay-Event-Id", "Paymongo-Signature")
RECONCILE_LIMIT = 200


@dataclass(frozen=True)
class Received:
    """What a webhook did: `replay` when its event id was seen before (nothing changed)."""

    outcome: str
    reason: str = ""
    event: WebhookEvent | None = None

    @property
    def replay(self) -> bool:
        return self.event is None


# --- links ---------------------------------------------------------------------------------


def create_payment_link(
    *, actor: User, appointment_id: int, now: datetime | None = None
) -> Payment:
    """A link for what is still due, sent to the client once (the notification outbox).

    Asked again while a link is open, it answers that link rather than make a second."""
    now = now or timezone.now()
    if not actor.is_desk:
        raise NotPermitted("Only a receptionist or manager sends a payment link.")
    gateway = gateways.current()
    with transaction.atomic():
        appointment = money._locked_appointment(appointment_id, actor)
        if appointment.status not in LINKABLE:
            raise InvalidTransition(
                "A payment link is sent for a booking that is going ahead.", appointment.status
            )
        open_link: Payment | None = (
            Payment.objects.gateway_pending()
            .filter(appointment=appointment, gateway=gateway.name, link_expires_at__gt=now)
            .first()
        )
        if open_link is not None:
            return open_link
        due = _open_amount(appointment, now)
        if due <= 0:
            raise InvalidTransition("Nothing is left to pay on this booking.", appointment.status)
        expires = now + timedelta(hours=int(settings.PAYMENTS["LINK_EXPIRY_HOURS"]))
        client = appointment.client
        try:
            link = gateway.create_link(
                reference=f"appt{appointment.pk}-{int(now.timestamp())}",
                amount_minor=to_minor(due),
                currency=settings.CURRENCY,
                description=f"{appointment.service.name}, {moment(appointment.start)}",
                expires_at=expires,
                customer={"name": client.name, "contact": client.phone, "email": client.email},
            )
        except gateways.GatewayError as exc:
            raise GatewayUnavailable(exc.message) from exc
        payment = Payment.objects.create(
            appointment=appointment,
            amount=due,
            currency=settings.CURRENCY,
            method=PaymentMethod.GATEWAY,
            gateway=gateway.name,
            gateway_link_id=link.link_id,
            link_url=link.url,
            link_expires_at=link.expires_at or expires,
        )
        outbox.payment_link_sent(
            appointment,
            payment_id=payment.pk,
            url=link.url,
            amount=str(due),
            currency=payment.currency,
            now=now,
        )
        money._changed(appointment, payment, "payment_link", actor)
    return payment


def _open_amount(appointment: Appointment, now: datetime) -> Decimal:
    """The price less what is settled, collected-but-unverified, or on an open link."""
    held = Payment.objects.filter(appointment=appointment).exclude(
        method=PaymentMethod.GATEWAY, status=PaymentState.PENDING, link_expires_at__lte=now
    )
    taken = sum(
        (
            p.amount - p.refunded_amount
            for p in held
            if p.status in (*SETTLED_STATES, PaymentState.PENDING)
        ),
        Decimal("0"),
    )
    return max(appointment.price - taken, Decimal("0.00"))


# --- webhooks ------------------------------------------------------------------------------


def receive_webhook(
    *, gateway: str, body: bytes, headers: Mapping[str, str], now: datetime | None = None
) -> Received:
    """Verify, store raw and act on one webhook delivery, in one transaction.

    ValidationFailed (400) for a bad signature or an unreadable body: nothing is written.
    Anything signed that we cannot or will not act on is stored and answered 200, so the
    gateway stops retrying it."""
    now = now or timezone.now()
    if gateway not in gateways.NAMES:
        raise NotFound(f"There is no payment gateway {gateway!r}.")
    adapter = gateways.gateway_for(gateway)
    try:
        message = adapter.parse_webhook(body=body, headers=headers, now=now)
    except gateways.BadSignature as exc:
        raise ValidationFailed.on("signature", str(exc)) from None
    except gateways.BadWebhook as exc:
        raise ValidationFailed.on("body", str(exc)) from None
    seen = WebhookEvent.objects.filter(gateway=gateway, event_id=message.event_id)
    if seen.exists():
        return Received(outcome=WebhookOutcome.IGNORED, reason="a replay")
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                gateway=gateway,
                event_id=message.event_id,
                event_type=message.event_type,
                raw_body=body.decode("utf-8", "replace").replace("\x00", "\ufffd"),
                headers={k: headers[k][:500] for k in KEPT_HEADERS if k in headers},
                received_at=now,
                outcome=WebhookOutcome.IGNORED,
            )
            outcome, reason, payment = _act(gateway, message, now)
            event.outcome, event.flagged_reason, event.payment = outcome, reason[:300], payment
            event.save(update_fields=["outcome", "flagged_reason", "payment"])
    except IntegrityError:
        # The same event delivered at once on another connection: that one committed first.
        if seen.exists():
            return Received(outcome=WebhookOutcome.IGNORED, reason="a replay")
        raise
    return Received(outcome=outcome, reason=reason, event=event)


def _act(gateway: str, message: gateways.Webhook, now: datetime) -> tuple[str, str, Payment | None]:
    if message.kind == gateways.OTHER:
        return WebhookOutcome.IGNORED, f"{message.event_type} is not acted on", None
    if message.kind == gateways.REFUND_PROCESSED:
        return _refund_processed(gateway, message, now)
    found = Payment.objects.filter(gateway=gateway, gateway_link_id=message.link_id).first()
    if found is None:
        return WebhookOutcome.FLAGGED, f"No payment link {message.link_id} of ours.", None
    appointment, payment = _lock(found)
    outcome, reason = _settle(
        appointment,
        payment,
        kind=message.kind,
        gateway_payment_id=message.payment_id,
        amount_minor=message.amount_minor,
        currency=message.currency,
        now=now,
    )
    return outcome, reason, payment


def _lock(payment: Payment) -> tuple[Appointment, Payment]:
    appointment = Appointment.objects.select_for_update().get(pk=payment.appointment_id)
    return appointment, Payment.objects.select_for_update().get(pk=payment.pk)


def _settle(
    appointment: Appointment,
    payment: Payment,
    *,
    kind: str,
    gateway_payment_id: str,
    amount_minor: int | None,
    currency: str,
    now: datetime,
) -> tuple[str, str]:
    """What the gateway says of a link, applied to its payment: (outcome, reason)."""
    received = payment.status in (*SETTLED_STATES, PaymentState.REFUNDED)
    if kind == gateways.PAID:
        if received:
            if gateway_payment_id in ("", payment.gateway_payment_id):
                return WebhookOutcome.IGNORED, "already settled"
            return _flag(
                appointment,
                payment,
                now,
                f"A second payment {gateway_payment_id} came for a link already paid "
                f"by {payment.gateway_payment_id}.",
            )
        if currency != payment.currency:
            return _flag(
                appointment,
                payment,
                now,
                f"Paid in {currency}, but the link was for {payment.amount} {payment.currency}.",
            )
        if amount_minor != to_minor(payment.amount):
            paid = from_minor(amount_minor) if amount_minor is not None else "an unknown amount"
            return _flag(
                appointment,
                payment,
                now,
                f"Paid {paid} {currency}, but the link was for {payment.amount}.",
            )
        if (
            gateway_payment_id
            and Payment.objects.filter(
                gateway=payment.gateway, gateway_payment_id=gateway_payment_id
            )
            .exclude(pk=payment.pk)
            .exists()
        ):
            return _flag(
                appointment, payment, now, f"Gateway payment {gateway_payment_id} settled another."
            )
        # A link that expired here but was paid there: the money is real, so it settles.
        payment.status = PaymentState.SUCCEEDED
        payment.gateway_payment_id = gateway_payment_id
        payment.settled_at = now
        payment.save(update_fields=["status", "gateway_payment_id", "settled_at", "updated_at"])
        money._changed(appointment, payment, "gateway_paid", None)
        return WebhookOutcome.APPLIED, ""
    if kind == gateways.PARTIALLY_PAID:
        if received:
            return WebhookOutcome.IGNORED, "already settled"
        paid = from_minor(amount_minor) if amount_minor is not None else "part"
        return _flag(
            appointment,
            payment,
            now,
            f"A part payment of {paid} {currency} was made on a link for {payment.amount}: "
            "a person settles it.",
        )
    # Expired or cancelled: only a link still waiting is closed; a settled one stays so.
    if payment.status != PaymentState.PENDING:
        return WebhookOutcome.IGNORED, f"the payment is {payment.status}; a late {kind} is ignored"
    payment.status = PaymentState.CANCELLED
    payment.save(update_fields=["status", "updated_at"])
    money._changed(appointment, payment, f"gateway_{kind}", None)
    return WebhookOutcome.APPLIED, ""


def _flag(
    appointment: Appointment, payment: Payment, now: datetime, reason: str
) -> tuple[str, str]:
    payment.flagged_reason, payment.flagged_at = reason[:300], now
    payment.save(update_fields=["flagged_reason", "flagged_at", "updated_at"])
    money._changed(appointment, payment, "payment_flagged", None)
    return WebhookOutcome.FLAGGED, reason


def _refund_processed(
    gateway: str, message: gateways.Webhook, now: datetime
) -> tuple[str, str, Payment | None]:
    found = (
        Payment.objects.filter(
            refunds__gateway=gateway, refunds__gateway_refund_id=message.refund_id
        )
        .distinct()
        .first()
        or Payment.objects.filter(gateway=gateway, gateway_payment_id=message.payment_id).first()
    )
    if found is None:
        return WebhookOutcome.FLAGGED, f"A refund {message.refund_id} of no payment of ours.", None
    appointment, payment = _lock(found)
    # Read under the lock: a refund we asked for commits before this sees it.
    refund = Refund.objects.filter(gateway=gateway, gateway_refund_id=message.refund_id).first()
    if refund is not None and refund.status == RefundState.PROCESSED:
        return WebhookOutcome.IGNORED, "refund already processed", payment
    minor = message.amount_minor or 0
    if message.currency != payment.currency or (refund and to_minor(refund.amount) != minor):
        outcome, reason = _flag(
            appointment,
            payment,
            now,
            f"Refund {message.refund_id} of {from_minor(minor)} {message.currency} disagrees "
            "with our records.",
        )
        return outcome, reason, payment
    if refund is None:
        # Made at the gateway (its dashboard), not through us: recorded as it is.
        if payment.status not in SETTLED_STATES or from_minor(minor) > _refundable(payment):
            outcome, reason = _flag(
                appointment,
                payment,
                now,
                f"Refund {message.refund_id} of {from_minor(minor)} is more than was received.",
            )
            return outcome, reason, payment
        refund = Refund.objects.create(
            payment=payment,
            amount=from_minor(minor),
            currency=payment.currency,
            method=RefundMethod.GATEWAY,
            gateway=gateway,
            gateway_refund_id=message.refund_id,
            reason="Refunded at the gateway.",
            created_at=now,
        )
    _processed(appointment, payment, refund, now, None)
    return WebhookOutcome.APPLIED, "", payment


# --- reconciliation ------------------------------------------------------------------------


def reconcile(*, now: datetime | None = None, since: datetime | None = None) -> list[str]:
    """Ask the gateway about links still pending and settle them from its answer.

    By default the links older than PAYMENT_RECONCILE_MINUTES; with `since`, every link
    made since then. Returns one line per link it changed (or could not ask about)."""
    now = now or timezone.now()
    rows = Payment.objects.gateway_pending().exclude(gateway_link_id="")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    else:
        age = timedelta(minutes=int(settings.PAYMENTS["RECONCILE_MINUTES"]))
        rows = rows.filter(created_at__lte=now - age)
    changes = []
    kinds = {
        gateways.LINK_PAID: gateways.PAID,
        gateways.LINK_PARTIALLY_PAID: gateways.PARTIALLY_PAID,
        gateways.LINK_EXPIRED: gateways.EXPIRED,
        gateways.LINK_CANCELLED: gateways.CANCELLED,
    }
    for found in list(rows.order_by("created_at", "id")[:RECONCILE_LIMIT]):
        label = f"payment {found.pk} (appointment {found.appointment_id}, {found.gateway})"
        try:
            link = gateways.gateway_for(found.gateway).fetch_link(found.gateway_link_id)
        except (gateways.GatewayError, ValueError) as exc:
            changes.append(f"{label}: not asked, {getattr(exc, 'message', exc)}")
            continue
        kind = kinds.get(link.status)
        if kind is None:
            continue
        with transaction.atomic():
            appointment, payment = _lock(found)
            if payment.status != PaymentState.PENDING:
                continue  # a webhook settled it meanwhile
            flagged_before = payment.flagged_reason
            outcome, reason = _settle(
                appointment,
                payment,
                kind=kind,
                gateway_payment_id=link.payment_id,
                amount_minor=link.amount_paid_minor if kind != gateways.EXPIRED else None,
                currency=link.currency,
                now=now,
            )
        if outcome == WebhookOutcome.FLAGGED and flagged_before == reason:
            continue  # flagged already on an earlier pass: nothing new to say
        if outcome != WebhookOutcome.IGNORED:
            changes.append(f"{label}: {link.status} at the gateway, {outcome}. {reason}".strip())
    return changes


# --- refunds -------------------------------------------------------------------------------


def refund_payment(
    *,
    actor: User,
    payment_id: int,
    amount: object = None,
    reason: str = "",
    now: datetime | None = None,
) -> Refund:
    """A manager gives back all (no amount) or part of a settled payment.

    A gateway payment is refunded through its gateway; cash and e-wallet collections are
    recorded as handed back. Never more than was received and not yet refunded."""
    now = now or timezone.now()
    if role_of(actor) != states.MANAGER:
        raise NotPermitted("Only a manager refunds a payment.")
    asked = money.parse_amount(amount) if amount is not None else None
    reason = (reason or "").strip()
    if len(reason) > 300:
        raise ValidationFailed.on("reason", "The reason has at most 300 characters.")
    found = money._payment(payment_id, actor)
    with transaction.atomic():
        appointment, payment = _lock(found)
        if payment.status not in SETTLED_STATES:
            raise InvalidTransition("Only money received can be refunded.", payment.status)
        refundable = _refundable(payment)
        if refundable <= 0:
            raise InvalidTransition(
                "What was received on this payment is refunded already (or being refunded).",
                payment.status,
            )
        asked = asked if asked is not None else refundable
        if asked > refundable:
            raise ValidationFailed.on("amount", f"At most {refundable} can be refunded.")
        refund = Refund(
            payment=payment,
            amount=asked,
            currency=payment.currency,
            reason=reason,
            requested_by=actor,
            created_at=now,
        )
        if payment.method == PaymentMethod.GATEWAY:
            try:
                answer = gateways.gateway_for(payment.gateway).refund(
                    payment_id=payment.gateway_payment_id,
                    amount_minor=to_minor(asked),
                    currency=payment.currency,
                )
            except (gateways.GatewayError, ValueError) as exc:
                raise GatewayUnavailable(getattr(exc, "message", str(exc))) from exc
            refund.method, refund.gateway = RefundMethod.GATEWAY, payment.gateway
            refund.gateway_refund_id = answer.refund_id
            refund.save()
            if answer.status == "processed":
                _processed(appointment, payment, refund, now, actor)
            else:
                money._changed(appointment, payment, "refund_requested", actor)
        else:
            refund.method = RefundMethod.CASH
            refund.save()
            _processed(appointment, payment, refund, now, actor)
    return refund


def _refundable(payment: Payment) -> Decimal:
    asked = payment.refunds.filter(status=RefundState.PENDING).aggregate(total=Sum("amount"))
    return payment.amount - payment.refunded_amount - (asked["total"] or Decimal("0"))


def _processed(
    appointment: Appointment, payment: Payment, refund: Refund, now: datetime, actor: User | None
) -> None:
    refund.status, refund.processed_at = RefundState.PROCESSED, now
    refund.save(update_fields=["status", "processed_at"])
    payment.refunded_amount += refund.amount
    payment.status = (
        PaymentState.REFUNDED
        if payment.refunded_amount >= payment.amount
        else PaymentState.PARTIALLY_REFUNDED
    )
    payment.save(update_fields=["refunded_amount", "status", "updated_at"])
    money._changed(appointment, payment, "refund_payment", actor)


def refund_data(refund: Refund) -> dict[str, object]:
    payment = refund.payment
    balance = money.balance_of(payment.appointment)
    return {
        "id": refund.pk,
        "payment": payment.pk,
        "appointment": payment.appointment_id,
        "amount": str(refund.amount),
        "currency": refund.currency,
        "method": refund.method,
        "status": refund.status,
        "gateway": refund.gateway,
        "reason": refund.reason,
        "created_at": refund.created_at.isoformat(),
        "processed_at": refund.processed_at.isoformat() if refund.processed_at else None,
        "payment_status": payment.status,
        "refunded_amount": str(payment.refunded_amount),
        "appointment_payment_status": balance.status,
        "balance_due": str(balance.due),
    }


# --- what needs a person -------------------------------------------------------------------


def resolve_flag(
    *, actor: User, payment_id: int, note: str, now: datetime | None = None
) -> Payment:
    """A manager has sorted out a payment the gateway's answer disagreed with (refunded the
    client, recorded the money another way, or found it harmless): it leaves the desk's
    list, the webhooks that flagged it are marked resolved, and the log keeps who and why.
    The money itself is not touched: the payment stays as it is."""
    now = now or timezone.now()
    if role_of(actor) != states.MANAGER:
        raise NotPermitted("Only a manager clears a flagged payment.")
    note = (note or "").strip()
    if not note:
        raise ValidationFailed.on("note", "Say how it was sorted out (kept in the history).")
    if len(note) > 300:
        raise ValidationFailed.on("note", "The note has at most 300 characters.")
    found = money._payment(payment_id, actor)
    with transaction.atomic():
        appointment, payment = _lock(found)
        if not payment.flagged_reason:
            raise InvalidTransition("This payment is not flagged.", payment.status)
        was = payment.flagged_reason
        payment.flagged_reason = ""
        payment.save(update_fields=["flagged_reason", "updated_at"])
        payment.webhook_events.filter(
            outcome=WebhookOutcome.FLAGGED, resolved_at__isnull=True
        ).update(resolved_at=now)
        money._changed(appointment, payment, "payment_flag_resolved", actor, note=f"{was} / {note}")
    return payment


def to_refund() -> PaymentQuerySet:
    """Settled money on cancelled appointments, not yet given back: the manager's list."""
    return Payment.objects.to_refund()


def flagged_webhooks() -> QuerySet[WebhookEvent]:
    """Signed events that disagreed with our records and nobody has resolved."""
    return WebhookEvent.objects.filter(
        outcome=WebhookOutcome.FLAGGED, resolved_at__isnull=True
    ).order_by("-received_at", "-id")
