"""Money for an appointment: collections at the visit, their verification, and the
appointment's payment status derived from its payments (issue 15).

Every writer here locks the appointment row first, so the derived status and the
balance are computed by one writer at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scheduling import states
from scheduling.errors import InvalidTransition, NotFound, NotPermitted, ValidationFailed
from scheduling.models import (
    Appointment,
    Payment,
    PaymentMethod,
    PaymentState,
    PaymentStatus,
    Transition,
    User,
)
from scheduling.models.payments import COLLECTED_METHODS, SETTLED_STATES, PaymentQuerySet
from scheduling.realtime.events import EventBatch
from scheduling.services.common import role_of
from scheduling.states import AppointmentStatus

PAYMENT_UPDATED = "payment.updated"
# A therapist records money only once the session has started (or is over).
COLLECTABLE = frozenset({AppointmentStatus.IN_PROGRESS, AppointmentStatus.COMPLETED})
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("99999999.99")  # what amount's max_digits=10 can hold


@dataclass(frozen=True)
class Balance:
    price: Decimal
    paid: Decimal
    due: Decimal
    status: str


def parse_amount(value: object, field: str = "amount") -> Decimal:
    """Money as the API sends it ("1500.00"): a positive Decimal of at most two places.

    Floats are refused: 0.1 + 0.2 is not money."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValidationFailed.on(field, 'Send the amount as a string such as "1500.00".')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationFailed.on(field, f"{value!r} is not an amount of money.") from None
    if not amount.is_finite() or amount <= 0:
        raise ValidationFailed.on(field, "The amount must be more than zero.")
    # Before quantize: "1e400" has more digits than the context holds (InvalidOperation).
    if amount > MAX_AMOUNT:
        raise ValidationFailed.on(field, "The amount is too large.")
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise ValidationFailed.on(field, "The amount has at most two decimal places.")
    return amount.quantize(CENT)


def balance_of(appointment: Appointment) -> Balance:
    """What the appointment costs, what of it is settled, and its derived status."""
    payments = Payment.objects.filter(appointment=appointment)
    paid = payments.settled_total()
    ever_refunded = payments.filter(
        status__in=(PaymentState.REFUNDED, PaymentState.PARTIALLY_REFUNDED)
    ).exists()
    price = appointment.price
    if paid >= price and price > 0:
        status = PaymentStatus.PAID
    elif paid > 0:
        status = PaymentStatus.PARTIALLY_PAID
    elif ever_refunded:
        status = PaymentStatus.REFUNDED
    else:
        status = PaymentStatus.UNPAID
    return Balance(price=price, paid=paid, due=max(price - paid, Decimal("0.00")), status=status)


def record_collection(
    *,
    actor: User,
    appointment_id: int,
    method: str,
    amount: object,
    reference: str = "",
) -> Payment:
    """The appointment's therapist records cash or an e-wallet transfer they took.

    It is pending (not yet paid) until a receptionist or manager verifies it."""
    if method not in COLLECTED_METHODS:
        raise ValidationFailed.on("method", 'A collection is "cash" or "ewallet".')
    money = parse_amount(amount)
    reference = (reference or "").strip()
    if len(reference) > 64:
        raise ValidationFailed.on("reference", "The reference has at most 64 characters.")
    if method == PaymentMethod.EWALLET and not reference:
        raise ValidationFailed.on("reference", "An e-wallet transfer needs its reference number.")
    with transaction.atomic():
        appointment = _locked_appointment(appointment_id, actor)
        if role_of(actor) != states.THERAPIST or appointment.therapist_id != actor.pk:
            raise NotPermitted("Only the appointment's own therapist records what they collected.")
        if appointment.status not in COLLECTABLE:
            raise InvalidTransition(
                "Money is recorded once the session has started.", appointment.status
            )
        _check_within_balance(appointment, money)
        payment = Payment.objects.create(
            appointment=appointment,
            amount=money,
            currency=settings.CURRENCY,
            method=method,
            reference=reference,
            collected_by=actor,
        )
        _changed(appointment, payment, "collect_payment", actor)
    return payment


def verify_payment(*, actor: User, payment_id: int, now: datetime | None = None) -> Payment:
    """A receptionist or manager confirms a collection: from now on it counts as paid."""
    now = now or timezone.now()
    if not actor.is_desk:
        raise NotPermitted("Only a receptionist or manager verifies a collection.")
    appointment_id = _payment(payment_id, actor).appointment_id
    with transaction.atomic():
        appointment = _locked_appointment(appointment_id, actor)
        payment: Payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.method not in COLLECTED_METHODS:
            raise ValidationFailed.on("payment", "Gateway payments are settled by the gateway.")
        if payment.collected_by_id == actor.pk:
            raise NotPermitted("Someone other than the collector verifies a collection.")
        if payment.status != PaymentState.PENDING:
            raise InvalidTransition(
                "This collection is not waiting to be verified.", payment.status
            )
        payment.status = PaymentState.SUCCEEDED
        payment.verified_by, payment.verified_at, payment.settled_at = actor, now, now
        payment.save(
            update_fields=["status", "verified_by", "verified_at", "settled_at", "updated_at"]
        )
        _changed(appointment, payment, "verify_payment", actor)
    return payment


def payments_for(
    actor: User,
    *,
    appointment_id: int | None = None,
    day: date | None = None,
    status: str | None = None,
) -> PaymentQuerySet:
    """The payments `actor` may see, narrowed by appointment, local day or status."""
    if not (actor.is_desk or role_of(actor) == states.THERAPIST):
        raise NotPermitted(f"A {role_of(actor)} may not list payments.")
    rows = Payment.objects.visible_to(actor).select_related("appointment")
    if appointment_id is not None:
        rows = rows.filter(appointment_id=appointment_id)
    if day is not None:
        rows = rows.filter(appointment__in=Appointment.objects.on_day(day))
    if status is not None:
        if status not in PaymentState.values:
            raise ValidationFailed.on("status", f"{status!r} is not a payment status.")
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id")


def held_by(therapist: User) -> list[Payment]:
    """Cash a therapist collected that nobody has verified yet: what they hand over."""
    return list(
        Payment.objects.unverified()
        .filter(collected_by=therapist, method=PaymentMethod.CASH)
        .select_related("appointment")
    )


def payment_data(payment: Payment, balance: Balance) -> dict[str, object]:
    """A payment as the API and the stream show it."""
    return {
        "id": payment.pk,
        "appointment": payment.appointment_id,
        "amount": str(payment.amount),
        "currency": payment.currency,
        "method": payment.method,
        "status": payment.status,
        "reference": payment.reference,
        "gateway": payment.gateway,
        "url": payment.link_url,
        "refunded_amount": str(payment.refunded_amount),
        "flagged_reason": payment.flagged_reason,
        "collected_by": payment.collected_by_id,
        "verified_by": payment.verified_by_id,
        "verified_at": payment.verified_at.isoformat() if payment.verified_at else None,
        "settled_at": payment.settled_at.isoformat() if payment.settled_at else None,
        "created_at": payment.created_at.isoformat() if payment.created_at else None,
        "payment_status": balance.status,
        "balance_due": str(balance.due),
    }


def _check_within_balance(appointment: Appointment, money: Decimal) -> None:
    # Pending collections count too: two recordings of the same cash would pass otherwise.
    held = Payment.objects.filter(
        appointment=appointment, status__in=(*SETTLED_STATES, PaymentState.PENDING)
    )
    open_amount = appointment.price - sum((p.amount for p in held), Decimal("0"))
    if money > open_amount:
        raise ValidationFailed.on(
            "amount", f"Only {max(open_amount, Decimal('0.00'))} is still to be collected."
        )


def _changed(
    appointment: Appointment,
    payment: Payment,
    action: str,
    actor: User | None,
    *,
    note: str = "",
) -> Balance:
    """Derive the appointment's status anew, log the change (with `note`, a person's words)
    and put it on the stream."""
    balance = balance_of(appointment)
    previous = appointment.payment_status
    if balance.status != previous:
        appointment.payment_status = balance.status
        appointment.save(update_fields=["payment_status", "updated_at"])
    Transition.objects.create(
        appointment=appointment,
        action=action,
        from_status=previous,
        to_status=balance.status,
        actor=actor,
        reason=f"{payment.get_method_display()} {payment.amount} {payment.currency} "
        f"(payment {payment.pk}, {payment.status})" + (f": {note}" if note else ""),
    )
    batch = EventBatch()
    batch.add(
        PAYMENT_UPDATED,
        payment_data(payment, balance),
        recipients=[appointment.therapist_id],
        appointment=appointment,
    )
    batch.flush()
    return balance


def _locked_appointment(appointment_id: int, actor: User) -> Appointment:
    # Seen first, locked second: a driver's scope is a DISTINCT join, which FOR UPDATE
    # refuses. Another role's appointment does not exist for them (404, not 403).
    try:
        visible = Appointment.objects.visible_to(actor).filter(pk=appointment_id).exists()
    except (ValueError, TypeError):
        visible = False
    if not visible:
        raise NotFound(f"There is no appointment with id {appointment_id}.")
    locked: Appointment = Appointment.objects.select_for_update().get(pk=appointment_id)
    return locked


def _payment(payment_id: int, actor: User) -> Payment:
    try:
        payment: Payment = Payment.objects.visible_to(actor).get(pk=payment_id)
        return payment
    except (Payment.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no payment with id {payment_id}.") from None
