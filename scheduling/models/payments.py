"""Money taken for an appointment: one row per collection or gateway link.

The appointment's `payment_status` is derived from these rows (services/payments.py
writes it); PostgreSQL holds the rules a settled payment must keep."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Sum


def default_currency() -> str:
    return settings.CURRENCY


class PaymentMethod(models.TextChoices):
    CASH = "cash"
    EWALLET = "ewallet", "E-wallet"
    GATEWAY = "gateway"


class PaymentState(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


# Statuses in which the money was received (a partial refund keeps the rest received).
SETTLED_STATES = (PaymentState.SUCCEEDED, PaymentState.PARTIALLY_REFUNDED)
COLLECTED_METHODS = (PaymentMethod.CASH, PaymentMethod.EWALLET)


# What a payment brought in and the business kept: its amount less what was refunded.
KEPT = F("amount") - F("refunded_amount")


class PaymentQuerySet(models.QuerySet):
    def settled(self) -> PaymentQuerySet:
        return self.filter(status__in=SETTLED_STATES)

    def unverified(self) -> PaymentQuerySet:
        """Cash and e-wallet collections a receptionist or manager has still to check."""
        return self.filter(method__in=COLLECTED_METHODS, status=PaymentState.PENDING)

    def settled_total(self) -> Decimal:
        """Money received and kept: settled payments less what was refunded of them."""
        total = self.settled().aggregate(total=Sum(KEPT))["total"]
        return total or Decimal("0")

    def kept_per_appointment(self) -> PaymentQuerySet:
        """`settled_total` per appointment, as a subquery's one column (`total`): filter
        it to `appointment=OuterRef("pk")` (AppointmentQuerySet.with_paid)."""
        return self.settled().values("appointment").annotate(total=Sum(KEPT)).values("total")

    def flagged(self) -> PaymentQuerySet:
        """Payments a webhook disagreed with: a person decides."""
        return self.exclude(flagged_reason="")

    def to_refund(self) -> PaymentQuerySet:
        """Money still held for appointments that were cancelled: the manager refunds it."""
        return self.settled().filter(
            appointment__status="cancelled", amount__gt=F("refunded_amount")
        )

    def gateway_pending(self) -> PaymentQuerySet:
        """Links sent and not yet settled, expired or cancelled."""
        return self.filter(method=PaymentMethod.GATEWAY, status=PaymentState.PENDING)

    def visible_to(self, user) -> PaymentQuerySet:
        if user.is_desk:
            return self
        if user.effective_role == "therapist":
            return self.filter(appointment__therapist=user)
        return self.none()


class Payment(models.Model):
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default=default_currency)
    method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    status = models.CharField(
        max_length=20, choices=PaymentState.choices, default=PaymentState.PENDING
    )
    # What the client quotes for an e-wallet transfer (the GCash/Maya reference number).
    reference = models.CharField(max_length=64, blank=True)
    gateway = models.CharField(max_length=16, blank=True)
    gateway_link_id = models.CharField(max_length=64, blank=True)
    gateway_payment_id = models.CharField(max_length=64, blank=True)
    # A gateway link (services/gateway_payments.py): where the client pays, until when.
    link_url = models.URLField(max_length=500, blank=True)
    link_expires_at = models.DateTimeField(null=True, blank=True)
    # What processed refunds gave back; the rest of a settled payment stays received.
    refunded_amount = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    # Set when a webhook disagreed with the link (amount, currency): a person looks.
    flagged_reason = models.CharField(max_length=300, blank=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    collected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PaymentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["appointment", "status"], name="payment_appt_status_idx"),
            models.Index(
                fields=["created_at"],
                name="payment_unverified_idx",
                condition=Q(method__in=COLLECTED_METHODS, status=PaymentState.PENDING),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0, refunded_amount__lte=models.F("amount")),
                name="payment_refund_within_amount",
            ),
            # A collection counts only once someone other than the collector checked it.
            models.CheckConstraint(
                condition=(
                    ~Q(method__in=COLLECTED_METHODS, status__in=SETTLED_STATES)
                    | Q(verified_by__isnull=False, settled_at__isnull=False)
                ),
                name="payment_collection_verified",
            ),
            models.CheckConstraint(
                condition=Q(verified_by__isnull=True) | ~Q(verified_by=models.F("collected_by")),
                name="payment_verifier_not_collector",
            ),
            # One gateway payment settles one row: a repeated webhook cannot settle twice.
            models.UniqueConstraint(
                fields=["gateway", "gateway_payment_id"],
                condition=~Q(gateway_payment_id=""),
                name="payment_gateway_payment_once",
            ),
            models.UniqueConstraint(
                fields=["gateway", "gateway_link_id"],
                condition=~Q(gateway_link_id=""),
                name="payment_gateway_link_once",
            ),
        ]

    def __str__(self) -> str:
        return f"payment #{self.pk} {self.amount} {self.currency} {self.method} {self.status}"
