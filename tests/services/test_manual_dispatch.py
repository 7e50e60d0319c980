"""Manual dispatch (scheduling/services/manual_dispatch.py) and acting for staff, through
the services and the API (issue 13 items 3 and 4).

The concurrency of manual dispatch (two desks, and a desk racing the dispatcher) is in
test_manual_dispatch_concurrency.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from scheduling.errors import Conflict, InvalidTransition, NotFound, NotPermitted, ValidationFailed
from scheduling.models import (
    DispatchDecision,
    DriverProfile,
    Notification,
    StreamEvent,
    Transition,
    Trip,
    User,
)
from scheduling.services.appointments import act_on_appointment
from scheduling.services.dispatch import queue_position, run_pass
from scheduling.services.manual_dispatch import assign_by_hand, unassign
from scheduling.services.trips import act_on_trip, set_shift
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_shift(tomorrow_at) -> Callable[..., User]:
    phones = iter(range(1000))

    def make(since: datetime, vehicle: str = "motorcycle", seats: int = 1, **fields) -> User:
        fields.setdefault("phone", f"+63918{next(phones):07d}")  # to be messaged
        driver = factories.driver(vehicle=vehicle, seats=seats, **fields)
        set_shift(driver=driver, on_shift=True, now=since)
        return driver

    return make


def mark() -> dict[str, int]:
    return {
        "transitions": Transition.objects.count(),
        "decisions": DispatchDecision.objects.count(),
        "events": StreamEvent.objects.count(),
        "messages": Notification.objects.count(),
    }


def assert_nothing_written(before: dict[str, int]) -> None:
    assert mark() == before


def events_for(user: User, after: int = 0) -> list[StreamEvent]:
    return list(StreamEvent.objects.visible_to(user).filter(seq__gt=after).order_by("seq"))


def head() -> int:
    last = StreamEvent.objects.order_by("-seq").first()
    return last.seq if last else 0


# --- assign by hand -------------------------------------------------------------------------


def test_the_desk_gives_a_queued_trip_to_a_chosen_driver(desk, trip_at, on_shift, tomorrow_at):
    first = on_shift(tomorrow_at(7))
    chosen = on_shift(tomorrow_at(7, 30), first_name="Liza")
    trip = trip_at(10)
    seen = head()

    result = assign_by_hand(
        actor=desk,
        trip_id=trip.pk,
        driver_id=chosen.pk,
        reason="she knows the gate",
        now=tomorrow_at(8),
    )

    trip.refresh_from_db()
    assert (result.status, trip.status, trip.driver_id) == ("assigned", "assigned", chosen.pk)
    assert trip.assigned_at == tomorrow_at(8)
    # Her place in the queue is kept on the trip, to be given back if it is taken back.
    assert trip.driver_waiting_since == tomorrow_at(7, 30)
    decision = DispatchDecision.objects.get(trip=trip)
    assert (decision.outcome, decision.driver_id, decision.decided_by) == (
        "assigned",
        chosen.pk,
        desk,
    )
    assert decision.reason == "she knows the gate"
    assert decision.queue_length == 2
    assert [e["driver"] for e in decision.queue] == [chosen.pk]
    transition = trip.transitions.latest("id")
    assert (transition.action, transition.actor, transition.reason) == (
        "assign",
        desk,
        "she knows the gate",
    )
    # She leaves the queue; the first driver now waits alone.
    assert queue_position(DriverProfile.objects.get(user=chosen)) is None
    assert queue_position(DriverProfile.objects.get(user=first)) == 1
    # Her phone hears of it at once (the dispatcher's event), and she is messaged.
    assert [e.type for e in events_for(chosen, seen)] == ["trip.assigned", "driver.queue"]
    assert [e.type for e in events_for(first, seen) if e.type.startswith("trip")] == []
    assert Notification.objects.filter(trip=trip, user=chosen, kind="trip_assigned").exists()


def test_a_manager_may_assign_too(manager, trip_at, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    assign_by_hand(actor=manager, trip_id=trip.pk, driver_id=driver.pk, reason="r")
    assert Trip.objects.get(pk=trip.pk).driver_id == driver.pk


@pytest.mark.parametrize("role", ["therapist", "driver"])
def test_only_the_desk_assigns_by_hand(role, trip_at, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    actor = factories.UserFactory(role=role)
    before = mark()
    with pytest.raises(NotPermitted):
        assign_by_hand(actor=actor, trip_id=trip.pk, driver_id=driver.pk, reason="r")
    with pytest.raises(NotPermitted):
        unassign(actor=actor, trip_id=trip.pk, reason="r")
    assert_nothing_written(before)
    assert Trip.objects.get(pk=trip.pk).status == "queued"


def test_a_driver_off_shift_is_refused(desk, trip_at, tomorrow_at):
    trip = trip_at(10)
    resting = factories.driver()
    before = mark()
    with pytest.raises(Conflict) as error:
        assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=resting.pk, reason="r")
    assert error.value.reason == "off_shift"
    assert_nothing_written(before)


def test_a_motorcycle_cannot_carry_two(desk, trip_at, on_shift, tomorrow_at):
    bike = on_shift(tomorrow_at(7))
    on_shift(tomorrow_at(7), vehicle="car", seats=3)  # someone could, for the booking
    trip = trip_at(10, passengers=2)
    before = mark()
    with pytest.raises(Conflict) as error:
        assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=bike.pk, reason="r")
    assert error.value.reason == "vehicle"
    assert_nothing_written(before)


def test_a_busy_driver_is_refused_with_the_clashing_trip(desk, trip_at, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(7))
    on_shift(tomorrow_at(7))
    first, second = trip_at(10), trip_at(10)
    assign_by_hand(actor=desk, trip_id=first.pk, driver_id=driver.pk, reason="r")
    before = mark()
    with pytest.raises(Conflict) as error:
        assign_by_hand(actor=desk, trip_id=second.pk, driver_id=driver.pk, reason="r")
    assert error.value.reason == "driver_busy"
    assert [c.trip_id for c in error.value.conflicts] == [first.pk]
    assert_nothing_written(before)
    assert Trip.objects.get(pk=second.pk).status == "queued"


def test_a_driver_needed_for_another_booked_trip_is_refused(desk, trip_at, tomorrow_at):
    """Only the car can carry the 10:00 pair; the motorcycle can carry the single at 10
    too. Giving the single to the car would strand the pair."""
    car = factories.driver(vehicle="car", seats=3)
    bike = factories.driver()
    for driver in (car, bike):
        set_shift(driver=driver, on_shift=True, now=tomorrow_at(7))
    pair = trip_at(10, passengers=2)
    single = trip_at(10)
    with pytest.raises(Conflict) as error:
        assign_by_hand(actor=desk, trip_id=single.pk, driver_id=car.pk, reason="r")
    assert error.value.reason == "needed_later"
    assign_by_hand(actor=desk, trip_id=single.pk, driver_id=bike.pk, reason="r")
    assign_by_hand(actor=desk, trip_id=pair.pk, driver_id=car.pk, reason="r")


@pytest.mark.parametrize("status", ["assigned", "en_route", "arrived", "done", "cancelled"])
def test_only_a_queued_trip_is_assigned(status, desk, trip_at, on_shift, tomorrow_at):
    driver, other = on_shift(tomorrow_at(7)), on_shift(tomorrow_at(7))
    trip = trip_at(10)
    Trip.objects.filter(pk=trip.pk).update(status=status, driver=other)
    before = mark()
    with pytest.raises(InvalidTransition) as error:
        assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=driver.pk, reason="r")
    assert error.value.current_status == status
    assert_nothing_written(before)


@pytest.mark.parametrize("missing", [987654321, "abc", None, -1])
def test_unknown_trip_is_not_found(missing, desk, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(7))
    with pytest.raises(NotFound):
        assign_by_hand(actor=desk, trip_id=missing, driver_id=driver.pk, reason="r")
    with pytest.raises(NotFound):
        unassign(actor=desk, trip_id=missing, reason="r")


@pytest.mark.parametrize("driver", [987654321, "abc", None])
def test_unknown_driver_is_a_bad_field(driver, desk, trip_at):
    trip = trip_at(10)
    with pytest.raises(ValidationFailed) as error:
        assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=driver, reason="r")
    assert "driver" in error.value.errors


def test_a_therapist_is_not_a_driver(desk, trip_at, therapist):
    trip = trip_at(10)
    with pytest.raises(ValidationFailed):
        assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=therapist.pk, reason="r")


@pytest.mark.parametrize("reason", ["", "   ", None, 12, "x" * 2001])
def test_a_reason_is_required(reason, desk, trip_at, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    with pytest.raises(ValidationFailed) as error:
        assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=driver.pk, reason=reason)
    assert "reason" in error.value.errors


# --- unassign -------------------------------------------------------------------------------


def test_taken_back_the_driver_keeps_their_place_in_the_queue(desk, trip_at, on_shift, tomorrow_at):
    liza = on_shift(tomorrow_at(7))
    later = on_shift(tomorrow_at(7, 30))
    trip = trip_at(10)
    assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=liza.pk, reason="r", now=tomorrow_at(8))
    on_shift(tomorrow_at(8, 30))  # joins behind everyone meanwhile
    seen = head()

    result = unassign(actor=desk, trip_id=trip.pk, reason="her motorbike broke", now=tomorrow_at(9))

    trip.refresh_from_db()
    assert (result.status, trip.status, trip.driver_id) == ("queued", "queued", None)
    assert (trip.assigned_at, trip.driver_waiting_since) == (None, None)
    profile = DriverProfile.objects.get(user=liza)
    # As if the trip had not been given: first again, ahead of those who joined since.
    assert profile.available_since == tomorrow_at(7)
    assert queue_position(profile) == 1
    assert queue_position(DriverProfile.objects.get(user=later)) == 2
    decision = DispatchDecision.objects.filter(trip=trip).latest("id")
    assert (decision.outcome, decision.driver_id, decision.decided_by, decision.reason) == (
        "unassigned",
        liza.pk,
        desk,
        "her motorbike broke",
    )
    transition = trip.transitions.latest("id")
    assert (transition.action, transition.from_status, transition.to_status) == (
        "unassign",
        "assigned",
        "queued",
    )
    # Her phone drops it at once: the trip, with no driver, and her place.
    types = [(e.type, e.data.get("driver", "-")) for e in events_for(liza, seen)]
    assert types == [("trip.updated", None), ("driver.queue", "-")]
    # Her unsent "you have a trip" message is not sent.
    assert Notification.objects.get(trip=trip, user=liza).status == "cancelled"


def test_given_again_to_the_same_driver_she_is_messaged_afresh(
    desk, trip_at, on_shift, tomorrow_at
):
    liza = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=liza.pk, reason="r", now=tomorrow_at(8))
    unassign(actor=desk, trip_id=trip.pk, reason="r", now=tomorrow_at(8, 5))
    assign_by_hand(
        actor=desk, trip_id=trip.pk, driver_id=liza.pk, reason="r", now=tomorrow_at(8, 10)
    )
    assert sorted(
        Notification.objects.filter(trip=trip, user=liza).values_list("status", flat=True)
    ) == ["cancelled", "pending"]


def test_a_trip_the_dispatcher_gave_is_taken_back_the_same_way(
    desk, trip_at, on_shift, tomorrow_at
):
    liza = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    run_pass(now=tomorrow_at(9, 30))
    assert Trip.objects.get(pk=trip.pk).driver_id == liza.pk
    unassign(actor=desk, trip_id=trip.pk, reason="r", now=tomorrow_at(9, 31))
    assert DriverProfile.objects.get(user=liza).available_since == tomorrow_at(7)


def test_a_driver_off_shift_or_still_driving_does_not_rejoin(desk, trip_at, on_shift, tomorrow_at):
    liza = on_shift(tomorrow_at(7))
    on_shift(tomorrow_at(7))
    early, late = trip_at(10), trip_at(13)
    assign_by_hand(actor=desk, trip_id=early.pk, driver_id=liza.pk, reason="r")
    assign_by_hand(actor=desk, trip_id=late.pk, driver_id=liza.pk, reason="r")
    unassign(actor=desk, trip_id=early.pk, reason="r")
    assert DriverProfile.objects.get(user=liza).available_since is None  # the 13:00 trip
    set_shift(driver=liza, on_shift=False)
    unassign(actor=desk, trip_id=late.pk, reason="r")
    assert DriverProfile.objects.get(user=liza).available_since is None


@pytest.mark.parametrize("status", ["queued", "en_route", "arrived", "done", "cancelled"])
def test_only_an_assigned_trip_is_taken_back(status, desk, trip_at, on_shift, tomorrow_at):
    driver = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    Trip.objects.filter(pk=trip.pk).update(
        status=status, driver=None if status == "queued" else driver
    )
    before = mark()
    with pytest.raises(InvalidTransition) as error:
        unassign(actor=desk, trip_id=trip.pk, reason="r")
    assert error.value.current_status == status
    assert_nothing_written(before)


# --- acting for staff, through the services -------------------------------------------------


def test_the_desk_accepts_for_the_therapist(desk, book, therapist, tomorrow_at):
    appointment = book(tomorrow_at(10))
    act_on_appointment(
        actor=desk, appointment_id=appointment.pk, action="accept", reason="phoned", on_behalf=True
    )
    transition = appointment.transitions.latest("id")
    assert (transition.action, transition.actor, transition.on_behalf_of) == (
        "accept",
        desk,
        therapist,
    )
    assert transition.reason == "phoned"


def test_acting_for_keeps_the_therapists_status_rules(desk, book, tomorrow_at):
    appointment = book(tomorrow_at(10))
    with pytest.raises(InvalidTransition):
        act_on_appointment(
            actor=desk, appointment_id=appointment.pk, action="start", on_behalf=True
        )


def test_nobody_but_the_desk_acts_for_anyone(book, therapist, tomorrow_at):
    appointment = book(tomorrow_at(10))
    before = mark()
    with pytest.raises(NotPermitted):
        act_on_appointment(
            actor=therapist, appointment_id=appointment.pk, action="accept", on_behalf=True
        )
    with pytest.raises(NotPermitted):
        act_on_appointment(
            actor=None, appointment_id=appointment.pk, action="expire", on_behalf=True
        )
    assert_nothing_written(before)


def test_the_desk_departs_for_the_driver(desk, trip_at, on_shift, tomorrow_at):
    liza = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=liza.pk, reason="r")
    seen = head()
    for action in ("depart", "arrive", "complete"):
        act_on_trip(actor=desk, trip_id=trip.pk, action=action, on_behalf=True)
    log = list(trip.transitions.order_by("id").values_list("action", "actor", "on_behalf_of"))
    assert log[-3:] == [(a, desk.pk, liza.pk) for a in ("depart", "arrive", "complete")]
    # Her phone follows, as if she had tapped it herself.
    assert [e.data["status"] for e in events_for(liza, seen) if e.type == "trip.updated"] == [
        "en_route",
        "arrived",
        "done",
    ]


def test_a_driver_may_not_act_for_another(trip_at, on_shift, desk, tomorrow_at):
    liza = on_shift(tomorrow_at(7))
    trip = trip_at(10)
    assign_by_hand(actor=desk, trip_id=trip.pk, driver_id=liza.pk, reason="r")
    with pytest.raises(NotPermitted):
        act_on_trip(actor=liza, trip_id=trip.pk, action="depart", on_behalf=True)
    with pytest.raises(NotPermitted):
        act_on_trip(actor=desk, trip_id=trip.pk, action="depart")
