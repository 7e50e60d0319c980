from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from scheduling.states import BUSY_TRIP_STATUSES, OPEN_TRIP_STATUSES, TripStatus


class Leg(models.TextChoices):
    DROPOFF = "dropoff", "Drop-off"
    PICKUP = "pickup", "Pick-up"


class TripQuerySet(models.QuerySet):
    def open(self) -> TripQuerySet:
        return self.filter(status__in=OPEN_TRIP_STATUSES)

    def busy(self) -> TripQuerySet:
        """Trips that hold their driver's time."""
        return self.filter(status__in=BUSY_TRIP_STATUSES)

    def still_open(self, *, before: datetime) -> TripQuerySet:
        """Open trips whose window ended before `before` (services/attention.py)."""
        return self.open().filter(window_end__lte=before)

    def overlapping(self, start: datetime, end: datetime) -> TripQuerySet:
        return self.filter(window_start__lt=end, window_end__gt=start)

    def visible_to(self, user) -> TripQuerySet:
        if user.is_desk:
            return self
        if user.effective_role == "driver":
            return self.filter(driver=user)
        return self.none()


class Trip(models.Model):
    """One driver leg: carry the therapist to the appointment, or back from it."""

    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="trips"
    )
    # A visit's shared trip (models/visits.py): `appointment` is then its lead session.
    visit = models.ForeignKey(
        "scheduling.Visit",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="trips",
    )
    leg = models.CharField(max_length=8, choices=Leg.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    passengers = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=16, choices=TripStatus.choices, default=TripStatus.QUEUED)
    driver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="trips",
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    # The driver's place in the FIFO queue (their `available_since`) when given this trip:
    # taken back into the queue, the trip gives it back to them (services/manual_dispatch.py).
    driver_waiting_since = models.DateTimeField(null=True, blank=True)
    # A pickup asked for (the session is over): dispatched at once, whatever the horizon.
    requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TripQuerySet.as_manager()

    class Meta:
        ordering = ["window_start", "id"]
        indexes = [
            # The dispatcher serves queued trips by window start, then creation.
            models.Index(
                fields=["window_start", "created_at"],
                name="trip_queued_idx",
                condition=Q(status=TripStatus.QUEUED),
            ),
            models.Index(
                fields=["driver", "window_start"],
                name="trip_driver_busy_idx",
                condition=Q(status__in=BUSY_TRIP_STATUSES),
            ),
        ]
        # The driver exclusion constraint is PostgreSQL-only and lives in a migration.
        constraints = [
            models.CheckConstraint(
                condition=Q(window_end__gt=F("window_start")), name="trip_window_end_after_start"
            ),
            models.CheckConstraint(condition=Q(passengers__gte=1), name="trip_passengers_positive"),
            models.CheckConstraint(
                condition=Q(driver__isnull=False) | ~Q(status__in=BUSY_TRIP_STATUSES),
                name="trip_busy_has_driver",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.leg} of appointment {self.appointment_id} ({self.status})"
