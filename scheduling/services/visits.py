"""Couples and group visits (issue 14 item 1): two to four sessions at one address at the
same start, booked all or nothing, and cancelled together.

Each session is an appointment of its own (`Appointment.visit`, `visit.sessions`), with
its therapist, service, end and status: each therapist accepts or rejects their own
session through the ordinary actions, and a rejected one can be given to another
therapist (`services/reassign.py`) without touching the others. With transport the visit
has one drop-off and one pick-up (`Trip.visit`) carrying every therapist
(`Trip.passengers`), so the capacity check asks for a car with the seats; the pick-up
leaves when the last session and its buffer are over, and every therapist is held (their
busy range) until it is back at base. How a single session's cancel resizes the trips is
in `services/visit_trips.py`. A session cannot be moved on its own (`part_of_visit`):
the visit is cancelled and booked again.

Every session meets the checks of a single booking (`services/appointments.py`'s own
functions: the service, the therapist performing it, working time, the exclusion
constraint), and "any free therapist" is `choose_therapist`, the one fairness rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling import background, states
from scheduling.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    SessionFailure,
    ValidationFailed,
    VisitConflict,
)
from scheduling.models import (
    Appointment,
    Client,
    Service,
    TherapistChoice,
    Transition,
    Trip,
    User,
    Visit,
)
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch
from scheduling.services import capacity
from scheduling.services import trips as trip_services
from scheduling.services.appointments import (
    _bookable_service,
    _change_status,
    _check_no_overlap,
    _check_start,
    _check_working,
    _deadline,
    _get,
    _log,
    _overlap_conflict,
    _place,
    _therapist_for,
)
from scheduling.services.choosing import RULE, Choice, _nobody_free, choose_therapist
from scheduling.services.common import THERAPIST_TIMETABLE, lock_timetable, require_aware, role_of
from scheduling.services.notifications import outbox
from scheduling.services.travel import Travel, travel_for
from scheduling.states import (
    ACTIVE_APPOINTMENT_STATUSES,
    APPOINTMENT_RULES,
    NEW,
    AppointmentStatus,
)

__all__ = ["MAX_SESSIONS", "MIN_SESSIONS", "SessionAsk", "VisitConflict", "book_visit"]

MIN_SESSIONS, MAX_SESSIONS = 2, 4
T = TypeVar("T")
# Reasons a chosen therapist is tried again without: their own time (the visit holds them
# until the shared pick-up, longer than a single booking would), or a race lost.
CHOOSE_AGAIN = frozenset({"therapist_busy", "not_working"})


@dataclass(frozen=True)
class SessionAsk:
    """One session asked for: the service, and the therapist (None: any free one)."""

    service_id: int
    therapist_id: int | None = None


@dataclass
class _Session:
    index: int
    service: Service
    named: User | None
    therapist: User | None = None
    choice: Choice | None = None


class _ChooseAgain(Exception):
    """A chosen therapist turned out busy for the visit: roll back, choose without them."""

    def __init__(self, passed: list[tuple[int, int]], failures: list[SessionFailure]) -> None:
        super().__init__()
        self.passed = passed
        self.failures = failures


def book_visit(
    *,
    actor: User,
    client_id: int,
    start: datetime,
    sessions: Sequence[SessionAsk],
    needs_transport: bool,
    address: str = "",
    notes: str = "",
    area_id: int | None = None,
    now: datetime | None = None,
) -> Visit:
    """Book every session of a visit at `start`, in one transaction, or none of them.

    Every session is tried, so the desk sees every clash at once; VisitConflict names
    each failing session (`therapist_busy`, `not_working`, `no_therapist`, `no_driver`)
    and nothing is written. Input that can never succeed (an unknown service, a therapist
    who does not perform it, one therapist twice, fewer than 2 or more than 4 sessions)
    is a ValidationFailed naming `sessions[i].service` or `sessions[i].therapist`."""
    states.check(APPOINTMENT_RULES, "create", current=NEW, role=role_of(actor), noun="appointment")
    now = now or timezone.now()
    require_aware(start, "start")
    asked = _sessions(sessions)
    client = _get(Client, client_id, "client")
    travel = travel_for(client=client, area_id=area_id)
    _check_start(start, now, travel)
    passed: dict[int, set[int]] = {s.index: set() for s in asked}
    failures: list[SessionFailure] = []
    # Each round passes over at least one more therapist, so this ends; the bound only
    # caps the work a visit nobody can take costs.
    for _ in range(8):
        unchosen = _choose(asked, passed, client, start, area_id, now)
        try:
            with transaction.atomic():
                return _book(
                    asked,
                    unchosen,
                    actor=actor,
                    client=client,
                    start=start,
                    travel=travel,
                    needs_transport=needs_transport,
                    address=address,
                    notes=notes,
                    now=now,
                )
        except _ChooseAgain as again:
            for index, therapist_id in again.passed:
                passed[index].add(therapist_id)
            failures = again.failures
    raise VisitConflict(failures, sessions=len(asked))


def _sessions(sessions: Sequence[SessionAsk]) -> list[_Session]:
    if not MIN_SESSIONS <= len(sessions) <= MAX_SESSIONS:
        raise ValidationFailed.on(
            "sessions",
            f"A visit has {MIN_SESSIONS} to {MAX_SESSIONS} sessions (this one has "
            f"{len(sessions)}).",
        )
    asked: list[_Session] = []
    named: dict[int, int] = {}
    for index, ask in enumerate(sessions):
        service = _field(index, "service", partial(_bookable_service, ask.service_id))
        therapist = None
        if ask.therapist_id is not None:
            therapist = _field(
                index, "therapist", partial(_therapist_for, ask.therapist_id, service)
            )
            if therapist.pk in named:
                raise ValidationFailed.on(
                    f"sessions[{index}].therapist",
                    f"{therapist} already has session {named[therapist.pk] + 1}: a visit "
                    "needs a different therapist for each session.",
                )
            named[therapist.pk] = index
        asked.append(_Session(index=index, service=service, named=therapist))
    return asked


def _field(index: int, name: str, check: Callable[[], T]) -> T:
    """`check()`, its ValidationFailed named for the session's field."""
    try:
        return check()
    except ValidationFailed as exc:
        raise ValidationFailed.on(f"sessions[{index}].{name}", exc.message) from None


def _choose(
    asked: list[_Session],
    passed: dict[int, set[int]],
    client: Client,
    start: datetime,
    area_id: int | None,
    now: datetime,
) -> list[SessionFailure]:
    """Give each session its therapist: the named one, or the one the fairness rule picks
    among those not in the visit yet. Sessions nobody can take come back as failures."""
    taken = {s.named.pk for s in asked if s.named is not None}
    unchosen = []
    for session in asked:
        session.therapist, session.choice = session.named, None
        if session.named is not None:
            continue
        # Transport is the visit's one question (a car for everyone), asked when booking.
        choice = choose_therapist(
            service=session.service,
            start=start,
            client=client,
            area_id=area_id,
            exclude=frozenset(taken | passed[session.index]),
            now=now,
        )
        if choice.therapist is None:
            refusal = _nobody_free(choice, start)
            unchosen.append(_failure(session, refusal.reason, refusal.message))
            continue
        session.therapist, session.choice = choice.therapist, choice
        taken.add(choice.therapist.pk)
    return unchosen


def _failure(session: _Session, reason: str, message: str) -> SessionFailure:
    return SessionFailure(
        session=session.index,
        service=session.service.pk,
        therapist=session.therapist.pk if session.therapist else None,
        reason=reason,
        message=message,
    )


def _book(
    asked: list[_Session],
    unchosen: list[SessionFailure],
    *,
    actor: User,
    client: Client,
    start: datetime,
    travel: Travel,
    needs_transport: bool,
    address: str,
    notes: str,
    now: datetime,
) -> Visit:
    # Timetables in id order, then capacity: the order every booking writer takes them in.
    for therapist_id in sorted({s.therapist.pk for s in asked if s.therapist is not None}):
        lock_timetable(THERAPIST_TIMETABLE, therapist_id)
    # The shared pick-up leaves when the last session and its buffer are over.
    back = start + max(s.service.duration + s.service.buffer for s in asked)
    legs = (
        capacity.legs_for(
            start, back, buffer=timedelta(0), travel=travel.time, passengers=len(asked)
        )
        if needs_transport
        else []
    )
    held_until = legs[-1].window.end if legs else None
    visit = Visit.objects.create(
        client=client,
        start=start,
        address=address or client.address,
        notes=notes,
        needs_transport=needs_transport,
        area=travel.area,
        travel_minutes=travel.minutes,
        created_by=actor,
    )
    failures = list(unchosen)
    passed: list[tuple[int, int]] = []
    booked: list[tuple[_Session, Appointment]] = []
    for session in asked:
        therapist = session.therapist
        if therapist is None:
            continue
        appointment = Appointment(
            client=client,
            service=session.service,
            therapist=therapist,
            address=visit.address,
            notes=notes,
            needs_transport=needs_transport,
            price=session.service.price,
            created_by=actor,
            response_deadline=_deadline(start, now),
            visit=visit,
        )
        _place(appointment, start, travel, held_until=held_until)
        try:
            _save_session(appointment)
        except Conflict as exc:
            failures.append(_failure(session, exc.reason, exc.message))
            if session.named is None and exc.reason in CHOOSE_AGAIN:
                passed.append((session.index, therapist.pk))
            continue
        booked.append((session, appointment))
    if legs:
        try:
            capacity.check_carriable(legs, now=now)
        except Conflict as exc:
            failures += [_failure(s, exc.reason, exc.message) for s in asked]
    if passed:
        raise _ChooseAgain(passed, failures)
    if failures:
        raise VisitConflict(sorted(failures, key=lambda f: f.session), sessions=len(asked))
    _write_rest(visit, booked, legs, actor=actor, now=now)
    return visit


def _save_session(appointment: Appointment) -> None:
    """The checks of a single booking, then the row (in a savepoint, so one refused
    session leaves the others' rows for the rest of the checks)."""
    try:
        with transaction.atomic():
            _check_working(appointment)
            # The timetable is locked: the pre-check's answer stands, and names the clash
            # for every session rather than the first the constraint meets.
            _check_no_overlap(appointment)
            appointment.save()
    except IntegrityError as exc:
        raise _overlap_conflict(exc, appointment) from None


def _write_rest(
    visit: Visit,
    booked: list[tuple[_Session, Appointment]],
    legs: list[capacity.NewLeg],
    *,
    actor: User,
    now: datetime,
) -> None:
    lead = booked[0][1]
    trips = Trip.objects.bulk_create(
        Trip(
            appointment=lead,
            visit=visit,
            leg=leg.leg,
            window_start=leg.window.start,
            window_end=leg.window.end,
            passengers=leg.passengers,
        )
        for leg in legs
    )
    if trips:
        Transition.objects.bulk_create(
            Transition(trip=t, action="create", from_status=NEW, to_status=t.status) for t in trips
        )
        background.after_commit(background.DISPATCH)
    batch = EventBatch()
    for session, appointment in booked:
        transition = _log(appointment, "create", NEW, appointment.status, actor)
        if session.choice is not None:
            TherapistChoice.objects.create(
                appointment=appointment,
                therapist=appointment.therapist,
                decided_by=actor,
                rule=RULE,
                candidates=[c.as_json() for c in session.choice.candidates],
                decided_at=now,
            )
        outbox.appointment_changed(appointment, transition)
        batch.appointment(
            events.APPOINTMENT_CREATED, appointment, trips if appointment is lead else []
        )
    batch.flush()


def cancel_visit(
    *, actor: User, visit_id: int, reason: str = "", now: datetime | None = None
) -> Visit:
    """Cancel every session still pending or confirmed, and the shared trips. Sessions
    already over, under way or refused keep their status (and a session under way keeps
    its pick-up)."""
    states.check_role(APPOINTMENT_RULES, "cancel", role=role_of(actor), noun="appointment")
    now = now or timezone.now()
    with transaction.atomic():
        try:
            visit: Visit = Visit.objects.select_for_update().get(pk=visit_id)
        except (Visit.DoesNotExist, ValueError, TypeError):
            raise NotFound(f"There is no visit with id {visit_id}.") from None
        sessions = list(
            Appointment.objects.select_for_update(of=("self",))
            .select_related("therapist", "service")
            .filter(visit=visit)
            .order_by("id")
        )
        rule = APPOINTMENT_RULES["cancel"]
        cancellable = [s for s in sessions if s.status in rule.sources]
        if not cancellable:
            statuses = sorted({str(s.status) for s in sessions})
            raise InvalidTransition(
                f"No session of this visit can be cancelled any more ({', '.join(statuses)}).",
                statuses[0] if statuses else AppointmentStatus.CANCELLED,
            )
        batch = EventBatch()
        still_on = [
            s for s in sessions if s.status in ACTIVE_APPOINTMENT_STATUSES and s not in cancellable
        ]
        if not still_on:
            # Nobody left to carry: the trips go first, so no session's cancel resizes them.
            for lead in {t.appointment_id: t.appointment for t in visit.trips.open()}.values():
                trip_services.cancel_open_trips(lead, batch=batch, reason="visit cancelled")
        # Each through the booking engine's own status change; with a session still under
        # way, each cancelled one gives up its seat on the trips (services/visit_trips.py).
        for session in cancellable:
            _change_status(
                session,
                rule.target,
                "cancel",
                session.status,
                actor,
                reason,
                batch,
            )
        batch.flush()
    return visit


def visit_of(visit_id: int, *, user: User) -> Visit:
    """The visit `user` may see (NotFound otherwise: the two are not told apart)."""
    try:
        visit: Visit = Visit.objects.visible_to(user).get(pk=visit_id)
    except (Visit.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no visit with id {visit_id}.") from None
    return visit
