"""A visit's shared trips as its sessions come and go (issue 14 item 1).

A visit with transport has one drop-off and one pick-up (`Trip.visit`), carrying every
therapist still booked (`Trip.passengers`); `Trip.appointment` is the lead session. The
booking engine (`services/appointments.py`) calls in here, so a single session's cancel,
reassign or reschedule treats the shared trips the one way:

- cancelled: the session's seat is given up. The trips carry one passenger fewer, the
  pick-up leaves when the remaining sessions (plus buffer) are over, the lead moves to the
  first remaining session, and the remaining therapists are held until the new pick-up
  ends. An assigned driver keeps the pick-up when still free for its new window, else it
  goes back to the queue (`manual_dispatch.unassign`). The last session cancelled cancels
  the trips.
- rejected or expired: the seat is kept for the session's reassignment to another
  therapist (`services/reassign.py`), so the trips are not touched.

Locks: the dispatcher's, then the trips' days, then the trips' rows, then a driver's
timetable: the order a dispatcher pass and a manual assignment take them in."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from scheduling.domain import Interval
from scheduling.formats import clock
from scheduling.models import Appointment, Leg, Trip, User
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch
from scheduling.services import capacity, dispatch, manual_dispatch
from scheduling.services import trips as trip_services
from scheduling.services.common import DRIVER_TIMETABLE, lock_timetable
from scheduling.states import ACTIVE_APPOINTMENT_STATUSES, AppointmentStatus, TripStatus

# Trips whose window may still move: nobody has set off on them.
NOT_UNDER_WAY = (TripStatus.QUEUED, TripStatus.ASSIGNED)


def pickup_end(appointment: Appointment) -> datetime | None:
    """When the visit's shared pick-up ends, which every session's therapist waits for
    (their busy range covers it); None for an appointment with no shared pick-up."""
    if appointment.visit_id is None or not appointment.needs_transport:
        return None
    return (
        Trip.objects.open()
        .filter(visit_id=appointment.visit_id, leg=Leg.PICKUP)
        .values_list("window_end", flat=True)
        .order_by("-id")
        .first()
    )


def session_left(
    session: Appointment, *, actor: User | None, batch: EventBatch, now: datetime | None = None
) -> None:
    """`session` (locked, its status just changed to cancelled) gives up its seat on the
    visit's shared trips: resize them, or cancel them when no session is left."""
    if session.visit_id is None or session.status != AppointmentStatus.CANCELLED:
        return
    now = now or timezone.now()
    visit_trips = Trip.objects.open().filter(visit_id=session.visit_id)
    windows = list(visit_trips.values_list("window_start", "window_end"))
    if not windows:
        return
    dispatch.lock_dispatcher()
    capacity.lock_days(
        day for start, end in windows for day in capacity.days_of(Interval(start, end))
    )
    trips = list(
        visit_trips.select_for_update(of=("self",))
        .select_related("appointment")
        .order_by("window_start", "id")
    )
    seated = list(
        Appointment.objects.filter(visit_id=session.visit_id)
        .exclude(status=AppointmentStatus.CANCELLED)
        .exclude(pk=session.pk)
        .select_related("service")
        .order_by("id")
    )
    active = [s for s in seated if s.status in ACTIVE_APPOINTMENT_STATUSES]
    if not active:
        for lead in {t.appointment_id: t.appointment for t in trips}.values():
            trip_services.cancel_open_trips(
                lead, batch=batch, reason="every session of the visit is cancelled"
            )
        return
    lead = active[0]
    travel = timedelta(minutes=session.travel_minutes)
    # The pick-up leaves when the last remaining session and its buffer are over.
    back = max(s.blocked_until for s in seated)
    for trip in trips:
        _resize(trip, passengers=len(seated), lead=lead, back=back, travel=travel, actor=actor)
        batch.trip(events.TRIP_UPDATED, trip, therapist_id=trip.appointment.therapist_id)
    # The remaining therapists wait for the new pick-up, no longer (a range only shrinks).
    for other in active:
        if other.busy_until != back + travel:
            other.busy_until = back + travel
            Appointment.objects.filter(pk=other.pk).update(busy_until=other.busy_until)
            batch.appointment(
                events.APPOINTMENT_UPDATED,
                other,
                [t for t in trips if t.appointment_id == other.pk],
            )


def _resize(
    trip: Trip,
    *,
    passengers: int,
    lead: Appointment,
    back: datetime,
    travel: timedelta,
    actor: User | None,
) -> None:
    changed = ["passengers"]
    trip.passengers = passengers
    if trip.appointment_id != lead.pk and trip.appointment.status == AppointmentStatus.CANCELLED:
        trip.appointment = lead
        changed.append("appointment")
    moves = trip.leg == Leg.PICKUP and trip.status in NOT_UNDER_WAY and trip.window_start != back
    if moves:
        window = (back, back + travel)
        if trip.driver_id is not None and _driver_busy(trip, *window):
            assert actor is not None  # only the desk cancels (APPOINTMENT_RULES)
            # Not free for the new window: back to the queue, as the desk would do it.
            manual_dispatch.unassign(
                actor=actor,
                trip_id=trip.pk,
                reason="A session of the visit was cancelled: the pick-up moved to "
                f"{clock(back)}, when this driver is busy.",
            )
            trip.refresh_from_db(fields=["status", "driver", "assigned_at", "driver_waiting_since"])
        trip.window_start, trip.window_end = window
        changed += ["window_start", "window_end"]
    trip.save(update_fields=[*changed, "updated_at"])


def _driver_busy(trip: Trip, start: datetime, end: datetime) -> bool:
    """The trip's driver holds another trip meeting [start, end) (their timetable locked
    until the transaction ends, so the answer stands)."""
    assert trip.driver_id is not None
    lock_timetable(DRIVER_TIMETABLE, trip.driver_id)
    return (
        Trip.objects.busy()
        .filter(driver_id=trip.driver_id)
        .overlapping(start, end)
        .exclude(pk=trip.pk)
        .exists()
    )
