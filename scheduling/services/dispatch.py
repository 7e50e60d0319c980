"""FIFO dispatch: the eligible driver who has waited longest gets the next trip.

The queue is the on-shift drivers who are free, longest-waiting first (`available_since`:
set when going on shift and when a trip is done, cleared on assignment). A trip is
dispatchable once its window is within the horizon (DISPATCH_HORIZON_MINUTES before it
starts) or, for a pickup, once it is requested. Queued trips are served by window start,
then creation; each goes to the first driver in the queue whose vehicle fits and who is
free for the whole window. Every look at a trip is recorded (DispatchDecision).

`run_pass` is the only way trips are dispatched: the task, the beat sweep and the
`dispatch_queue --run` command all call it. It runs when a trip is created, a driver goes
on shift or finishes a trip (on commit), and every 30 s (the sweep).

With several workers: passes take one advisory lock, so they run one after another and
each sees what the previous one committed; queued trips are locked with SKIP LOCKED (a
trip locked by someone else is being cancelled or requested, and that commit triggers a
pass of its own); the drivers' rows are locked before they are given a trip, and
assign_trip's timetable lock and exclusion constraint remain the backstop. Trips are read
before the queue, so drivers who join during a pass can only appear at its back, which
serves every trip exactly as a pass that had started later would.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from scheduling import background, states
from scheduling.domain import Interval, local_date
from scheduling.errors import (
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    NotPermitted,
    ValidationFailed,
)
from scheduling.fleet import components, vehicle_fits
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    DispatchDecision,
    DispatchOutcome,
    DriverProfile,
    Leg,
    SkipReason,
    Transition,
    Trip,
    TripStatus,
    User,
    Vehicle,
)
from scheduling.models.people import DriverProfileQuerySet
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch
from scheduling.services import capacity
from scheduling.services.common import DRIVER_TIMETABLE, role_of
from scheduling.services.trips import Assignments, assign_locked

# Stream event for the desk: a trip is waiting and no driver could take it.
TRIP_WAITING = "trip.waiting"
# Advisory lock namespace of the dispatcher (services.common uses 1 and 2 for timetables).
DISPATCHER_LOCK = 3
# A pickup can be asked for once the therapist is with the client or done.
PICKUP_STATUSES = (
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.IN_PROGRESS,
    AppointmentStatus.COMPLETED,
)


def horizon() -> timedelta:
    return timedelta(minutes=int(settings.SCHEDULING["DISPATCH_HORIZON_MINUTES"]))


def dispatchable(now: datetime) -> Q:
    return Q(status=TripStatus.QUEUED) & (
        Q(window_start__lte=now + horizon()) | Q(requested_at__isnull=False)
    )


def driver_queue() -> DriverProfileQuerySet:
    """The drivers waiting for a trip, longest-waiting first."""
    return DriverProfile.objects.queue().select_related("user")


def queue_entry(driver_id: int, since: datetime) -> dict[str, int | str]:
    """A driver's place in the queue as a decision records it."""
    return {"driver": driver_id, "since": since.isoformat()}


def queue_position(profile: DriverProfile) -> int | None:
    """1 for the driver who gets the next trip; None for a driver not in the queue."""
    if not (profile.on_shift and profile.available_since is not None):
        return None
    since = profile.available_since
    # The queue's own order: waiting since, then id for drivers who joined together.
    ahead = driver_queue().filter(
        Q(available_since__lt=since) | Q(available_since=since, user_id__lt=profile.user_id)
    )
    return 1 + ahead.count()


def fits(profile: DriverProfile, trip: Trip) -> bool:
    """A motorcycle carries one passenger; more need a car with the seats."""
    return vehicle_fits(
        seats=profile.seats, car=profile.vehicle == Vehicle.CAR, passengers=trip.passengers
    )


@dataclass
class Candidate:
    # The driver's row as locked by this pass.
    profile: DriverProfile
    # Their place in the queue when the pass read it.
    since: datetime
    # Why this driver cannot take any trip in this pass (left the queue since it was read).
    gone: str | None = None

    @property
    def driver_id(self) -> int:
        return self.profile.user_id

    def entry(self) -> dict[str, int | str]:
        return queue_entry(self.driver_id, self.since)


def run_pass(*, now: datetime | None = None) -> list[DispatchDecision]:
    """Serve the dispatchable queued trips in order; return the decisions recorded."""
    now = now or timezone.now()
    # Cheap and lock-free: a pass triggered by a commit always sees that commit, so when
    # there is nothing to serve now, later changes bring passes of their own.
    if not Trip.objects.filter(dispatchable(now)).exists():
        return []
    with transaction.atomic():
        lock_dispatcher()
        # After the dispatcher's own lock, as bookings take it after the timetable's.
        days = _days_of_dispatchable(now)
        capacity.lock_days(days)
        trips = list(
            Trip.objects.filter(dispatchable(now))
            .select_for_update(of=("self",), skip_locked=True)
            # Everything the assignment's message to the driver shows, in this one query.
            .select_related("appointment__client", "appointment__therapist", "appointment__service")
            .order_by("window_start", "created_at", "id")
        )
        if not trips:
            return []
        queue = _lock_queue(list(driver_queue()))
        _lock_timetables([c.driver_id for c in queue if c.gone is None])
        busy = _busy_windows([c.driver_id for c in queue], since=trips[0].window_start)
        previous = last_decisions([t.pk for t in trips])
        fleet = _Groups(capacity.load_fleet(days, now=now))
        writes = Assignments()
        decisions = []
        for trip in trips:
            decision = _decide(trip, queue, busy, fleet, now=now, writes=writes)
            if decision.driver_id is not None:
                fleet.given(trip.pk, decision.driver_id)
            if decision.outcome == DispatchOutcome.NO_DRIVER and _same(
                decision, previous.get(trip.pk)
            ):
                continue  # nothing changed since the last look: no new line, no new alert
            decisions.append(decision)
            if decision.outcome == DispatchOutcome.NO_DRIVER:
                writes.events.add(
                    TRIP_WAITING,
                    {**events.trip_data(trip), "skipped": decision.skipped},
                    trip=trip,
                )
        DispatchDecision.objects.bulk_create(decisions)
        writes.flush()
    return decisions


class _Groups:
    """The drivers' day as the pass asks it `needed_later`: one `capacity.Fleet` per group
    of waiting trips chained by overlapping windows, and for each group its spare drivers.

    Whether giving a trip to a driver strands another can only depend on the trips of its
    own group (`Fleet.strands` says so), and giving a driver a trip changes nothing for
    the other groups (no trip of theirs overlaps it, so the driver can take exactly what
    they could before). Asked of the whole day instead, every assignment that upset the
    day's solved assignment made the next question solve every group again for every
    driver: a pass over hundreds of trips spent nearly all its time there
    (`python -m bench.worker.profile`).

    A group's spare drivers are those free for the whole of it (one free piece covers
    from its first start to its last end) whose vehicle carries any of its trips, less
    every driver given one of its trips in this pass. Each of them can take any one of its
    trips, so when there are at least as many spare drivers besides the one asked about
    as other trips waiting in the group, each of those trips can have a driver of its own
    whatever this driver does: nothing is stranded, and the answer needs no search. It is
    the answer `Fleet.strands` gives (tests/services/test_dispatch.py compares them)."""

    def __init__(self, fleet: capacity.Fleet) -> None:
        self.of_trip: dict[Hashable, capacity.Fleet] = {}
        self.spare_of: dict[Hashable, set[int]] = {}
        for group in components(fleet.waiting):
            part = capacity.Fleet(fleet.drivers, group)
            span = Interval(group[0].window.start, max(t.window.end for t in group))
            passengers = max(t.passengers for t in group)
            spare = {
                d.id
                for d in fleet.drivers
                if d.fits(passengers) and any(p.contains(span) for p in d.free)
            }
            for t in group:
                self.of_trip[t.key] = part
                self.spare_of[t.key] = spare

    def strands(self, trip_id: int, driver_id: int) -> bool:
        part = self.of_trip.get(trip_id)
        if part is None:
            return False  # not waiting in the fleet's days (its window is over)
        spare = self.spare_of[trip_id]
        others = len(part.waiting) - 1
        if len(spare) - (driver_id in spare) >= others:
            return False
        return part.strands(trip_id, driver_id)

    def given(self, trip_id: int, driver_id: int) -> None:
        part = self.of_trip.pop(trip_id, None)
        if part is None:
            return
        # Less free now within the group: no longer sure to take any of its trips.
        self.spare_of.pop(trip_id).discard(driver_id)
        after = part.given(trip_id, driver_id)
        self.of_trip.update((t.key, after) for t in after.waiting)


def _decide(
    trip: Trip,
    queue: list[Candidate],
    busy: dict[int, list[tuple[datetime, datetime]]],
    fleet: _Groups,
    *,
    now: datetime,
    writes: Assignments,
) -> DispatchDecision:
    """Give `trip` to the first eligible driver of `queue` (who then leaves it).

    First in, first out, except that a driver whose taking this trip would leave another
    booked trip with no driver who can take it is passed over (`needed_later`), so long
    as someone behind them can take it; when nobody else can, the trip under way now
    goes to the first of them after all (the later trip waits for a driver to come on).

    The decision records the queue as far as it was read: the drivers ahead of the one
    chosen and that one (all of them when nobody was), and how long it was. Those behind
    had no say, and writing them into every decision would make a pass quadratic."""
    stood = []
    skipped = []
    needed_later: list[Candidate] = []
    chosen = None
    for candidate in queue:
        stood.append(candidate.entry())
        reason = _unfit(candidate, trip, busy)
        if reason is None and fleet.strands(trip.pk, candidate.driver_id):
            reason = SkipReason.NEEDED_LATER
            needed_later.append(candidate)
        if reason is None:
            reason = _assign(trip, candidate, now=now, writes=writes)
        if reason is not None:
            skipped.append({"driver": candidate.driver_id, "reason": str(reason)})
            continue
        chosen = candidate
        break
    if chosen is None:
        for candidate in needed_later:
            if _assign(trip, candidate, now=now, writes=writes) is None:
                chosen = candidate
                # Not passed over after all: `skipped` lists only those who were.
                skipped = [s for s in skipped if s["driver"] != chosen.driver_id]
                break
    if chosen is not None:
        decision = DispatchDecision(
            trip=trip,
            outcome=DispatchOutcome.ASSIGNED,
            driver_id=chosen.driver_id,
            queue=stood,
            queue_length=len(queue),
            skipped=skipped,
            decided_at=now,
        )
        queue.remove(chosen)
        return decision
    return DispatchDecision(
        trip=trip,
        outcome=DispatchOutcome.NO_DRIVER,
        queue=stood,
        queue_length=len(queue),
        skipped=skipped,
        decided_at=now,
    )


def _unfit(
    candidate: Candidate, trip: Trip, busy: dict[int, list[tuple[datetime, datetime]]]
) -> str | None:
    """Why this driver cannot take this trip at all (None: they can)."""
    if candidate.gone is not None:
        return candidate.gone
    if not fits(candidate.profile, trip):
        return SkipReason.VEHICLE
    if any(
        start < trip.window_end and trip.window_start < end
        for start, end in busy.get(candidate.driver_id, ())
    ):
        return SkipReason.BUSY
    return None


def _assign(trip: Trip, candidate: Candidate, *, now: datetime, writes: Assignments) -> str | None:
    """Give the trip; None when done, else why the database refused."""
    try:
        # The busy windows were the friendly check; the constraint decides.
        assign_locked(
            trip=trip,
            profile=candidate.profile,
            now=now,
            writes=writes,
            precheck=False,
            timetable_locked=True,
        )
    except Conflict:
        # A trip of theirs that the read missed; the constraint refused.
        return SkipReason.BUSY
    return None


def _days_of_dispatchable(now: datetime) -> list[date]:
    """The local days of the trips a pass may serve, and of now."""
    windows = Trip.objects.filter(dispatchable(now)).values_list("window_start", "window_end")
    days = {local_date(now)}
    for start, end in windows:
        days.update(capacity.days_of(Interval(start, end)))
    return sorted(days)


def lock_dispatcher() -> None:
    """One pass at a time (and the desk's manual dispatch between passes), until this
    transaction ends. SQLite needs nothing: IMMEDIATE transactions already serialise
    every writer."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [DISPATCHER_LOCK])


def _lock_queue(snapshot: list[DriverProfile]) -> list[Candidate]:
    """Lock the queued drivers' rows (in id order, like every other multi-driver writer,
    so there is no deadlock) and mark those who left the queue since it was read: they
    stay in the recorded queue, skipped with the reason."""
    ids = [p.user_id for p in snapshot]
    current = {
        p.user_id: p
        for p in DriverProfile.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(user_id__in=ids)
        .order_by("user_id")
    }
    candidates = []
    for queued in snapshot:
        # The snapshot is `driver_queue()`, which holds only drivers waiting since a time.
        assert queued.available_since is not None
        fresh = current[queued.user_id]
        gone = None
        if not fresh.on_shift:
            gone = SkipReason.OFF_SHIFT
        elif fresh.available_since is None:
            gone = SkipReason.BUSY
        elif fresh.available_since != queued.available_since:
            # Off shift and on again since: at the back of the queue now, not here.
            gone = SkipReason.OFF_SHIFT
        candidates.append(Candidate(profile=fresh, since=queued.available_since, gone=gone))
    return candidates


def _lock_timetables(driver_ids: list[int]) -> None:
    """The timetable lock of every driver who may be given a trip (`common.lock_timetable`'s
    lock, which `assign_locked` would take one assignment at a time), in one statement and
    in id order, after their rows: one round trip instead of one per assignment."""
    if connection.vendor != "postgresql" or not driver_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, id::int)) FROM unnest(%s::bigint[]) AS id",
            [DRIVER_TIMETABLE, sorted(driver_ids)],
        )


def _busy_windows(
    driver_ids: list[int], *, since: datetime
) -> dict[int, list[tuple[datetime, datetime]]]:
    windows: dict[int, list[tuple[datetime, datetime]]] = {}
    rows = (
        Trip.objects.busy()
        .filter(driver_id__in=driver_ids, window_end__gt=since)
        .values_list("driver_id", "window_start", "window_end")
    )
    for driver_id, start, end in rows:
        windows.setdefault(driver_id, []).append((start, end))
    return windows


def last_decisions(trip_ids: list[int]) -> dict[int, DispatchDecision]:
    """Each trip's latest decision, in one query."""
    latest = (
        DispatchDecision.objects.filter(trip_id__in=trip_ids)
        .values("trip_id")
        .annotate(last=Max("id"))
        .values("last")
    )
    return {d.trip_id: d for d in DispatchDecision.objects.filter(pk__in=latest)}


def _same(decision: DispatchDecision, previous: DispatchDecision | None) -> bool:
    return (
        previous is not None
        and previous.outcome == decision.outcome
        and previous.queue == decision.queue
        and previous.skipped == decision.skipped
    )


# --- pickups --------------------------------------------------------------------------------


def pickup_refusal(appointment: Appointment, pickup: Trip | None) -> DomainError | None:
    """Why a pickup cannot be asked for (None: it can). `pickup` is the appointment's
    latest pickup leg. request_pickup raises it; the therapist's page asks it first, to
    offer the button only where the request would be taken."""
    if not appointment.needs_transport:
        return ValidationFailed.on("appointment", "This appointment has no transport.")
    if appointment.status not in PICKUP_STATUSES:
        label = appointment.status.replace("_", " ")
        return InvalidTransition(
            f"Cannot request a pickup for an appointment that is {label}.", appointment.status
        )
    if pickup is None or pickup.status not in states.OPEN_TRIP_STATUSES:
        current = pickup.status if pickup else TripStatus.CANCELLED
        return InvalidTransition(f"The pickup is already {current}.", current)
    return None


def request_pickup(
    *, actor: User, appointment_id: int, on_behalf: bool = False, now: datetime | None = None
) -> Trip:
    """The therapist (or the desk) asks for the pickup now: the trip is dispatched at
    once, whatever the horizon. Asking again changes nothing. `on_behalf`: the desk asks
    for the therapist, who called (the log says so)."""
    role = role_of(actor)
    if role != states.THERAPIST and role not in states.DESK:
        raise NotPermitted(f"A {role} may not request a pickup.")
    if on_behalf and role not in states.DESK:
        raise NotPermitted(f"A {role} may not request a pickup on someone's behalf.")
    now = now or timezone.now()
    with transaction.atomic():
        try:
            appointment = Appointment.objects.get(pk=appointment_id)
        except (Appointment.DoesNotExist, ValueError, TypeError):
            raise NotFound(f"There is no appointment with id {appointment_id}.") from None
        # Ownership before status, so another therapist learns nothing about this one.
        if role == states.THERAPIST and appointment.therapist_id != actor.pk:
            raise NotPermitted("Only the appointment's own therapist may do that.")
        trip: Trip | None = (
            Trip.objects.select_for_update()
            # A visit's session: the visit's shared pick-up (services/visits.py).
            .filter(
                Q(visit_id=appointment.visit_id)
                if appointment.visit_id is not None
                else Q(appointment=appointment),
                leg=Leg.PICKUP,
            )
            .order_by("-id")
            .first()
        )
        refusal = pickup_refusal(appointment, trip)
        if refusal is not None:
            raise refusal
        # pickup_refusal refuses an appointment that has no pickup.
        assert trip is not None
        if trip.requested_at is not None:
            return trip
        trip.requested_at = now
        trip.save(update_fields=["requested_at", "updated_at"])
        # Not a status change, but who asked and when belongs in the trip's history.
        Transition.objects.create(
            trip=trip,
            action="request_pickup",
            from_status=trip.status,
            to_status=trip.status,
            actor=actor,
            on_behalf_of_id=appointment.therapist_id if on_behalf else None,
        )
        batch = EventBatch()
        batch.trip(events.TRIP_UPDATED, trip, therapist_id=appointment.therapist_id)
        batch.flush()
        if trip.status == TripStatus.QUEUED:
            background.after_commit(background.DISPATCH)
    return trip
