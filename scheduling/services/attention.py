"""Work left open too long (issue 13 item 4): appointments still `in_progress` two hours
after their end, and trips still open two hours after their window. A therapist or
driver who forgot to tap "complete", or whose phone died: the desk calls them and acts
for them (or cancels).

`overdue` is the list the desk's "needs attention" shows, read at `now`; the sweep
(`flag_overdue`, every five minutes from beat and the embedded sweeps) puts each newly
overdue item there for the desk's live pages: one `attention.overdue` stream event per
appointment or trip, written once (the event itself records that it was announced)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from scheduling.models import Appointment, StreamEvent, Trip
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch

# How long after its end an appointment may stay in progress, a trip stay open.
OVERDUE_AFTER = timedelta(hours=2)
ATTENTION_OVERDUE = "attention.overdue"


@dataclass
class Overdue:
    appointments: list[Appointment]
    trips: list[Trip]

    @property
    def total(self) -> int:
        return len(self.appointments) + len(self.trips)


def overdue(*, now: datetime, limit: int | None = None) -> Overdue:
    """What is left open past OVERDUE_AFTER at `now`, oldest first."""
    cutoff = now - OVERDUE_AFTER
    appointments = (
        Appointment.objects.still_in_progress(before=cutoff)
        .select_related("client", "therapist", "service")
        .order_by("end", "id")
    )
    trips = (
        Trip.objects.still_open(before=cutoff)
        .select_related("appointment__client", "driver")
        .order_by("window_end", "id")
    )
    if limit is not None:
        return Overdue(list(appointments[:limit]), list(trips[:limit]))
    return Overdue(list(appointments), list(trips))


def flag_overdue(*, now: datetime | None = None) -> int:
    """Announce each newly overdue appointment and trip to the desk; return how many."""
    now = now or timezone.now()
    found = overdue(now=now)
    if not found.total:
        return 0
    announced = StreamEvent.objects.filter(type=ATTENTION_OVERDUE)
    told_appointments = set(
        announced.filter(appointment_id__in=[a.pk for a in found.appointments]).values_list(
            "appointment_id", flat=True
        )
    )
    told_trips = set(
        announced.filter(trip_id__in=[t.pk for t in found.trips]).values_list("trip_id", flat=True)
    )
    batch = EventBatch()
    for appointment in found.appointments:
        if appointment.pk not in told_appointments:
            batch.add(
                ATTENTION_OVERDUE,
                {
                    "appointment": appointment.pk,
                    "status": appointment.status,
                    "end": appointment.end.isoformat(),
                },
                appointment=appointment,
            )
    for trip in found.trips:
        if trip.pk not in told_trips:
            batch.add(
                ATTENTION_OVERDUE,
                {**events.trip_data(trip), "overdue": True},
                trip=trip,
            )
    count = len(batch.events)
    if count:
        with transaction.atomic():
            batch.flush()
    return count
