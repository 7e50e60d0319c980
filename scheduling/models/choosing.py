"""How "any free therapist" was decided: who was chosen, and why each other was not."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class PassReason(models.TextChoices):
    BUSY = "busy"
    NOT_WORKING = "not_working"
    # Free for the session itself, but not for the travel there and back.
    TRAVEL = "travel"
    NO_DRIVER = "no_driver"
    NOT_QUALIFIED = "not_qualified"
    # Left out by the caller (e.g. already taken by another session of the same visit).
    EXCLUDED = "excluded"


class TherapistChoice(models.Model):
    """One "any free therapist" booking's decision. Append-only.

    `candidates` lists every active therapist in the order the fairness rule ranked them:
    `{"therapist": id, "reason": null | PassReason, "preferred": bool,
    "booked_minutes": int, "last_booked": ISO time | null}`; the chosen one has reason
    null and comes first among those with none."""

    appointment = models.OneToOneField(
        "scheduling.Appointment", on_delete=models.CASCADE, related_name="therapist_choice"
    )
    therapist = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    rule = models.CharField(max_length=200)
    candidates = models.JSONField(default=list)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"appointment {self.appointment_id}: therapist {self.therapist_id}"
