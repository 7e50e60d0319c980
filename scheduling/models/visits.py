"""A couples or group visit: two to four sessions at one address at the same start (issue 14).

Its sessions are the appointments linked to it, `visit.sessions` (Appointment.visit,
related_name="sessions"); with transport its shared drop-off and pick-up are the trips linked
to it, `visit.trips` (Trip.visit, related_name="trips"), each carrying every therapist still
booked (`Trip.passengers`). `Trip.appointment` stays the visit's lead session and moves to
another session when the lead is cancelled (services/visits.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class VisitQuerySet(models.QuerySet):
    def visible_to(self, user) -> VisitQuerySet:
        """The desk: every visit; a therapist: those they have a session in; a driver: those
        whose trip they hold; anyone else (a client): none."""
        if user.is_desk:
            return self
        if user.effective_role == "therapist":
            return self.filter(sessions__therapist=user).distinct()
        if user.effective_role == "driver":
            return self.filter(trips__driver=user).distinct()
        return self.none()


class Visit(models.Model):
    client = models.ForeignKey("scheduling.Client", on_delete=models.PROTECT, related_name="visits")
    start = models.DateTimeField()
    address = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    needs_transport = models.BooleanField(default=False)
    area = models.ForeignKey(
        "scheduling.ServiceArea",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="visits",
    )
    # One way, base to client, as booked (as Appointment.travel_minutes).
    travel_minutes = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VisitQuerySet.as_manager()

    class Meta:
        ordering = ["start", "id"]
        indexes = [models.Index(fields=["client", "start"], name="visit_client_idx")]

    def __str__(self) -> str:
        return f"visit #{self.pk} {self.start:%Y-%m-%d %H:%M}"
