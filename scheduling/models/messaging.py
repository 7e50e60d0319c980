"""Outgoing messages: one row per message, written in the same transaction as its cause."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    EMAIL = "email"


class Audience(models.TextChoices):
    CLIENT = "client"
    THERAPIST = "therapist"
    DRIVER = "driver"


class NotificationStatus(models.TextChoices):
    PENDING = "pending"
    # Claimed by a worker that is handing it to the provider right now (see `lease_until`).
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # No longer worth sending: a reminder for an appointment moved or called off.
    CANCELLED = "cancelled"


class Notification(models.Model):
    """A message to a client or a staff member, and where its delivery stands.

    `key` is unique: the same cause can never produce the message twice, and the
    providers that accept an idempotency key receive it, so a send repeated after a
    crash is recognised by the provider too.
    """

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=40)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    audience = models.CharField(max_length=16, choices=Audience.choices)
    client = models.ForeignKey(
        "scheduling.Client",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    # The phone number (E.164) or email address at the time of writing.
    to = models.CharField(max_length=254)
    appointment = models.ForeignKey(
        "scheduling.Appointment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    trip = models.ForeignKey(
        "scheduling.Trip",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Not before: the first send, the next retry (backoff), a follow-up's delay.
    send_after = models.DateTimeField(default=timezone.now)
    # When a delivery task was last handed to the broker; empty for rows left to the sweep.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # A claim by a worker runs out at this time. It outlasts the task's hard time limit, so
    # once it has passed the claiming worker is certainly gone.
    lease_until = models.DateTimeField(null=True, blank=True)
    provider_id = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep: pending rows that are due.
            models.Index(
                fields=["send_after"],
                name="notification_due_idx",
                condition=Q(status=NotificationStatus.PENDING),
            ),
            # The sweep: claims whose worker died.
            models.Index(
                fields=["lease_until"],
                name="notification_lease_idx",
                condition=Q(status=NotificationStatus.SENDING),
            ),
            # The desk's list of failures, and retry_failed_notifications --since.
            models.Index(
                fields=["updated_at"],
                name="notification_failed_idx",
                condition=Q(status=NotificationStatus.FAILED),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(client__isnull=False, user__isnull=True)
                    | Q(client__isnull=True, user__isnull=False)
                ),
                name="notification_one_recipient",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} by {self.channel} to {self.audience} ({self.status})"
