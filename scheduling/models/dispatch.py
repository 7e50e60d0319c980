"""The dispatcher's decisions: who got each trip, and why the others did not."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class DispatchOutcome(models.TextChoices):
    ASSIGNED = "assigned"
    NO_DRIVER = "no_driver"
    # The desk took an assigned trip back into the queue (services/manual_dispatch.py).
    UNASSIGNED = "unassigned"


class SkipReason(models.TextChoices):
    OFF_SHIFT = "off_shift"
    BUSY = "busy"
    VEHICLE = "vehicle"
    # Giving them this trip would leave another booked trip with no driver who can take it.
    NEEDED_LATER = "needed_later"


class DispatchDecision(models.Model):
    """One look at one queued trip by the dispatcher. Append-only.

    `queue` is the driver queue as it stood, longest-waiting first, as far as the
    dispatcher read it: the drivers ahead of the one chosen and that one (the whole queue
    when nobody was), as `{"driver": id, "since": ISO time}`; `queue_length` is how many
    were waiting in all. `skipped` lists the drivers passed over, with the reason:
    `{"driver": id, "reason": "off_shift" | "busy" | "vehicle" | "needed_later"}`.
    """

    trip = models.ForeignKey(
        "scheduling.Trip", on_delete=models.PROTECT, related_name="dispatch_decisions"
    )
    outcome = models.CharField(max_length=16, choices=DispatchOutcome.choices)
    driver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    queue = models.JSONField(default=list)
    queue_length = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(default=list)
    decided_at = models.DateTimeField(default=timezone.now)
    # A person's decision (the desk's manual dispatch), with why; empty: the dispatcher.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["trip", "-id"], name="dispatch_trip_latest_idx")]

    def __str__(self) -> str:
        who = f"driver {self.driver_id}" if self.driver_id else "no driver"
        return f"trip {self.trip_id}: {who}"
