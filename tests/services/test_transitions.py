"""Every allowed and every forbidden status change, by role, through the services.

Expected outcomes come from the business rules written out in `tests.domain.test_states`, never
from `scheduling.states`, so a wrong table fails here. A success writes the new status,
exactly one Transition row and the stream event; a refusal writes nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db.models import Max
from django.utils import timezone

from scheduling.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    NotPermitted,
    ValidationFailed,
)
from scheduling.models import (
    Appointment,
    DriverProfile,
    StreamEvent,
    StreamEventRecipient,
    Transition,
    Trip,
    User,
)
from scheduling.services.appointments import (
    act_on_appointment,
    create_appointment,
    expire_overdue,
    reschedule_appointment,
)
from scheduling.services.trips import act_on_trip, assign_trip, set_shift
from tests import factories
from tests.business_rules import (
    APPOINTMENT_EXPECTED,
    APPOINTMENT_STATUSES,
    ROLES,
    TRIP_EXPECTED,
    TRIP_STATUSES,
)

pytestmark = pytest.mark.django_db

STATUS_ACTIONS = ("accept", "reject", "start", "complete", "cancel", "no_show", "expire")
TRIP_ACTIONS = ("depart", "arrive", "complete", "cancel")
# Where the appointment's own therapist may act (another therapist may not).
THERAPIST_MOVES = sorted(
    (action, source)
    for action, (sources, _, roles) in APPOINTMENT_EXPECTED.items()
    if "therapist" in roles
    for source in sources
)
DRIVER_MOVES = sorted(
    (action, source)
    for action, (sources, _, roles) in TRIP_EXPECTED.items()
    if "driver" in roles
    for source in sources
)


def expected(
    matrix: dict[str, tuple[set[str], str, set[str]]], action: str, source: str, role: str
) -> str | type[DomainError]:
    """The new status, or the error: a forbidden role is refused before a wrong status."""
    sources, target, roles = matrix[action]
    if role not in roles:
        return NotPermitted
    if source not in sources:
        return InvalidTransition
    return target


# --- building blocks ---------------------------------------------------------------------


@pytest.fixture
def book(desk, service, therapist, client_record, tomorrow_at):
    """A fresh pending appointment, booked by the desk through the service (with
    transport, once some driver works then: capacity is checked at booking)."""

    def _book(*, needs_transport: bool = False, hour: int = 10) -> Appointment:
        if needs_transport:
            factories.ensure_driver()
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=tomorrow_at(hour),
            needs_transport=needs_transport,
        )

    return _book


@pytest.fixture
def trip_in(book):
    """The drop-off trip of a fresh appointment, forced into a status (with a driver
    whenever the status is past queued). Returns (trip, its driver or None)."""

    def _trip_in(status: str) -> tuple[Trip, User | None]:
        trip = book(needs_transport=True).trips.get(leg="dropoff")
        driver = None
        if status != "queued":
            driver = factories.driver()
            Trip.objects.filter(pk=trip.pk).update(status=status, driver=driver)
            trip.refresh_from_db()
        return trip, driver

    return _trip_in


def force(appointment: Appointment, status: str) -> None:
    Appointment.objects.filter(pk=appointment.pk).update(status=status)
    appointment.refresh_from_db()


def actor_of(role: str, *, therapist: User, driver: User | None = None) -> User | None:
    """The acting user: the object's own therapist/driver where there is one."""
    if role == "system":
        return None
    if role == "therapist":
        return therapist
    if role == "driver":
        return driver or factories.driver()
    return factories.UserFactory(role=role)


@dataclass(frozen=True)
class Mark:
    """Where the append-only logs stood, and how many rows there were."""

    transition: int
    event: int
    appointments: int
    trips: int


def mark() -> Mark:
    return Mark(
        transition=Transition.objects.aggregate(m=Max("id"))["m"] or 0,
        event=StreamEvent.objects.aggregate(m=Max("seq"))["m"] or 0,
        appointments=Appointment.objects.count(),
        trips=Trip.objects.count(),
    )


def transitions_since(m: Mark) -> list[Transition]:
    return list(Transition.objects.filter(id__gt=m.transition).order_by("id"))


def events_since(m: Mark) -> list[StreamEvent]:
    return list(StreamEvent.objects.filter(seq__gt=m.event).order_by("seq"))


def trip_statuses(appointment: Appointment) -> dict[int, str]:
    return dict(Trip.objects.filter(appointment=appointment).values_list("id", "status"))


def assert_nothing_written(m: Mark) -> None:
    assert transitions_since(m) == []
    assert events_since(m) == []
    assert Appointment.objects.count() == m.appointments
    assert Trip.objects.count() == m.trips


def assert_refused(error: pytest.ExceptionInfo, outcome: type[DomainError], source: str) -> None:
    assert type(error.value) is outcome
    if outcome is InvalidTransition:
        assert error.value.current_status == source


def assert_logged(
    transition: Transition,
    *,
    action: str,
    source: str,
    target: str,
    actor: User | None,
    appointment: Appointment | None = None,
    trip: Trip | None = None,
) -> None:
    assert (transition.action, transition.from_status, transition.to_status) == (
        action,
        source,
        target,
    )
    assert transition.actor_id == (actor.pk if actor else None)
    assert transition.appointment_id == (appointment.pk if appointment else None)
    assert transition.trip_id == (trip.pk if trip else None)


# --- appointments: the full cross product ------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("source", APPOINTMENT_STATUSES)
@pytest.mark.parametrize("action", STATUS_ACTIONS)
def test_appointment_action(book, action, source, role):
    appointment = book()
    force(appointment, source)
    actor = actor_of(role, therapist=appointment.therapist)
    # After the response deadline, so that only the matrix decides whether expire is allowed.
    now = appointment.response_deadline + timedelta(minutes=1)
    outcome = expected(APPOINTMENT_EXPECTED, action, source, role)
    m = mark()

    if isinstance(outcome, str):
        result = act_on_appointment(
            actor=actor, appointment_id=appointment.pk, action=action, reason="test", now=now
        )
        assert result.status == outcome
        appointment.refresh_from_db()
        assert appointment.status == outcome
        [transition] = transitions_since(m)
        assert_logged(
            transition,
            action=action,
            source=source,
            target=outcome,
            actor=actor,
            appointment=appointment,
        )
        assert transition.reason == "test"
        [event] = events_since(m)
        assert (event.type, event.appointment_id, event.data["status"]) == (
            "appointment.updated",
            appointment.pk,
            outcome,
        )
        assert StreamEventRecipient.objects.filter(event=event, user=appointment.therapist).exists()
    else:
        with pytest.raises(DomainError) as error:
            act_on_appointment(actor=actor, appointment_id=appointment.pk, action=action, now=now)
        assert_refused(error, outcome, source)
        appointment.refresh_from_db()
        assert appointment.status == source
        assert_nothing_written(m)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("source", APPOINTMENT_STATUSES)
def test_reschedule(book, tomorrow_at, source, role):
    appointment = book()
    force(appointment, source)
    actor = actor_of(role, therapist=appointment.therapist)
    new_start = tomorrow_at(14)
    outcome = expected(APPOINTMENT_EXPECTED, "reschedule", source, role)
    m = mark()

    if isinstance(outcome, str):
        result = reschedule_appointment(
            actor=actor, appointment_id=appointment.pk, start=new_start, reason="client asked"
        )
        appointment.refresh_from_db()
        assert result.status == appointment.status == outcome == "pending"
        assert appointment.start == new_start
        assert appointment.end == new_start + timedelta(hours=1)
        assert appointment.blocked_until == appointment.end + timedelta(minutes=15)
        assert timezone.now() < appointment.response_deadline <= new_start
        [transition] = transitions_since(m)
        assert_logged(
            transition,
            action="reschedule",
            source=source,
            target="pending",
            actor=actor,
            appointment=appointment,
        )
        assert transition.reason == "client asked"
        [event] = events_since(m)
        assert (event.type, event.appointment_id, event.data["status"]) == (
            "appointment.updated",
            appointment.pk,
            "pending",
        )
    else:
        old_start = appointment.start
        with pytest.raises(DomainError) as error:
            reschedule_appointment(actor=actor, appointment_id=appointment.pk, start=new_start)
        assert_refused(error, outcome, source)
        appointment.refresh_from_db()
        assert (appointment.status, appointment.start) == (source, old_start)
        assert_nothing_written(m)


@pytest.mark.parametrize("role", ROLES)
def test_create(service, therapist, client_record, tomorrow_at, role):
    actor = actor_of(role, therapist=therapist)
    outcome = expected(APPOINTMENT_EXPECTED, "create", "", role)
    m = mark()

    def create() -> Appointment:
        return create_appointment(
            actor=actor,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=tomorrow_at(10),
        )

    if isinstance(outcome, str):
        appointment = create()
        appointment.refresh_from_db()
        assert appointment.status == outcome == "pending"
        assert appointment.created_by_id == actor.pk
        [transition] = transitions_since(m)
        assert_logged(
            transition,
            action="create",
            source="",
            target="pending",
            actor=actor,
            appointment=appointment,
        )
        [event] = events_since(m)
        assert (event.type, event.appointment_id) == ("appointment.created", appointment.pk)
    else:
        with pytest.raises(DomainError) as error:
            create()
        assert_refused(error, outcome, "")
        assert_nothing_written(m)


# --- appointments: relation, deadline, cascades, bad input -------------------------------


@pytest.mark.parametrize("action, source", THERAPIST_MOVES)
def test_another_therapist_may_not_act(book, service, action, source):
    appointment = book()
    force(appointment, source)
    other = factories.therapist(service)
    m = mark()
    with pytest.raises(NotPermitted):
        act_on_appointment(actor=other, appointment_id=appointment.pk, action=action)
    appointment.refresh_from_db()
    assert appointment.status == source
    assert_nothing_written(m)


@pytest.mark.parametrize("action, source", [("accept", "confirmed"), ("start", "completed")])
def test_another_therapist_learns_nothing_about_status(book, service, action, source):
    appointment = book()
    force(appointment, source)
    other = factories.therapist(service)
    with pytest.raises(NotPermitted):
        act_on_appointment(actor=other, appointment_id=appointment.pk, action=action)


def test_a_superuser_acts_as_a_manager_whatever_the_stored_role(book):
    appointment = book()
    boss = factories.UserFactory(role="driver", is_superuser=True)
    with pytest.raises(NotPermitted):
        act_on_appointment(actor=boss, appointment_id=appointment.pk, action="accept")
    act_on_appointment(actor=boss, appointment_id=appointment.pk, action="cancel")
    assert Appointment.objects.get(pk=appointment.pk).status == "cancelled"


def test_expire_before_the_deadline_is_refused(book):
    appointment = book()
    m = mark()
    with pytest.raises(InvalidTransition) as error:
        act_on_appointment(
            actor=None,
            appointment_id=appointment.pk,
            action="expire",
            now=appointment.response_deadline - timedelta(seconds=1),
        )
    assert error.value.current_status == "pending"
    assert Appointment.objects.get(pk=appointment.pk).status == "pending"
    assert_nothing_written(m)


def test_expire_at_the_deadline_succeeds_as_the_sweep_does(book):
    appointment = book()
    deadline = appointment.response_deadline
    assert expire_overdue(now=deadline - timedelta(seconds=1)) == []
    assert expire_overdue(now=deadline) == [appointment.pk]
    assert Appointment.objects.get(pk=appointment.pk).status == "expired"
    assert appointment.transitions.filter(action="expire", actor=None).count() == 1


@pytest.mark.parametrize(
    "action, source, role",
    [
        ("cancel", "pending", "receptionist"),
        ("reject", "pending", "therapist"),
        ("cancel", "confirmed", "manager"),
        ("expire", "pending", "system"),
    ],
)
def test_ending_an_appointment_cancels_its_open_trips(book, action, source, role):
    appointment = book(needs_transport=True)
    force(appointment, source)
    trips = list(appointment.trips.order_by("id"))
    assert [t.status for t in trips] == ["queued", "queued"]
    actor = actor_of(role, therapist=appointment.therapist)
    target = APPOINTMENT_EXPECTED[action][1]
    m = mark()

    act_on_appointment(
        actor=actor,
        appointment_id=appointment.pk,
        action=action,
        now=appointment.response_deadline + timedelta(minutes=1),
    )

    assert set(trip_statuses(appointment).values()) == {"cancelled"}
    logged = transitions_since(m)
    trip_rows = [t for t in logged if t.trip_id]
    assert len(logged) == 3
    assert sorted(t.trip_id for t in trip_rows) == [t.pk for t in trips]
    for row in trip_rows:
        assert (row.action, row.from_status, row.to_status, row.actor_id) == (
            "cancel",
            "queued",
            "cancelled",
            None,
        )
        assert row.reason == f"appointment {target}"
    [appointment_row] = [t for t in logged if t.appointment_id]
    assert_logged(
        appointment_row,
        action=action,
        source=source,
        target=target,
        actor=actor,
        appointment=appointment,
    )
    events = events_since(m)
    assert [e.type for e in events] == ["trip.updated", "trip.updated", "appointment.updated"]
    assert sorted(e.trip_id for e in events[:2]) == [t.pk for t in trips]
    assert [t["status"] for t in events[2].data["trips"]] == ["cancelled", "cancelled"]


def test_cancelling_leaves_ended_trips_alone(book, desk):
    appointment = book(needs_transport=True)
    force(appointment, "confirmed")
    dropoff = appointment.trips.get(leg="dropoff")
    pickup = appointment.trips.get(leg="pickup")
    driver = factories.driver()
    Trip.objects.filter(pk=dropoff.pk).update(status="done", driver=driver)
    Trip.objects.filter(pk=pickup.pk).update(status="assigned", driver=driver)
    m = mark()
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel")
    assert trip_statuses(appointment) == {dropoff.pk: "done", pickup.pk: "cancelled"}
    assert [t.trip_id for t in transitions_since(m) if t.trip_id] == [pickup.pk]


@pytest.mark.parametrize("how", ["cancel", "reschedule"])
def test_a_driver_freed_by_an_appointment_change_rejoins_the_queue(book, desk, tomorrow_at, how):
    appointment = book(needs_transport=True)
    driver = factories.driver()
    set_shift(driver=driver, on_shift=True)
    assign_trip(trip_id=appointment.trips.get(leg="dropoff").pk, driver_id=driver.pk)
    assert DriverProfile.objects.get(user=driver).available_since is None
    if how == "cancel":
        act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel")
    else:
        reschedule_appointment(actor=desk, appointment_id=appointment.pk, start=tomorrow_at(15))
    assert DriverProfile.objects.get(user=driver).available_since is not None


@pytest.mark.parametrize(
    "steps",
    [
        [("accept", "therapist")],
        [("accept", "therapist"), ("start", "therapist")],
        [("accept", "therapist"), ("start", "therapist"), ("complete", "therapist")],
        [("accept", "therapist"), ("no_show", "therapist")],
        [("accept", "therapist"), ("no_show", "receptionist")],
    ],
    ids=lambda steps: ">".join(action for action, _ in steps),
)
def test_transport_survives_what_does_not_end_the_visit(book, steps):
    appointment = book(needs_transport=True)
    before = trip_statuses(appointment)
    m = mark()
    for action, role in steps:
        actor = actor_of(role, therapist=appointment.therapist)
        act_on_appointment(actor=actor, appointment_id=appointment.pk, action=action)
    assert trip_statuses(appointment) == before
    assert all(t.trip_id is None for t in transitions_since(m))
    assert {e.type for e in events_since(m)} == {"appointment.updated"}


def test_reschedule_plans_transport_anew(book, desk, tomorrow_at):
    appointment = book(needs_transport=True)
    old = trip_statuses(appointment)
    reschedule_appointment(actor=desk, appointment_id=appointment.pk, start=tomorrow_at(15))
    statuses = trip_statuses(appointment)
    assert {statuses[pk] for pk in old} == {"cancelled"}
    fresh = Trip.objects.filter(appointment=appointment).exclude(pk__in=old)
    assert sorted(fresh.values_list("leg", "status")) == [
        ("dropoff", "queued"),
        ("pickup", "queued"),
    ]
    assert fresh.get(leg="dropoff").window_end == tomorrow_at(15)


@pytest.mark.parametrize("action", ["explode", "", "create", "reschedule", "assign", "Accept"])
def test_unknown_appointment_action(book, desk, action):
    appointment = book()
    m = mark()
    with pytest.raises(ValidationFailed) as error:
        act_on_appointment(actor=desk, appointment_id=appointment.pk, action=action)
    assert "action" in error.value.errors
    assert Appointment.objects.get(pk=appointment.pk).status == "pending"
    assert_nothing_written(m)


@pytest.mark.parametrize("missing", [987654321, "abc", None])
def test_missing_appointment(desk, tomorrow_at, missing):
    m = mark()
    with pytest.raises(NotFound):
        act_on_appointment(actor=desk, appointment_id=missing, action="cancel")
    with pytest.raises(NotFound):
        reschedule_appointment(actor=desk, appointment_id=missing, start=tomorrow_at(10))
    assert_nothing_written(m)


# --- trips: the full cross product -------------------------------------------------------


def trip_cases() -> list:
    """Every (action, from, role). A queued trip has no driver yet, so the acting driver
    is not its driver and must be refused as such."""
    return [
        pytest.param(
            action,
            source,
            role,
        )
        for action in TRIP_ACTIONS
        for source in TRIP_STATUSES
        for role in ROLES
    ]


@pytest.mark.parametrize("action, source, role", trip_cases())
def test_trip_action(trip_in, action, source, role):
    trip, own_driver = trip_in(source)
    appointment = trip.appointment
    actor = actor_of(role, therapist=appointment.therapist, driver=own_driver)
    outcome = expected(TRIP_EXPECTED, action, source, role)
    if role == "driver" and own_driver is None:
        # Not this driver's trip: refused whatever its status, like a forbidden role.
        outcome = NotPermitted
    others = {pk: s for pk, s in trip_statuses(appointment).items() if pk != trip.pk}
    m = mark()

    if isinstance(outcome, str):
        result = act_on_trip(actor=actor, trip_id=trip.pk, action=action, reason="test")
        trip.refresh_from_db()
        assert result.status == trip.status == outcome
        assert trip.driver_id == (own_driver.pk if own_driver else None)
        [transition] = transitions_since(m)
        assert_logged(
            transition, action=action, source=source, target=outcome, actor=actor, trip=trip
        )
        assert transition.reason == "test"
        [event] = events_since(m)
        assert (event.type, event.trip_id, event.data["status"]) == (
            "trip.updated",
            trip.pk,
            outcome,
        )
    else:
        with pytest.raises(DomainError) as error:
            act_on_trip(actor=actor, trip_id=trip.pk, action=action)
        assert_refused(error, outcome, source)
        trip.refresh_from_db()
        assert trip.status == source
        assert_nothing_written(m)
    # A trip's change never moves its appointment or the other leg.
    assert Appointment.objects.get(pk=appointment.pk).status == "pending"
    assert {pk: s for pk, s in trip_statuses(appointment).items() if pk != trip.pk} == others


@pytest.mark.parametrize("source", TRIP_STATUSES)
def test_assign(trip_in, source):
    """Assignment is the platform's (the dispatcher's): `assign_trip` takes no actor."""
    trip, previous_driver = trip_in(source)
    driver = factories.driver()
    set_shift(driver=driver, on_shift=True)
    now = timezone.now()
    outcome = expected(TRIP_EXPECTED, "assign", source, "system")
    m = mark()

    if isinstance(outcome, str):
        result = assign_trip(trip_id=trip.pk, driver_id=driver.pk, now=now)
        trip.refresh_from_db()
        assert result.status == trip.status == outcome == "assigned"
        assert (trip.driver_id, trip.assigned_at) == (driver.pk, now)
        [transition] = transitions_since(m)
        assert_logged(
            transition, action="assign", source=source, target=outcome, actor=None, trip=trip
        )
        event, queue = events_since(m)
        assert (event.type, event.trip_id, event.data["driver"]) == (
            "trip.assigned",
            trip.pk,
            driver.pk,
        )
        # The driver's work order: where, and when the session starts and ends.
        appointment = trip.appointment
        assert (event.data["address"], event.data["start"], event.data["end"]) == (
            appointment.address,
            appointment.start.isoformat(),
            appointment.end.isoformat(),
        )
        # The driver left the queue, and is told so with everyone still in it.
        assert queue.type == "driver.queue"
        assert driver.pk not in [entry["driver"] for entry in queue.data["queue"]]
        assert driver.pk in set(queue.recipients.values_list("user_id", flat=True))
        assert DriverProfile.objects.get(user=driver).available_since is None
    else:
        with pytest.raises(DomainError) as error:
            assign_trip(trip_id=trip.pk, driver_id=driver.pk, now=now)
        assert_refused(error, outcome, source)
        trip.refresh_from_db()
        assert trip.status == source
        assert trip.driver_id == (previous_driver.pk if previous_driver else None)
        assert DriverProfile.objects.get(user=driver).available_since is not None
        assert_nothing_written(m)


@pytest.mark.parametrize("role", ROLES)
def test_nobody_assigns_through_act_on_trip(trip_in, role):
    trip, _ = trip_in("queued")
    actor = actor_of(role, therapist=trip.appointment.therapist)
    m = mark()
    with pytest.raises(ValidationFailed):
        act_on_trip(actor=actor, trip_id=trip.pk, action="assign")
    assert Trip.objects.get(pk=trip.pk).status == "queued"
    assert_nothing_written(m)


@pytest.mark.parametrize("action, source", DRIVER_MOVES)
def test_another_driver_may_not_act(trip_in, action, source):
    trip, _ = trip_in(source)
    m = mark()
    with pytest.raises(NotPermitted):
        act_on_trip(actor=factories.driver(), trip_id=trip.pk, action=action)
    assert Trip.objects.get(pk=trip.pk).status == source
    assert_nothing_written(m)


def test_another_driver_learns_nothing_about_status(trip_in):
    trip, _ = trip_in("done")
    with pytest.raises(NotPermitted):
        act_on_trip(actor=factories.driver(), trip_id=trip.pk, action="depart")


@pytest.mark.parametrize("action", ["explode", "", "accept", "Cancel"])
def test_unknown_trip_action(trip_in, desk, action):
    trip, _ = trip_in("queued")
    m = mark()
    with pytest.raises(ValidationFailed) as error:
        act_on_trip(actor=desk, trip_id=trip.pk, action=action)
    assert "action" in error.value.errors
    assert_nothing_written(m)


@pytest.mark.parametrize("missing", [987654321, "abc", None])
def test_missing_trip(desk, missing):
    driver = factories.driver()
    m = mark()
    with pytest.raises(NotFound):
        act_on_trip(actor=desk, trip_id=missing, action="cancel")
    with pytest.raises(NotFound):
        assign_trip(trip_id=missing, driver_id=driver.pk)
    assert_nothing_written(m)


# --- trips: the driver queue -------------------------------------------------------------


def queue_position(driver: User):
    return DriverProfile.objects.get(user=driver).available_since


def drive(trip: Trip, driver: User, *, now) -> None:
    for action in ("depart", "arrive", "complete"):
        act_on_trip(actor=driver, trip_id=trip.pk, action=action, now=now)


def test_assigning_leaves_the_queue_and_completing_rejoins_it_at_the_back(book):
    trip = book(needs_transport=True).trips.get(leg="dropoff")
    driver = factories.driver()
    t0 = timezone.now()
    set_shift(driver=driver, on_shift=True, now=t0)
    assert queue_position(driver) == t0

    assign_trip(trip_id=trip.pk, driver_id=driver.pk, now=t0 + timedelta(minutes=1))
    assert queue_position(driver) is None

    act_on_trip(actor=driver, trip_id=trip.pk, action="depart", now=t0 + timedelta(minutes=2))
    act_on_trip(actor=driver, trip_id=trip.pk, action="arrive", now=t0 + timedelta(minutes=3))
    assert queue_position(driver) is None
    done_at = t0 + timedelta(minutes=4)
    act_on_trip(actor=driver, trip_id=trip.pk, action="complete", now=done_at)
    assert queue_position(driver) == done_at


def test_an_off_shift_driver_does_not_rejoin_the_queue(book):
    trip = book(needs_transport=True).trips.get(leg="dropoff")
    driver = factories.driver()
    assign_trip(trip_id=trip.pk, driver_id=driver.pk)
    drive(trip, driver, now=timezone.now())
    profile = DriverProfile.objects.get(user=driver)
    assert (profile.on_shift, profile.available_since) == (False, None)


def test_a_driver_with_another_busy_trip_stays_out_of_the_queue(book):
    appointment = book(needs_transport=True)
    dropoff = appointment.trips.get(leg="dropoff")
    pickup = appointment.trips.get(leg="pickup")
    driver = factories.driver()
    set_shift(driver=driver, on_shift=True)
    assign_trip(trip_id=dropoff.pk, driver_id=driver.pk)
    assign_trip(trip_id=pickup.pk, driver_id=driver.pk)
    drive(dropoff, driver, now=timezone.now())
    assert queue_position(driver) is None
    done_at = timezone.now()
    drive(pickup, driver, now=done_at)
    assert queue_position(driver) == done_at


@pytest.mark.parametrize("source", ["assigned", "en_route", "arrived"])
def test_the_desk_cancelling_a_trip_frees_its_driver(book, desk, source):
    trip = book(needs_transport=True).trips.get(leg="dropoff")
    driver = factories.driver()
    set_shift(driver=driver, on_shift=True)
    assign_trip(trip_id=trip.pk, driver_id=driver.pk)
    Trip.objects.filter(pk=trip.pk).update(status=source)
    now = timezone.now()
    act_on_trip(actor=desk, trip_id=trip.pk, action="cancel", now=now)
    assert queue_position(driver) == now


def test_set_shift_on_and_off(book):
    driver = factories.driver()
    t0 = timezone.now()
    m = mark()

    profile = set_shift(driver=driver, on_shift=True, now=t0)
    assert (profile.on_shift, profile.available_since) == (True, t0)
    [event] = events_since(m)
    assert (event.type, event.data) == (
        "driver.queue",
        {"queue": [{"driver": driver.pk, "since": t0.isoformat()}], "left": []},
    )

    # Already on shift: keeps its place in the queue, says nothing.
    m = mark()
    profile = set_shift(driver=driver, on_shift=True, now=t0 + timedelta(hours=1))
    assert (profile.on_shift, profile.available_since) == (True, t0)
    assert events_since(m) == []

    m = mark()
    profile = set_shift(driver=driver, on_shift=False, now=t0 + timedelta(hours=2))
    assert (profile.on_shift, profile.available_since) == (False, None)
    [event] = events_since(m)
    assert event.data == {"queue": [], "left": [driver.pk]}
    assert DriverProfile.objects.get(user=driver).on_shift is False

    # Back on shift: the back of the queue, not the old place.
    later = t0 + timedelta(hours=3)
    assert set_shift(driver=driver, on_shift=True, now=later).available_since == later


def test_going_on_shift_while_driving_joins_the_queue_when_done(book):
    trip = book(needs_transport=True).trips.get(leg="dropoff")
    driver = factories.driver()
    assign_trip(trip_id=trip.pk, driver_id=driver.pk)
    profile = set_shift(driver=driver, on_shift=True)
    assert (profile.on_shift, profile.available_since) == (True, None)
    done_at = timezone.now()
    drive(trip, driver, now=done_at)
    assert queue_position(driver) == done_at


@pytest.mark.parametrize("role", ["receptionist", "therapist", "manager"])
def test_only_drivers_have_shifts(role):
    user = factories.UserFactory(role=role)
    m = mark()
    with pytest.raises(NotPermitted):
        set_shift(driver=user, on_shift=True)
    assert_nothing_written(m)
