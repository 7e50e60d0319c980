"""Trips: created with their appointment, assigned to a driver, driven, cancelled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling import background, states
from scheduling.errors import Conflict, ConflictingItem, NotFound, NotPermitted, ValidationFailed
from scheduling.formats import clock, moment
from scheduling.models import Appointment, DriverProfile, Transition, Trip, User
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch
from scheduling.services import capacity
from scheduling.services.common import (
    DRIVER_TIMETABLE,
    lock_timetable,
    role_of,
    violates,
)
from scheduling.services.notifications import outbox
from scheduling.states import NEW, TRIP_RULES, TripStatus

OVERLAP_CONSTRAINT = "trip_driver_no_overlap"


def create_trips_for(appointment: Appointment) -> list[Trip]:
    """The drop-off leg ends at the start, the pick-up leg begins when the session and its
    buffer are over, each as long as the appointment's travel (`capacity.legs_for`, the
    legs the booking checked). Runs inside the caller's transaction."""
    legs = capacity.legs_for(
        appointment.start,
        appointment.end,
        buffer=appointment.blocked_until - appointment.end,
        travel=timedelta(minutes=appointment.travel_minutes),
    )
    trips = Trip.objects.bulk_create(
        Trip(
            appointment=appointment,
            leg=leg.leg,
            window_start=leg.window.start,
            window_end=leg.window.end,
            passengers=leg.passengers,
        )
        for leg in legs
    )
    Transition.objects.bulk_create(
        Transition(trip=t, action="create", from_status=NEW, to_status=t.status) for t in trips
    )
    # The dispatcher decides whether they are within its horizon yet.
    background.after_commit(background.DISPATCH)
    return trips


def cancel_open_trips(appointment: Appointment, *, batch: EventBatch, reason: str) -> list[Trip]:
    """Cancel the appointment's trips that have not ended (the platform acting)."""
    now = timezone.now()
    trips = list(appointment.trips.open().select_for_update().order_by("id"))
    requeued = False
    for trip in trips:
        _change(trip, "cancel", actor=None, reason=reason)
        if trip.driver_id:
            requeued |= _requeue_if_free(trip.driver_id, now)
        batch.trip(events.TRIP_UPDATED, trip, therapist_id=appointment.therapist_id)
    if requeued:
        batch.queue()
    return trips


def assign_trip(*, trip_id: int, driver_id: int, now: datetime | None = None) -> Trip:
    """Give a queued trip to a driver (the dispatcher's decision, taken by the platform).

    The driver leaves the FIFO queue and is told. The exclusion constraint refuses a
    driver whose busy trips overlap the window, and that surfaces as a Conflict.
    """
    now = now or timezone.now()
    with transaction.atomic():
        trip = _locked(trip_id)
        profile = _driver_profile(driver_id)
        writes = Assignments()
        assign_locked(trip=trip, profile=profile, now=now, writes=writes)
        writes.flush()
    return trip


@dataclass
class Assignments:
    """What assignments append besides the trip row itself (the log, the drivers leaving
    the queue, their messages, the stream events), written together by `flush()` at the
    end of the transaction: a dispatcher pass makes many, and one statement per kind
    instead of one per assignment is most of its speed."""

    events: EventBatch = field(default_factory=EventBatch)
    log: list[Transition] = field(default_factory=list)
    out_of_queue: list[int] = field(default_factory=list)
    messages: outbox.Outbox = field(default_factory=outbox.Outbox)

    def flush(self) -> None:
        Transition.objects.bulk_create(self.log)
        if self.out_of_queue:
            DriverProfile.objects.filter(user_id__in=self.out_of_queue).update(available_since=None)
            self.events.queue(leaving=self.out_of_queue)
        self.messages.flush()
        self.events.flush()  # last: it holds the stream's counter until the commit
        self.log, self.out_of_queue = [], []


def assign_locked(
    *,
    trip: Trip,
    profile: DriverProfile,
    now: datetime,
    writes: Assignments,
    precheck: bool = True,
    actor: User | None = None,
    reason: str = "",
    timetable_locked: bool = False,
) -> None:
    """assign_trip's work, for a caller inside a transaction that holds the trip's row lock
    and has read the driver's profile: the dispatcher, assigning many in one pass, which
    flushes `writes` once, and has looked for clashes itself (`precheck=False`); and the
    desk's assignment by hand (`actor`, services/manual_dispatch.py). A refusal raises
    before anything is written. `timetable_locked`: the caller holds the driver's
    timetable lock already (the dispatcher takes every waiting driver's at once)."""
    states.check(TRIP_RULES, "assign", current=trip.status, role=role_of(actor), noun="trip")
    if not timetable_locked:
        lock_timetable(DRIVER_TIMETABLE, profile.user_id)
    if trip.passengers > profile.seats:
        raise ValidationFailed.on(
            "driver", f"{profile.user} cannot carry {trip.passengers} passengers."
        )
    clashes = _clashes(profile.user_id, trip) if precheck else []
    if clashes:
        raise _busy(profile.user, clashes)
    trip.driver_id = profile.user_id
    trip.assigned_at = now
    # Their place in the queue, given back if the desk takes the trip back (unassign).
    trip.driver_waiting_since = profile.available_since
    try:
        _change(
            trip,
            "assign",
            actor=actor,
            reason=reason,
            extra_fields=["driver", "assigned_at", "driver_waiting_since"],
            log=writes.log,
        )
    except Conflict:
        trip.driver_id, trip.assigned_at, trip.status = None, None, TripStatus.QUEUED
        trip.driver_waiting_since = None
        raise
    writes.out_of_queue.append(profile.user_id)
    outbox.trip_assigned(trip, profile.user, now=now, outbox=writes.messages)
    writes.events.trip(events.TRIP_ASSIGNED, trip, therapist_id=trip.appointment.therapist_id)


def act_on_trip(
    *,
    actor: User | None,
    trip_id: int,
    action: str,
    reason: str = "",
    on_behalf: bool = False,
    now: datetime | None = None,
) -> Trip:
    """A driver's depart / arrive / complete, or a cancel by the desk or the platform.

    `on_behalf`: the desk takes the driver's action for them (confirmed by phone); the
    log keeps both. A completed trip puts its driver at the back of the queue, if still
    on shift."""
    if action not in {"depart", "arrive", "complete", "cancel"}:
        raise ValidationFailed.on("action", f"Unknown trip action '{action}'.")
    now = now or timezone.now()
    role = role_of(actor)
    states.check_role(TRIP_RULES, action, role=role, noun="trip", on_behalf=on_behalf)
    with transaction.atomic():
        trip = _locked(trip_id)
        # Ownership before status, so another driver learns nothing about this trip. (A
        # driver is always a person: role_of(None) is the platform.)
        if role == states.DRIVER and actor is not None and trip.driver_id != actor.pk:
            raise NotPermitted("Only the trip's own driver may do that.")
        states.check(
            TRIP_RULES, action, current=trip.status, role=role, noun="trip", on_behalf=on_behalf
        )
        driver_id = trip.driver_id
        _change(
            trip,
            action,
            actor=actor,
            reason=reason,
            on_behalf_of=driver_id if on_behalf else None,
        )
        requeued = trip.status in {TripStatus.DONE, TripStatus.CANCELLED} and bool(
            driver_id and _requeue_if_free(driver_id, now)
        )
        batch = EventBatch()
        batch.trip(events.TRIP_UPDATED, trip, therapist_id=trip.appointment.therapist_id)
        if requeued:
            batch.queue()
        batch.flush()
    return trip


def set_shift(*, driver: User, on_shift: bool, now: datetime | None = None) -> DriverProfile:
    """Go on shift (join the back of the queue) or off shift (leave it)."""
    if driver.effective_role != states.DRIVER:
        raise NotPermitted("Only drivers have shifts.")
    now = now or timezone.now()
    with transaction.atomic():
        profile: DriverProfile = DriverProfile.objects.select_for_update().get(user=driver)
        if profile.on_shift == on_shift:
            return profile
        profile.on_shift = on_shift
        # Already carrying someone: joins the queue when that trip is done.
        free = not Trip.objects.busy().filter(driver=driver).exists()
        profile.available_since = now if on_shift and free else None
        profile.save(update_fields=["on_shift", "available_since"])
        if profile.available_since is not None:
            background.after_commit(background.DISPATCH)
        batch = EventBatch()
        # Out of the queue (off shift, or on shift but still driving): told so too.
        batch.queue(leaving=[driver.pk] if profile.available_since is None else [])
        batch.flush()
    return profile


# --- helpers ----------------------------------------------------------------------------


def locked_trip(trip_id: int) -> Trip:
    """The trip's row, locked until the transaction ends; NotFound for an unknown id."""
    try:
        trip: Trip = (
            Trip.objects.select_for_update(of=("self",))
            .select_related("appointment")
            .get(pk=trip_id)
        )
    except (Trip.DoesNotExist, ValueError, TypeError):
        raise no_such_trip(trip_id) from None
    return trip


_locked = locked_trip


def no_such_trip(trip_id: object) -> NotFound:
    return NotFound(f"There is no trip with id {trip_id}.")


def _driver_profile(driver_id: int) -> DriverProfile:
    try:
        profile: DriverProfile = DriverProfile.objects.select_related("user").get(
            user_id=driver_id, user__role=states.DRIVER, user__is_active=True
        )
    except (DriverProfile.DoesNotExist, ValueError, TypeError):
        raise ValidationFailed.on("driver", f"There is no driver with id {driver_id}.") from None
    return profile


def _clashes(driver_id: int, trip: Trip) -> list[Trip]:
    return list(
        Trip.objects.busy()
        .filter(driver_id=driver_id)
        .overlapping(trip.window_start, trip.window_end)
        .exclude(pk=trip.pk)
    )


def _busy(driver: User, clashes: list[Trip]) -> Conflict:
    first = clashes[0]
    return Conflict(
        f"{driver} is already driving from {moment(first.window_start)} to "
        f"{clock(first.window_end)} (trip #{first.pk}).",
        [
            ConflictingItem(
                start=t.window_start,
                end=t.window_end,
                trip_id=t.pk,
                appointment_id=t.appointment_id,
            )
            for t in clashes
        ],
        reason="driver_busy",
    )


def _change(
    trip: Trip,
    action: str,
    *,
    actor: User | None,
    reason: str = "",
    extra_fields: list[str] | None = None,
    log: list[Transition] | None = None,
    on_behalf_of: int | None = None,
) -> None:
    """Apply a checked action: new status, saved (constraint-guarded), logged (into `log`
    when given, for the caller to write with others)."""
    previous = trip.status
    trip.status = TRIP_RULES[action].target
    try:
        with transaction.atomic():
            trip.save(update_fields=["status", "updated_at", *(extra_fields or [])])
    except IntegrityError as exc:
        if not violates(exc, OVERLAP_CONSTRAINT):
            raise
        # The constraint covers only trips with a driver (WHERE driver_id IS NOT NULL).
        assert trip.driver_id is not None
        clashes = _clashes(trip.driver_id, trip)
        if not clashes:
            raise Conflict(
                "That driver was just given an overlapping trip.", reason="driver_busy"
            ) from None
        driver = trip.driver  # read only now: the message needs the name
        assert driver is not None  # driver_id is set (above)
        raise _busy(driver, clashes) from None
    entry = Transition(
        trip=trip,
        action=action,
        from_status=previous,
        to_status=trip.status,
        actor=actor,
        on_behalf_of_id=on_behalf_of,
        reason=reason,
    )
    if log is None:
        entry.save()
    else:
        log.append(entry)


# Manual dispatch (services/manual_dispatch.py) changes a trip's status the same way.
change_status = _change


def _requeue_if_free(driver_id: int, now: datetime) -> bool:
    """Back of the queue once the driver has nothing left to drive; True if they went."""
    if not Trip.objects.busy().filter(driver_id=driver_id).exists() and (
        DriverProfile.objects.filter(user_id=driver_id, on_shift=True).update(available_since=now)
    ):
        background.after_commit(background.DISPATCH)
        return True
    return False
