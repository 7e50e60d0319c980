"""What the payment gateways told us, and the refunds we asked them for (issue 15).

A webhook is stored raw before it is acted on, in the same transaction as its effect,
so the audit trail and the money never disagree; one row per (gateway, event id) makes a
replayed delivery a no-op."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q, Sum

from scheduling.models.payments import default_currency


class WebhookOutcome(models.TextChoices):
    APPLIED = "applied"  # it changed a payment
    IGNORED = "ignored"  # valid, but nothing to do (already settled, an event we skip)
    FLAGGED = "flagged"  # it disagreed with our records: a person looks


class WebhookEvent(models.Model):
    gateway = models.CharField(max_length=16)
    event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=64, blank=True)
    # The body exactly as it came (the signature is over these bytes), and the headers
    # the verification read.
    raw_body = models.TextField()
    headers = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=WebhookOutcome.choices)
    flagged_reason = models.CharField(max_length=300, blank=True)
    payment = models.ForeignKey(
        "scheduling.Payment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="webhook_events",
    )
    # A person marked the flag dealt with (the admin).
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "event_id"], name="webhook_event_once"),
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                name="webhook_flagged_idx",
                condition=Q(outcome="flagged", resolved_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_type} {self.event_id} ({self.outcome})"


class RefundMethod(models.TextChoices):
    GATEWAY = "gateway"  # asked of the gateway the payment came through
    CASH = "cash"  # handed back by the business, recorded by a manager


class RefundState(models.TextChoices):
    PENDING = "pending"  # asked for; the gateway has not said it is done
    PROCESSED = "processed"
    FAILED = "failed"


class RefundQuerySet(models.QuerySet):
    def processed_total(self) -> Decimal:
        total = self.filter(status=RefundState.PROCESSED).aggregate(total=Sum("amount"))
        return total["total"] or Decimal("0")


class Refund(models.Model):
    payment = models.ForeignKey(
        "scheduling.Payment", on_delete=models.PROTECT, related_name="refunds"
    )
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default=default_currency)
    method = models.CharField(max_length=16, choices=RefundMethod.choices)
    status = models.CharField(
        max_length=16, choices=RefundState.choices, default=RefundState.PENDING
    )
    gateway = models.CharField(max_length=16, blank=True)
    gateway_refund_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=300, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = RefundQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["gateway", "gateway_refund_id"],
                condition=~Q(gateway_refund_id=""),
                name="refund_gateway_once",
            ),
        ]

    def __str__(self) -> str:
        return f"refund #{self.pk} {self.amount} {self.currency} {self.method} {self.status}"
