"""Reassigning an appointment to another therapist, at the same time or a new one.

The booking engine's own checks (`services/appointments.py`) decide whether the new
therapist is free; this module only sequences them for a move between two timetables."""

from __future__ import annotations

from copy import copy
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from scheduling import states
from scheduling.errors import ValidationFailed
from scheduling.models import Appointment, User
from scheduling.realtime import events
from scheduling.services.appointments import _locked, _log, _therapist_for, replan
from scheduling.services.common import THERAPIST_TIMETABLE, lock_timetable, role_of
from scheduling.services.notifications import outbox
from scheduling.states import APPOINTMENT_RULES, AppointmentStatus

# The one event the old therapist gets: which appointment left their day, nothing else.
APPOINTMENT_REMOVED = "appointment.removed"
# Messages (templates/notifications/<kind>.<audience>.txt).
REASSIGNED = "appointment_reassigned"  # to the new therapist
UNASSIGNED = "appointment_unassigned"  # to the old one: no client details
MOVED_AND_REASSIGNED = "appointment_moved_therapist_changed"  # to the client, time changed


def reassign(
    *,
    actor: User,
    appointment_id: int,
    therapist_id: int,
    start: datetime | None = None,
    reason: str,
    now: datetime | None = None,
) -> Appointment:
    """Give the appointment to `therapist_id`, at `start` (default: its own time).

    The same checks as booking (the service performed, working time, travel, driver
    capacity); the status goes back to `pending` with a fresh deadline, the trips are
    planned anew, and the old therapist is told it is gone (event and message)."""
    states.check_role(APPOINTMENT_RULES, "reassign", role=role_of(actor), noun="appointment")
    now = now or timezone.now()
    current = _locked(appointment_id, lock=False)
    new = _therapist_for(therapist_id, current.service)
    with transaction.atomic():
        # Both timetables, in id order (two reassigns the other way round cannot
        # deadlock), then the row: the order booking takes them in.
        for staff_id in sorted({current.therapist_id, new.pk}):
            lock_timetable(THERAPIST_TIMETABLE, staff_id)
        appointment = _locked(appointment_id)
        previous, before = appointment.status, copy(appointment)
        old = before.therapist
        states.check(
            APPOINTMENT_RULES,
            "reassign",
            current=_as_for_reassign(appointment),
            role=role_of(actor),
            noun="appointment",
        )
        if old.pk == new.pk and (start is None or start == appointment.start):
            raise _same_therapist(appointment)
        moved = start is not None and start != appointment.start
        when = start if start is not None else appointment.start
        appointment.therapist = new
        batch, trips = replan(appointment, start=when, now=now, why="reassigned")
        transition = _log(appointment, "reassign", previous, appointment.status, actor, reason)
        _notify(appointment, before, moved=moved, cause=f"t{transition.pk}", now=now)
        if old.pk != new.pk:
            batch.add(APPOINTMENT_REMOVED, {"id": appointment.pk}, recipients=[old.pk])
        batch.appointment(events.APPOINTMENT_UPDATED, appointment, trips)
        batch.flush()
    return appointment


# A visit's session refused by its therapist (or left unanswered) keeps its seat on the
# visit's shared trips (services/visit_trips.py), waiting to be given to another therapist.
VISIT_SEAT_KEPT = frozenset({AppointmentStatus.REJECTED, AppointmentStatus.EXPIRED})


def _as_for_reassign(appointment: Appointment) -> str:
    """The status the reassign rule is checked against: a visit's refused session is
    given to someone else as a pending one would be; anything else is what it is."""
    if appointment.visit_id is not None and appointment.status in VISIT_SEAT_KEPT:
        return AppointmentStatus.PENDING
    return appointment.status


def _same_therapist(appointment: Appointment) -> ValidationFailed:
    return ValidationFailed.on(
        "therapist",
        f"{appointment.therapist} already has this appointment; choose another therapist "
        "or a new time.",
    )


def _notify(
    appointment: Appointment, before: Appointment, *, moved: bool, cause: str, now: datetime
) -> None:
    """The new therapist is asked to accept; the old one is told it is gone (the time
    they had, and the service: no client details); the client hears when the time
    changed."""
    # Reminders written for the old therapist or time are void; the scan writes new ones.
    outbox.cancel_pending_reminders(appointment)
    write = outbox._write  # the one place messages are built and keyed
    write(REASSIGNED, appointment=appointment, cause=cause, send_after=now, now=now)
    if before.therapist_id != appointment.therapist_id:
        write(UNASSIGNED, appointment=before, cause=cause, send_after=now, now=now)
    if moved:
        write(MOVED_AND_REASSIGNED, appointment=appointment, cause=cause, send_after=now, now=now)
