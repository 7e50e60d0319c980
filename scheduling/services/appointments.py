"""Booking, rescheduling and every status change of an appointment."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, Model, OuterRef
from django.utils import timezone

from scheduling import states
from scheduling.domain import Interval, busy_range, is_on_step, local_date
from scheduling.errors import (
    Conflict,
    ConflictingItem,
    InvalidTransition,
    NotFound,
    NotPermitted,
    ValidationFailed,
)
from scheduling.formats import clock, moment
from scheduling.models import (
    Appointment,
    Client,
    Series,
    Service,
    TherapistProfile,
    Transition,
    Trip,
    User,
)
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch
from scheduling.services import capacity, visit_trips
from scheduling.services import trips as trip_services
from scheduling.services.common import (
    THERAPIST_TIMETABLE,
    latest_bookable,
    lock_timetable,
    minutes,
    require_aware,
    role_of,
    violates,
)
from scheduling.services.notifications import outbox
from scheduling.services.travel import Travel, travel_for, travel_of
from scheduling.services.working_time import day_schedules
from scheduling.states import APPOINTMENT_RULES, NEW, AppointmentStatus

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

M = TypeVar("M", bound=Model)

OVERLAP_CONSTRAINT = "appt_therapist_no_overlap"
# Actions taken through `act_on_appointment`; create and reschedule need more than a reason.
STATUS_ACTIONS = frozenset({"accept", "reject", "start", "complete", "cancel", "no_show", "expire"})
# Statuses after which the appointment will not happen, so its transport is not needed.
CANCELS_TRANSPORT = frozenset(
    {AppointmentStatus.REJECTED, AppointmentStatus.CANCELLED, AppointmentStatus.EXPIRED}
)


def create_appointment(
    *,
    actor: User,
    client_id: int,
    service_id: int,
    therapist_id: int,
    start: datetime,
    address: str = "",
    notes: str = "",
    needs_transport: bool = False,
    area_id: int | None = None,
    series: Series | None = None,
    answer_by: bool = True,
    now: datetime | None = None,
) -> Appointment:
    """Book `client` with `therapist` for `service` at `start` (status pending).

    `series` links an occurrence of a standing booking; `answer_by` False books it with
    no response deadline of its own (the series' first occurrence carries it).

    The therapist is held from leaving base to being back (`busy_range`), which must lie
    in their working time and meet no other booking; with transport, the drivers must be
    able to carry both legs beside every trip already booked."""
    states.check(APPOINTMENT_RULES, "create", current=NEW, role=role_of(actor), noun="appointment")
    now = now or timezone.now()
    client = _get(Client, client_id, "client")
    service = _bookable_service(service_id)
    therapist = _therapist_for(therapist_id, service)
    travel = travel_for(client=client, area_id=area_id)
    _check_start(start, now, travel)
    appointment = Appointment(
        client=client,
        service=service,
        therapist=therapist,
        address=address or client.address,
        notes=notes,
        needs_transport=needs_transport,
        price=service.price,
        created_by=actor,
        response_deadline=_deadline(start, now) if answer_by else None,
        series=series,
    )
    _place(appointment, start, travel)
    try:
        with transaction.atomic():
            # Timetable, then capacity: the one order every booking writer takes them in.
            lock_timetable(THERAPIST_TIMETABLE, therapist.pk)
            _check_working(appointment)
            if not _overlaps_refused_by_database():
                _check_no_overlap(appointment)
            appointment.save()
            if needs_transport:
                capacity.check_carriable(_legs(appointment), now=now)
            transition = _log(appointment, "create", NEW, appointment.status, actor)
            trips = trip_services.create_trips_for(appointment) if needs_transport else []
            outbox.appointment_changed(appointment, transition)
            batch = EventBatch()
            batch.appointment(events.APPOINTMENT_CREATED, appointment, trips)
            batch.flush()
    except IntegrityError as exc:
        # The whole booking is rolled back; say what it met, as the pre-check would.
        raise _overlap_conflict(exc, appointment) from None
    return appointment


def replan(
    appointment: Appointment, *, start: datetime, now: datetime, why: str
) -> tuple[EventBatch, list[Trip]]:
    """Put a booking already held (its therapist's timetable and its row locked) at
    `start` with its current therapist: the checks a booking passes, status back to
    pending with a fresh deadline, its trips cancelled (`why`) and planned anew.
    Reschedule and reassign both move bookings through here.

    A visit's session stays at the visit's start, held until the shared pick-up, and
    keeps its seat on the shared trips (services/visit_trips.py): they are not touched."""
    if appointment.visit_id is not None and start != appointment.start:
        raise part_of_visit(appointment)
    travel = travel_of(appointment)
    _check_start(start, now, travel)
    _place(appointment, start, travel, held_until=visit_trips.pickup_end(appointment))
    appointment.status = AppointmentStatus.PENDING
    appointment.response_deadline = _deadline(start, now)
    _check_free(appointment)
    _save_guarded(appointment)
    if appointment.visit_id is not None:
        return EventBatch(), list(appointment.trips.order_by("window_start", "id"))
    if appointment.needs_transport:
        capacity.check_carriable(_legs(appointment), now=now, excluding_appointment=appointment.pk)
    batch = EventBatch()
    trips: list[Trip] = []
    if appointment.needs_transport:
        trip_services.cancel_open_trips(appointment, batch=batch, reason=why)
        trips = trip_services.create_trips_for(appointment)
    return batch, trips


def reschedule_appointment(
    *,
    actor: User,
    appointment_id: int,
    start: datetime,
    reason: str = "",
    now: datetime | None = None,
) -> Appointment:
    """Move an appointment to `start`: same checks as booking, same id and history.

    The therapist has to accept the new time, and transport is planned anew. The travel
    it was booked with stays (an area's later change moves nothing booked); one booked
    before travel was counted (travel 0) is given the travel a new booking would get.
    """
    now = now or timezone.now()
    therapist_id = _locked(appointment_id, lock=False).therapist_id
    with transaction.atomic():
        # Timetable first, then the row: the same order as booking takes them.
        lock_timetable(THERAPIST_TIMETABLE, therapist_id)
        appointment = _locked(appointment_id)
        previous = appointment.status
        states.check(
            APPOINTMENT_RULES,
            "reschedule",
            current=previous,
            role=role_of(actor),
            noun="appointment",
        )
        if appointment.visit_id is not None:
            raise part_of_visit(appointment)
        batch, trips = replan(appointment, start=start, now=now, why="rescheduled")
        transition = _log(appointment, "reschedule", previous, appointment.status, actor, reason)
        outbox.appointment_changed(appointment, transition)
        batch.appointment(events.APPOINTMENT_UPDATED, appointment, trips)
        batch.flush()
    return appointment


def part_of_visit(appointment: Appointment) -> Conflict:
    """A visit's session moves only with its visit (cancel the visit, book it again)."""
    return Conflict(
        f"Appointment #{appointment.pk} is a session of visit #{appointment.visit_id}: "
        "move the whole visit (cancel it and book it again at the new time).",
        reason="part_of_visit",
    )


def _place(
    appointment: Appointment,
    start: datetime,
    travel: Travel,
    *,
    held_until: datetime | None = None,
) -> None:
    """Set the times an appointment at `start` holds, travel there and back included.

    `held_until`: a visit's session waits for the shared pick-up (services/visits.py), so
    its therapist is held until that is back, if later than their own return."""
    service = appointment.service
    appointment.start = start
    appointment.end = start + service.duration
    appointment.blocked_until = appointment.end + service.buffer
    appointment.area = travel.area
    appointment.travel_minutes = travel.minutes
    held = busy_range(start, duration=service.duration, buffer=service.buffer, travel=travel.time)
    appointment.busy_from, appointment.busy_until = held.start, held.end
    if held_until is not None and held_until > held.end:
        appointment.busy_until = held_until


def _legs(appointment: Appointment) -> list[capacity.NewLeg]:
    return capacity.legs_for(
        appointment.start,
        appointment.end,
        buffer=appointment.service.buffer,
        travel=timedelta(minutes=appointment.travel_minutes),
    )


def act_on_appointment(
    *,
    actor: User | None,
    appointment_id: int,
    action: str,
    reason: str = "",
    on_behalf: bool = False,
    now: datetime | None = None,
) -> Appointment:
    """Take a status action (accept, reject, start, complete, cancel, no_show, expire).

    `actor` None is the platform itself (the deadline sweep). `on_behalf`: the desk
    takes the therapist's action for them (confirmed by phone); the log keeps both."""
    if action not in STATUS_ACTIONS:
        raise ValidationFailed.on("action", f"Unknown appointment action '{action}'.")
    now = now or timezone.now()
    role = role_of(actor)
    states.check_role(APPOINTMENT_RULES, action, role=role, noun="appointment", on_behalf=on_behalf)
    with transaction.atomic():
        appointment = _locked(appointment_id)
        previous = appointment.status
        # Ownership before status, so another therapist learns nothing about this one.
        _require_own(actor, appointment)
        rule = states.check(
            APPOINTMENT_RULES,
            action,
            current=previous,
            role=role,
            noun="appointment",
            on_behalf=on_behalf,
        )
        behalf = appointment.therapist if on_behalf else None
        if action == "expire" and answer_deadline(appointment) > now:
            raise InvalidTransition(
                "This appointment's response deadline has not passed.", previous
            )
        batch = EventBatch()
        _change_status(appointment, rule.target, action, previous, actor, reason, batch, behalf)
        if action in SERIES_ANSWERS and appointment.series_id and appointment.response_deadline:
            # The therapist answers a series once, on the occurrence holding its deadline:
            # the answer carries to the later pending occurrences that have none (booked
            # or moved together with it, services/series.py).
            for other in _series_waiting(appointment):
                _change_status(other, rule.target, action, previous, actor, reason, batch, behalf)
        batch.flush()
    return appointment


# Answers to the series' deadline that carry to its other pending occurrences.
SERIES_ANSWERS = frozenset({"accept", "reject", "expire"})


def answer_deadline(appointment: Appointment) -> datetime:
    """When the therapist must have answered: the response deadline, or for a series'
    later occurrence (which has none) its start, should the series' answer never come."""
    return appointment.response_deadline or appointment.start


def _series_waiting(appointment: Appointment) -> list[Appointment]:
    """The series' later pending occurrences with no deadline of their own, locked."""
    return list(
        Appointment.objects.select_for_update(of=("self",))
        .select_related("therapist", "service")
        .filter(
            series_id=appointment.series_id,
            status=AppointmentStatus.PENDING,
            response_deadline__isnull=True,
            start__gt=appointment.start,
        )
        .order_by("start", "id")
    )


def _change_status(
    appointment: Appointment,
    target: str,
    action: str,
    previous: str,
    actor: User | None,
    reason: str,
    batch: EventBatch,
    on_behalf_of: User | None = None,
) -> None:
    appointment.status = target
    appointment.save(update_fields=["status", "updated_at"])
    if target in CANCELS_TRANSPORT and appointment.visit_id is not None:
        # A visit's shared trips: a cancelled session gives up its seat, a refused one
        # keeps it for its reassignment (services/visit_trips.py).
        visit_trips.session_left(appointment, actor=actor, batch=batch)
    elif target in CANCELS_TRANSPORT:
        trip_services.cancel_open_trips(appointment, batch=batch, reason=f"appointment {target}")
    transition = _log(appointment, action, previous, target, actor, reason, on_behalf_of)
    outbox.appointment_changed(appointment, transition)
    batch.appointment(
        events.APPOINTMENT_UPDATED,
        appointment,
        list(appointment.trips.order_by("window_start", "id")),
    )


DETAIL_FIELDS = ("address", "notes")


def update_appointment_details(
    *, actor: User, appointment_id: int, changes: dict[str, str]
) -> Appointment:
    """Change an appointment's address or notes (nothing that moves time or money)."""
    unknown = set(changes) - set(DETAIL_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Only {' and '.join(DETAIL_FIELDS)} can be changed here.",
            {field: ["This field cannot be changed."] for field in sorted(unknown)},
        )
    if not (actor.is_desk or role_of(actor) == states.THERAPIST):
        raise NotPermitted(f"A {role_of(actor)} may not change appointments.")
    return _change_fields(actor, appointment_id, changes)


def _change_fields(actor: User, appointment_id: int, changes: dict[str, str]) -> Appointment:
    # A stream event like every other change: dashboards, and the API's cached pages
    # (scheduling/api/pagecache.py), learn of it when it commits.
    with transaction.atomic():
        appointment = _locked(appointment_id)
        _require_own(actor, appointment)
        for field, value in changes.items():
            setattr(appointment, field, value)
        appointment.save(update_fields=[*changes, "updated_at"])
        batch = EventBatch()
        batch.appointment(
            events.APPOINTMENT_UPDATED,
            appointment,
            list(appointment.trips.order_by("window_start", "id")),
        )
        batch.flush()
    return appointment


def expire_overdue(*, now: datetime | None = None) -> list[int]:
    """Expire every pending appointment whose deadline has passed; return their ids.

    Each is its own transaction, so one appointment accepted at the last moment (and so
    no longer pending when its row lock is taken) does not stop the rest.
    """
    now = now or timezone.now()
    pending = Appointment.objects.filter(status=AppointmentStatus.PENDING)
    overdue = list(
        pending.filter(response_deadline__lte=now)
        .order_by("response_deadline")
        .values_list("pk", flat=True)
    )
    # A series' later occurrence has no deadline of its own: its series' answer settles
    # it, and one still unanswered at its start expires then.
    overdue += pending.filter(response_deadline__isnull=True, start__lte=now).values_list(
        "pk", flat=True
    )
    expired = []
    for appointment_id in overdue:
        try:
            act_on_appointment(actor=None, appointment_id=appointment_id, action="expire", now=now)
        except InvalidTransition:
            continue
        expired.append(appointment_id)
    return expired


# --- checks -----------------------------------------------------------------------------


def _get(model: type[M], pk: int, field: str) -> M:
    try:
        return model._default_manager.get(pk=pk)
    except (ObjectDoesNotExist, ValueError, TypeError):
        raise ValidationFailed.on(field, f"There is no {field} with id {pk}.") from None


def _bookable_service(service_id: int) -> Service:
    service = _get(Service, service_id, "service")
    if not service.active:
        raise ValidationFailed.on("service", f"{service.name} is no longer offered.")
    return service


class _Performs(TypedDict):
    performs: bool


def _therapist_for(therapist_id: int, service: Service) -> User:
    performs = TherapistProfile.services.through.objects.filter(
        therapistprofile__user=OuterRef("pk"), service=service
    )
    therapist: WithAnnotations[User, _Performs] | None
    try:
        therapist = (
            User.objects.therapists()
            .filter(pk=therapist_id)
            .annotate(performs=Exists(performs))
            .first()
        )
    except (ValueError, TypeError):
        therapist = None
    if therapist is None:
        raise ValidationFailed.on("therapist", f"There is no therapist with id {therapist_id}.")
    if not therapist.performs:
        raise ValidationFailed.on("therapist", f"{therapist} does not perform {service.name}.")
    return therapist


def _check_start(start: datetime, now: datetime, travel: Travel) -> None:
    require_aware(start, "start")
    step = minutes("SLOT_STEP_MINUTES")
    if start < now:
        raise ValidationFailed.on("start", "That time has already passed.")
    leave = start - travel.time
    if leave < now:
        raise ValidationFailed.on(
            "start",
            f"That is too soon: getting there takes {travel.minutes} minutes, so the "
            f"therapist would have had to leave at {clock(leave)}.",
        )
    if start > latest_bookable(now):
        raise ValidationFailed.on("start", "That is too far ahead to book; check the year.")
    if not is_on_step(start, step):
        raise ValidationFailed.on(
            "start",
            f"Start times are every {int(step.total_seconds() // 60)} minutes "
            "(for example 10:00, 10:15).",
        )


def _deadline(start: datetime, now: datetime) -> datetime:
    return min(now + minutes("RESPONSE_WINDOW_MINUTES"), start)


def _check_free(appointment: Appointment) -> None:
    """The friendly pre-check; the exclusion constraint is the guarantee."""
    _check_working(appointment)
    _check_no_overlap(appointment)


def _check_working(appointment: Appointment) -> None:
    """The whole busy range, travel included, lies in the therapist's working time (no
    constraint holds this)."""
    therapist = appointment.therapist
    held = Interval(appointment.busy_from, appointment.busy_until)
    schedule = day_schedules([therapist.pk], local_date(held.start))[therapist.pk]
    reason = schedule.why_not_working(held)
    if reason:
        counting = (
            f" (counting {appointment.travel_minutes} minutes' travel each way)"
            if appointment.travel_minutes
            else ""
        )
        raise Conflict(
            f"{moment(appointment.start)} is {reason} for {therapist}{counting}.",
            reason="not_working",
        )


def _check_no_overlap(appointment: Appointment) -> None:
    conflicts = _conflicts(appointment)
    if conflicts:
        raise _busy(appointment, conflicts)


def _overlaps_refused_by_database() -> bool:
    """PostgreSQL's exclusion constraint refuses an overlapping booking as it is inserted,
    and `_overlap_conflict` then names what it met: a pre-check would only repeat, on every
    booking, a read the constraint makes anyway. SQLite has no such constraint; there the
    pre-check is the guard (IMMEDIATE transactions serialise the writers)."""
    return connection.vendor == "postgresql"


def _conflicts(appointment: Appointment) -> list[Appointment]:
    return list(
        Appointment.objects.active()
        .filter(therapist_id=appointment.therapist_id)
        .overlapping(appointment.busy_from, appointment.busy_until)
        .exclude(pk=appointment.pk)
        .order_by("start")
    )


def _busy(appointment: Appointment, conflicts: list[Appointment]) -> Conflict:
    first = conflicts[0]
    return Conflict(
        f"{appointment.therapist} is already booked from {moment(first.busy_from)} to "
        f"{clock(first.busy_until)} (appointment #{first.pk}, "
        "travel and clean-up included).",
        [
            ConflictingItem(start=c.busy_from, end=c.busy_until, appointment_id=c.pk)
            for c in conflicts
        ],
        reason="therapist_busy",
    )


def _save_guarded(appointment: Appointment) -> None:
    """Save; a concurrent booking that won the race surfaces as the same Conflict."""
    try:
        with transaction.atomic():
            appointment.save()
    except IntegrityError as exc:
        raise _overlap_conflict(exc, appointment) from None


def _overlap_conflict(exc: IntegrityError, appointment: Appointment) -> Conflict:
    """The Conflict for the exclusion constraint refusing `appointment` (read once the
    refused write is rolled back); any other integrity error is raised as it is."""
    if not violates(exc, OVERLAP_CONSTRAINT):
        raise exc
    conflicts = _conflicts(appointment)
    if conflicts:
        return _busy(appointment, conflicts)
    return Conflict(
        f"{appointment.therapist} was just booked at that time.", reason="therapist_busy"
    )


def _locked(appointment_id: int, *, lock: bool = True) -> Appointment:
    rows = Appointment.objects.select_related("therapist", "service")
    if lock:
        rows = rows.select_for_update(of=("self",))
    try:
        appointment: Appointment = rows.get(pk=appointment_id)
    except (Appointment.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no appointment with id {appointment_id}.") from None
    return appointment


def _require_own(actor: User | None, appointment: Appointment) -> None:
    """A therapist acts only on their own appointments (other roles: see the rules)."""
    # A therapist is always a person: role_of(None) is the platform.
    if (
        actor is not None
        and role_of(actor) == states.THERAPIST
        and appointment.therapist_id != actor.pk
    ):
        raise NotPermitted("Only the appointment's own therapist may do that.")


def _log(
    appointment: Appointment,
    action: str,
    source: str,
    target: str,
    actor: User | None,
    reason: str = "",
    on_behalf_of: User | None = None,
) -> Transition:
    return Transition.objects.create(
        appointment=appointment,
        action=action,
        from_status=source,
        to_status=target,
        actor=actor,
        on_behalf_of=on_behalf_of,
        reason=reason,
    )
