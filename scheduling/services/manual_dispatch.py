"""Manual dispatch: the desk gives a queued trip to a chosen driver, or takes an assigned
trip back into the queue (issue 13 item 3).

The dispatcher's own rules decide: the same locks in the same order as a pass (the
dispatcher's advisory lock, the capacity days, the trip's row, the driver's row, the
driver's timetable), the same fitness checks (`dispatch.fits`, the fleet's
`strands`), and `trips.assign_locked` with its exclusion constraint as the backstop. A
manual assignment and a dispatcher pass therefore run one after the other and never give
one driver two overlapping trips.

A driver whose trip is taken back gets their place in the FIFO queue back
(`Trip.driver_waiting_since`, kept at assignment), as if the trip had not been given.
Both are recorded as DispatchDecisions taken by a person (`decided_by`, `reason`)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from scheduling import background, states
from scheduling.domain import Interval, local_date
from scheduling.errors import Conflict, NotPermitted, ValidationFailed
from scheduling.models import (
    DispatchDecision,
    DispatchOutcome,
    DriverProfile,
    Notification,
    NotificationStatus,
    Trip,
    User,
)
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch
from scheduling.services import capacity, dispatch, trips
from scheduling.services.common import DRIVER_TIMETABLE, lock_timetable, role_of
from scheduling.services.notifications import outbox
from scheduling.states import TRIP_RULES

REASON_LIMIT = 2000


def assign_by_hand(
    *, actor: User, trip_id: int, driver_id: int, reason: str, now: datetime | None = None
) -> Trip:
    """Give the queued trip `trip_id` to `driver_id`, who must be on shift, fit for it
    (vehicle and seats), free for its window, and not needed for another booked trip."""
    role = _desk_role(actor, "assign")
    reason = _reason(reason)
    now = now or timezone.now()
    with transaction.atomic():
        dispatch.lock_dispatcher()
        window = _window(trip_id)
        days = sorted({local_date(now), *capacity.days_of(window)})
        capacity.lock_days(days)
        trip = trips.locked_trip(trip_id)
        states.check(TRIP_RULES, "assign", current=trip.status, role=role, noun="trip")
        profile = _locked_driver(driver_id)
        if not profile.on_shift:
            raise Conflict(f"{profile.user} is not on shift.", reason="off_shift")
        if not dispatch.fits(profile, trip):
            raise Conflict(
                f"{profile.user}'s {profile.vehicle} cannot carry {trip.passengers} passenger(s).",
                reason="vehicle",
            )
        fleet = capacity.load_fleet(days, now=now)
        if fleet.strands(trip.pk, profile.user_id):
            raise Conflict(
                f"{profile.user} is needed for another booked trip that nobody else can "
                "take: choose another driver.",
                reason="needed_later",
            )
        queue = list(dispatch.driver_queue().values_list("user_id", "available_since"))
        writes = trips.Assignments()
        # Raises the Conflict (driver_busy) before writing, as for the dispatcher.
        trips.assign_locked(
            trip=trip, profile=profile, now=now, writes=writes, actor=actor, reason=reason
        )
        DispatchDecision.objects.create(
            trip=trip,
            outcome=DispatchOutcome.ASSIGNED,
            driver_id=profile.user_id,
            queue=[
                dispatch.queue_entry(user_id, since)
                for user_id, since in queue
                if user_id == profile.user_id
            ],
            queue_length=len(queue),
            decided_at=now,
            decided_by=actor,
            reason=reason,
        )
        writes.flush()
    return trip


def unassign(*, actor: User, trip_id: int, reason: str, now: datetime | None = None) -> Trip:
    """Take an assigned trip (not yet under way) back into the queue. Its driver gets
    their place in the queue back, if still on shift and with nothing else to drive."""
    role = _desk_role(actor, "unassign")
    reason = _reason(reason)
    now = now or timezone.now()
    with transaction.atomic():
        dispatch.lock_dispatcher()
        trip = trips.locked_trip(trip_id)
        states.check(TRIP_RULES, "unassign", current=trip.status, role=role, noun="trip")
        driver_id = trip.driver_id
        assert driver_id is not None  # an assigned trip has a driver (trip_busy_has_driver)
        waited_since = trip.driver_waiting_since
        lock_timetable(DRIVER_TIMETABLE, driver_id)
        profile = DriverProfile.objects.select_for_update().get(user_id=driver_id)
        trip.driver_id, trip.assigned_at, trip.driver_waiting_since = None, None, None
        trips.change_status(
            trip,
            "unassign",
            actor=actor,
            reason=reason,
            extra_fields=["driver", "assigned_at", "driver_waiting_since"],
        )
        requeued = profile.on_shift and not Trip.objects.busy().filter(driver_id=driver_id).exists()
        if requeued:
            profile.available_since = waited_since or now
            profile.save(update_fields=["available_since"])
        decision = DispatchDecision.objects.create(
            trip=trip,
            outcome=DispatchOutcome.UNASSIGNED,
            driver_id=driver_id,
            queue_length=DriverProfile.objects.queue().count(),
            decided_at=now,
            decided_by=actor,
            reason=reason,
        )
        _retire_assignment_messages(trip, driver_id, decision_id=decision.pk, now=now)
        batch = EventBatch()
        # To the driver who had it too: their phone drops it at once.
        batch.add(
            events.TRIP_UPDATED,
            events.trip_data(trip),
            recipients=[driver_id, trip.appointment.therapist_id],
            trip=trip,
        )
        if requeued:
            batch.queue()
        batch.flush()
        background.after_commit(background.DISPATCH)
    return trip


def latest_by_hand(trip_ids: list[int]) -> dict[int, list[DispatchDecision]]:
    """The decisions people took on these trips, oldest first, by trip."""
    found: dict[int, list[DispatchDecision]] = {}
    rows = (
        DispatchDecision.objects.filter(trip_id__in=trip_ids, decided_by__isnull=False)
        .select_related("decided_by", "driver")
        .order_by("id")
    )
    for decision in rows:
        found.setdefault(decision.trip_id, []).append(decision)
    return found


def _retire_assignment_messages(
    trip: Trip, driver_id: int, *, decision_id: int, now: datetime
) -> None:
    """The driver's "you have a trip" message for a trip taken back: not sent if still
    waiting, and its key freed (a message's key names its cause, here the trip), so that
    giving the trip again, even to the same driver, messages them afresh."""
    rows = Notification.objects.filter(trip=trip, user_id=driver_id, kind=outbox.TRIP_ASSIGNED)
    rows.filter(status=NotificationStatus.PENDING).update(
        status=NotificationStatus.CANCELLED, updated_at=now
    )
    rows.update(key=Concat(F("key"), Value(f":taken-back{decision_id}")))


def _desk_role(actor: User, action: str) -> str:
    role = role_of(actor)
    if role not in states.DESK:
        raise NotPermitted(f"A {role} may not {action} a trip: only the desk dispatches by hand.")
    states.check_role(TRIP_RULES, action, role=role, noun="trip")
    return role


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed.on("reason", "Say why (kept in the trip's history).")
    if len(reason) > REASON_LIMIT:
        raise ValidationFailed.on("reason", f"At most {REASON_LIMIT} characters.")
    return reason.strip()


def _window(trip_id: int) -> Interval:
    try:
        start, end = Trip.objects.values_list("window_start", "window_end").get(pk=trip_id)
    except (Trip.DoesNotExist, ValueError, TypeError):
        raise trips.no_such_trip(trip_id) from None
    return Interval(start, end)


def _locked_driver(driver_id: int) -> DriverProfile:
    try:
        profile: DriverProfile = (
            DriverProfile.objects.select_for_update(of=("self",))
            .select_related("user")
            .get(user_id=driver_id, user__role=states.DRIVER, user__is_active=True)
        )
        return profile
    except (DriverProfile.DoesNotExist, ValueError, TypeError):
        raise ValidationFailed.on("driver", f"There is no driver with id {driver_id}.") from None
