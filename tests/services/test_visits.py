"""Couples and group visits (issue 14 item 1): every session booked at one start or none,
one car for everyone with transport, each therapist answering their own session, and a
single session's cancel resizing the shared trips."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from scheduling.errors import Conflict, NotPermitted, ValidationFailed, VisitConflict
from scheduling.models import (
    Appointment,
    DispatchDecision,
    Notification,
    StreamEvent,
    StreamEventRecipient,
    TherapistChoice,
    Transition,
    Trip,
    Visit,
)
from scheduling.services.appointments import (
    act_on_appointment,
    create_appointment,
    reschedule_appointment,
)
from scheduling.services.choosing import choose_therapist
from scheduling.services.dispatch import run_pass
from scheduling.services.manual_dispatch import assign_by_hand
from scheduling.services.reassign import reassign
from scheduling.services.trips import set_shift
from scheduling.services.visits import SessionAsk, book_visit, cancel_visit
from tests import factories

pytestmark = pytest.mark.django_db

TRAVEL = timedelta(minutes=45)  # TRAVEL_ALLOWANCE_MINUTES: the client has no area


def counts() -> dict[str, int]:
    """Every table a booking writes."""
    tables = (
        Visit,
        Appointment,
        Trip,
        Transition,
        Notification,
        StreamEvent,
        StreamEventRecipient,
        TherapistChoice,
    )
    return {m.__name__: m.objects.count() for m in tables}


@pytest.fixture
def long_service():
    return factories.ServiceFactory(name="Hot stone", duration_minutes=90, buffer_minutes=15)


@pytest.fixture
def ben(service, long_service):
    return factories.therapist(service, long_service, username="ben", first_name="Ben")


@pytest.fixture
def cleo(service, long_service):
    return factories.therapist(service, long_service, username="cleo", first_name="Cleo")


@pytest.fixture
def dee(service):
    return factories.therapist(service, username="dee", first_name="Dee")


@pytest.fixture
def car():
    return factories.driver(vehicle="car", seats=4, username="carla")


@pytest.fixture
def visit(desk, client_record):
    def visit(start, *sessions, needs_transport=False, **fields):
        return book_visit(
            actor=desk,
            client_id=client_record.pk,
            start=start,
            sessions=[SessionAsk(service_id=s, therapist_id=t) for s, t in sessions],
            needs_transport=needs_transport,
            **fields,
        )

    return visit


def sessions_of(visit: Visit) -> list[Appointment]:
    return list(visit.sessions.select_related("service").order_by("id"))


# --- booking --------------------------------------------------------------------------------


def test_a_couples_visit_without_transport_books_each_session_as_a_single_booking_would(
    visit, desk, therapist, ben, service, long_service, tomorrow_at
):
    booked = visit(tomorrow_at(10), (service.pk, therapist.pk), (long_service.pk, ben.pk))

    first, second = sessions_of(booked)
    assert (first.therapist, second.therapist) == (therapist, ben)
    assert first.start == second.start == booked.start == tomorrow_at(10)
    assert (first.end, second.end) == (tomorrow_at(11), tomorrow_at(11, 30))
    # Without a car nobody waits for anyone: each is back as after a single booking.
    assert first.busy_until == tomorrow_at(11, 15) + TRAVEL
    assert second.busy_until == tomorrow_at(11, 45) + TRAVEL
    assert {a.status for a in (first, second)} == {"pending"}
    assert first.visit_id == second.visit_id == booked.pk
    assert first.address == booked.address == booked.client.address
    assert not Trip.objects.exists()
    assert Transition.objects.filter(appointment__visit=booked, action="create").count() == 2
    assert booked.created_by == desk and booked.travel_minutes == 45


def test_with_transport_one_car_carries_everyone_and_everyone_waits_for_the_pick_up(
    visit, car, therapist, ben, service, long_service, tomorrow_at
):
    booked = visit(
        tomorrow_at(10),
        (service.pk, therapist.pk),
        (long_service.pk, ben.pk),
        needs_transport=True,
    )

    trips = list(Trip.objects.order_by("window_start"))
    assert [(t.leg, t.passengers, t.visit_id) for t in trips] == [
        ("dropoff", 2, booked.pk),
        ("pickup", 2, booked.pk),
    ]
    lead, other = sessions_of(booked)
    assert {t.appointment_id for t in trips} == {lead.pk}
    dropoff, pickup = trips
    assert (dropoff.window_start, dropoff.window_end) == (tomorrow_at(10) - TRAVEL, tomorrow_at(10))
    # The pick-up leaves when the last session (90 minutes) and its buffer are over.
    assert pickup.window_start == tomorrow_at(11, 45)
    assert pickup.window_end == tomorrow_at(11, 45) + TRAVEL
    # Ana's hour ends at 11:00, but she waits for the car: held until it is back.
    assert lead.busy_until == other.busy_until == pickup.window_end
    assert lead.blocked_until == tomorrow_at(11, 15)


def test_any_free_therapist_follows_the_single_booking_rule_and_never_repeats_one(
    visit, desk, therapist, ben, cleo, service, client_record, tomorrow_at
):
    expected = choose_therapist(service=service, start=tomorrow_at(10), client=client_record)
    booked = visit(tomorrow_at(10), (service.pk, None), (service.pk, None), (service.pk, None))

    chosen = [a.therapist for a in sessions_of(booked)]
    assert chosen[0] == expected.therapist
    assert len(set(chosen)) == 3  # three therapists, three different ones
    # Each choice is recorded as a single "any therapist" booking's is.
    assert TherapistChoice.objects.filter(appointment__visit=booked).count() == 3


def test_a_named_therapist_is_never_chosen_again_for_another_session(
    visit, therapist, ben, service, tomorrow_at
):
    booked = visit(tomorrow_at(10), (service.pk, None), (service.pk, therapist.pk))
    assert [a.therapist for a in sessions_of(booked)] == [ben, therapist]


def test_a_therapist_free_alone_but_not_until_the_shared_pick_up_is_passed_over(
    visit, desk, car, therapist, ben, cleo, service, long_service, client_record, tomorrow_at
):
    therapist.therapist_profile.services.add(long_service)
    # Ben is free for his own hour and its return (10:00-11:15 + travel) but has a
    # booking at 13:00, so he cannot wait for Ana's 90 minutes and the car (back 12:30).
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=ben.pk,
        start=tomorrow_at(12, 45),
    )
    # Cleo has booked more of the week than Ben, so the rule ranks Ben first.
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=long_service.pk,
        therapist_id=cleo.pk,
        start=tomorrow_at(16),
    )
    assert (
        choose_therapist(
            service=service, start=tomorrow_at(10), client=client_record, exclude={therapist.pk}
        ).therapist
        == ben
    )
    booked = visit(
        tomorrow_at(10),
        (long_service.pk, therapist.pk),
        (service.pk, None),
        needs_transport=True,
    )
    assert [a.therapist for a in sessions_of(booked)] == [therapist, cleo]


def test_a_failing_fourth_session_leaves_no_row_written(
    visit, desk, car, therapist, ben, cleo, dee, service, client_record, tomorrow_at
):
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=dee.pk,
        start=tomorrow_at(10, 30),
    )
    before = counts()

    with pytest.raises(VisitConflict) as raised:
        visit(
            tomorrow_at(10),
            (service.pk, therapist.pk),
            (service.pk, ben.pk),
            (service.pk, cleo.pk),
            (service.pk, dee.pk),
            needs_transport=True,
        )

    assert counts() == before
    assert raised.value.reason == "visit_conflict"
    assert [(f.session, f.therapist, f.reason) for f in raised.value.failures] == [
        (3, dee.pk, "therapist_busy")
    ]
    assert "Dee" in raised.value.failures[0].message


def test_every_failing_session_is_named_with_its_reason(
    visit, desk, therapist, ben, cleo, service, client_record, tomorrow_at
):
    late = factories.therapist(service, hours=(time(8), time(23)), username="late")
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=late.pk,
        start=tomorrow_at(19),
    )
    before = counts()

    with pytest.raises(VisitConflict) as raised:
        # 20:15 + 45 minutes' travel back: past Ana's 20:00; the late one is booked.
        visit(tomorrow_at(19), (service.pk, therapist.pk), (service.pk, late.pk))

    assert counts() == before
    assert [(f.session, f.reason) for f in raised.value.failures] == [
        (0, "not_working"),
        (1, "therapist_busy"),
    ]
    assert raised.value.message == "2 of the visit's 2 sessions cannot be booked."


def test_no_car_with_the_seats_fails_every_session_with_no_driver(
    visit, therapist, ben, service, tomorrow_at
):
    # Two motorcycles could carry two single bookings, but not one couple together.
    factories.driver(username="moto1")
    factories.driver(username="moto2")
    before = counts()

    with pytest.raises(VisitConflict) as raised:
        visit(
            tomorrow_at(10),
            (service.pk, therapist.pk),
            (service.pk, ben.pk),
            needs_transport=True,
        )

    assert counts() == before
    assert [(f.session, f.reason) for f in raised.value.failures] == [
        (0, "no_driver"),
        (1, "no_driver"),
    ]


def test_nobody_free_for_an_any_therapist_session_is_no_therapist(
    visit, therapist, service, tomorrow_at
):
    with pytest.raises(VisitConflict) as raised:
        visit(tomorrow_at(10), (service.pk, therapist.pk), (service.pk, None))
    assert [(f.session, f.therapist, f.reason) for f in raised.value.failures] == [
        (1, None, "no_therapist")
    ]
    assert not Visit.objects.exists()


@pytest.mark.parametrize(
    "shape, field",
    [
        ("one", "sessions"),
        ("five", "sessions"),
        ("twice", "sessions[1].therapist"),
        ("unknown service", "sessions[0].service"),
        ("does not perform", "sessions[1].therapist"),
    ],
)
def test_a_visit_that_can_never_be_booked_says_which_field(
    visit, therapist, ben, service, long_service, dee, tomorrow_at, shape, field
):
    sessions = {
        "one": [(service.pk, therapist.pk)],
        "five": [(service.pk, None)] * 5,
        "twice": [(service.pk, therapist.pk), (long_service.pk, therapist.pk)],
        "unknown service": [(999_999, None), (service.pk, None)],
        "does not perform": [(service.pk, therapist.pk), (long_service.pk, dee.pk)],
    }[shape]
    with pytest.raises(ValidationFailed) as raised:
        visit(tomorrow_at(10), *sessions)
    assert field in raised.value.errors
    assert not Visit.objects.exists()


def test_only_the_desk_books_a_visit(visit, client_record, therapist, ben, service, tomorrow_at):
    with pytest.raises(NotPermitted):
        book_visit(
            actor=therapist,
            client_id=client_record.pk,
            start=tomorrow_at(10),
            sessions=[SessionAsk(service.pk, therapist.pk), SessionAsk(service.pk, ben.pk)],
            needs_transport=False,
        )


def test_each_therapist_is_told_of_their_own_session_live(
    visit, therapist, ben, service, tomorrow_at
):
    booked = visit(tomorrow_at(10), (service.pk, therapist.pk), (service.pk, ben.pk))
    for session in sessions_of(booked):
        created = StreamEvent.objects.get(type="appointment.created", appointment=session)
        assert session.therapist_id in set(created.recipients.values_list("user_id", flat=True))
        # The messages a single booking writes, per session.
        assert Notification.objects.filter(appointment=session, kind="booking_created").exists()


# --- each therapist's own session -----------------------------------------------------------


@pytest.fixture
def couple(visit, car, therapist, ben, service, long_service, tomorrow_at):
    """Ana (60 minutes) and Ben (90), with the car, tomorrow at 10:00."""
    return visit(
        tomorrow_at(10),
        (service.pk, therapist.pk),
        (long_service.pk, ben.pk),
        needs_transport=True,
    )


def trips_of(visit: Visit) -> list[tuple]:
    return list(
        Trip.objects.filter(visit=visit)
        .order_by("window_start")
        .values_list("leg", "status", "passengers", "appointment_id", "window_start", "driver_id")
    )


def test_each_therapist_accepts_their_own_session_only(couple, therapist, ben):
    ana_session, ben_session = sessions_of(couple)
    with pytest.raises(NotPermitted):
        act_on_appointment(actor=therapist, appointment_id=ben_session.pk, action="accept")
    act_on_appointment(actor=therapist, appointment_id=ana_session.pk, action="accept")
    ana_session.refresh_from_db(), ben_session.refresh_from_db()
    assert (ana_session.status, ben_session.status) == ("confirmed", "pending")


def test_a_rejected_session_keeps_its_seat_and_is_given_to_another_therapist(
    couple, desk, therapist, ben, cleo
):
    trips = trips_of(couple)
    ana_session, ben_session = sessions_of(couple)
    act_on_appointment(actor=ben, appointment_id=ben_session.pk, action="reject")
    assert trips_of(couple) == trips  # the lead's trips are the visit's: still there

    reassign(actor=desk, appointment_id=ben_session.pk, therapist_id=cleo.pk, reason="Ben is ill")

    ben_session.refresh_from_db()
    assert (ben_session.therapist, ben_session.status) == (cleo, "pending")
    # Cleo waits for the shared pick-up as Ben would have.
    assert ben_session.busy_until == trips[1][4] + TRAVEL
    assert trips_of(couple) == trips
    ana_session.refresh_from_db()
    assert ana_session.status == "pending" and ana_session.therapist == therapist


def test_a_rejected_lead_keeps_the_shared_trips(couple, therapist):
    trips = trips_of(couple)
    lead = sessions_of(couple)[0]
    act_on_appointment(actor=therapist, appointment_id=lead.pk, action="reject")
    assert trips_of(couple) == trips


def test_a_session_cannot_be_moved_on_its_own(couple, desk, cleo, tomorrow_at):
    session = sessions_of(couple)[1]
    with pytest.raises(Conflict) as raised:
        reschedule_appointment(actor=desk, appointment_id=session.pk, start=tomorrow_at(14))
    assert raised.value.reason == "part_of_visit"
    with pytest.raises(Conflict) as raised:
        reassign(
            actor=desk,
            appointment_id=session.pk,
            therapist_id=cleo.pk,
            start=tomorrow_at(14),
            reason="later",
        )
    assert raised.value.reason == "part_of_visit"
    session.refresh_from_db()
    assert session.start == tomorrow_at(10)


# --- cancelling -----------------------------------------------------------------------------


def test_cancelling_the_longer_session_resizes_the_trips(couple, desk, tomorrow_at):
    ana_session, ben_session = sessions_of(couple)
    act_on_appointment(actor=desk, appointment_id=ben_session.pk, action="cancel")

    (dropoff, pickup) = trips_of(couple)
    assert dropoff[:4] == ("dropoff", "queued", 1, ana_session.pk)
    # Ana's hour and its buffer: the pick-up now leaves at 11:15, not 11:45.
    assert pickup[:5] == ("pickup", "queued", 1, ana_session.pk, tomorrow_at(11, 15))
    ana_session.refresh_from_db()
    assert ana_session.status == "pending"
    assert ana_session.busy_until == tomorrow_at(11, 15) + TRAVEL


def test_cancelling_the_lead_moves_the_trips_to_the_other_session(couple, desk, tomorrow_at):
    ana_session, ben_session = sessions_of(couple)
    act_on_appointment(actor=desk, appointment_id=ana_session.pk, action="cancel")

    assert [(t[0], t[1], t[2], t[3], t[4]) for t in trips_of(couple)] == [
        ("dropoff", "queued", 1, ben_session.pk, tomorrow_at(10) - TRAVEL),
        ("pickup", "queued", 1, ben_session.pk, tomorrow_at(11, 45)),
    ]


def test_cancelling_the_last_session_cancels_the_trips(couple, desk):
    for session in sessions_of(couple):
        act_on_appointment(actor=desk, appointment_id=session.pk, action="cancel")
    assert {t[1] for t in trips_of(couple)} == {"cancelled"}


def test_cancel_visit_cancels_every_session_and_the_trips(couple, desk):
    cancel_visit(actor=desk, visit_id=couple.pk, reason="client ill")
    assert {a.status for a in sessions_of(couple)} == {"cancelled"}
    assert {t[1] for t in trips_of(couple)} == {"cancelled"}
    assert set(
        Transition.objects.filter(appointment__visit=couple, action="cancel").values_list(
            "reason", flat=True
        )
    ) == {"client ill"}


def test_cancel_visit_twice_is_an_invalid_transition(couple, desk):
    from scheduling.errors import InvalidTransition

    cancel_visit(actor=desk, visit_id=couple.pk)
    with pytest.raises(InvalidTransition):
        cancel_visit(actor=desk, visit_id=couple.pk)


def test_an_assigned_pick_up_stays_with_its_driver_when_still_free(couple, desk, car, tomorrow_at):
    set_shift(driver=car, on_shift=True)
    pickup = Trip.objects.get(visit=couple, leg="pickup")
    assign_by_hand(actor=desk, trip_id=pickup.pk, driver_id=car.pk, reason="regular")

    act_on_appointment(actor=desk, appointment_id=sessions_of(couple)[1].pk, action="cancel")

    pickup.refresh_from_db()
    assert (pickup.status, pickup.driver, pickup.passengers) == ("assigned", car, 1)
    assert pickup.window_start == tomorrow_at(11, 15)


def test_an_assigned_pick_up_goes_back_to_the_queue_when_its_driver_is_busy_then(
    couple, desk, car, service, client_record, cleo, tomorrow_at
):
    set_shift(driver=car, on_shift=True)
    pickup = Trip.objects.get(visit=couple, leg="pickup")
    assign_by_hand(actor=desk, trip_id=pickup.pk, driver_id=car.pk, reason="regular")
    # Carla also drives another client's drop-off from 11:00 to 11:45.
    other = create_appointment(
        actor=desk,
        client_id=factories.ClientFactory().pk,
        service_id=service.pk,
        therapist_id=cleo.pk,
        start=tomorrow_at(11, 45),
        needs_transport=True,
    )
    dropoff = Trip.objects.get(appointment=other, leg="dropoff")
    assign_by_hand(actor=desk, trip_id=dropoff.pk, driver_id=car.pk, reason="on the way")

    # The pick-up would now leave at 11:15: Carla is busy then.
    act_on_appointment(actor=desk, appointment_id=sessions_of(couple)[1].pk, action="cancel")

    pickup.refresh_from_db()
    assert (pickup.status, pickup.driver, pickup.passengers) == ("queued", None, 1)
    assert pickup.window_start == tomorrow_at(11, 15)
    assert DispatchDecision.objects.filter(trip=pickup, outcome="unassigned").exists()


# --- the dispatcher and seats ---------------------------------------------------------------


def test_a_two_passenger_trip_is_never_given_to_a_motorcycle(
    visit, therapist, ben, service, tomorrow_at
):
    moto = factories.driver(username="moto")
    car = factories.driver(vehicle="car", seats=2, username="sedan")
    booked = visit(
        tomorrow_at(10),
        (service.pk, therapist.pk),
        (service.pk, ben.pk),
        needs_transport=True,
    )
    set_shift(driver=moto, on_shift=True, now=tomorrow_at(6))  # first in the queue
    set_shift(driver=car, on_shift=True, now=tomorrow_at(7))

    run_pass(now=tomorrow_at(9))

    dropoff = Trip.objects.get(visit=booked, leg="dropoff")
    assert dropoff.driver == car
    decision = DispatchDecision.objects.filter(trip=dropoff).latest("id")
    assert decision.skipped == [{"driver": moto.pk, "reason": "vehicle"}]


def test_any_session_of_the_visit_asks_for_the_shared_pick_up(couple, desk, ben):
    from scheduling.services.dispatch import request_pickup

    ben_session = sessions_of(couple)[1]  # not the lead: the trips are the lead's
    for action in ("accept", "start"):
        act_on_appointment(actor=ben, appointment_id=ben_session.pk, action=action)
    pickup = request_pickup(actor=ben, appointment_id=ben_session.pk)
    assert (pickup.visit_id, pickup.leg, pickup.passengers) == (couple.pk, "pickup", 2)
    assert pickup.requested_at is not None
