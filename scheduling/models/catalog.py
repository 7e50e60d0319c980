from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Q


class ServiceQuerySet(models.QuerySet):
    def bookable(self) -> ServiceQuerySet:
        """The services the desk may still book (a retired one keeps its history)."""
        return self.filter(active=True)


class Service(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    duration_minutes = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    # Travel and clean-up after the session, during which the therapist is not bookable.
    buffer_minutes = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)

    objects = ServiceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_minutes__gt=0) & Q(duration_minutes__lte=24 * 60),
                name="service_duration_positive",
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="service_price_non_negative"),
            models.CheckConstraint(
                condition=Q(buffer_minutes__lte=24 * 60), name="service_buffer_bounded"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.buffer_minutes)


class ServiceAreaQuerySet(models.QuerySet):
    def active(self) -> ServiceAreaQuerySet:
        return self.filter(active=True)


class ServiceArea(models.Model):
    """Where clients live, and how long the trip there takes from base (one way).

    A booking copies the minutes it was made with (`Appointment.travel_minutes`), so
    changing an area later moves no existing booking."""

    name = models.CharField(max_length=120, unique=True)
    travel_minutes = models.PositiveSmallIntegerField(
        help_text="Minutes from base to a client here, one way."
    )
    active = models.BooleanField(default=True)

    objects = ServiceAreaQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Never 0: a client needs no transport only when the desk says so.
            models.CheckConstraint(
                condition=Q(travel_minutes__gte=1, travel_minutes__lte=6 * 60),
                name="area_travel_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.travel_minutes} min)"

    @property
    def travel(self) -> timedelta:
        return timedelta(minutes=self.travel_minutes)
