"""Booking and rescheduling through the service: every check, and nothing half-written."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from scheduling.errors import Conflict, NotPermitted, ValidationFailed
from scheduling.models import (
    Appointment,
    Break,
    StreamEvent,
    TimeOff,
    Transition,
    Trip,
    WorkingHours,
)
from scheduling.services.appointments import (
    act_on_appointment,
    expire_overdue,
    reschedule_appointment,
)
from tests import factories

pytestmark = pytest.mark.django_db


def nothing_written(before: dict[str, int]) -> bool:
    return before == counts()


def counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (Appointment, Trip, Transition, StreamEvent)}


def test_booking_derives_end_price_deadline_and_logs(book, service, tomorrow_at, desk):
    now = timezone.now()
    appointment = book(tomorrow_at(10), now=now)
    assert appointment.status == "pending"
    assert appointment.end == tomorrow_at(11)
    assert appointment.blocked_until == tomorrow_at(11, 15)
    assert appointment.price == service.price == Decimal("1200.00")
    assert appointment.response_deadline == now + timedelta(minutes=30)
    assert appointment.address == appointment.client.address  # defaults to the client's
    log = Transition.objects.get(appointment=appointment)
    assert (log.from_status, log.to_status, log.actor) == ("", "pending", desk)
    event = StreamEvent.objects.get()
    assert event.type == "appointment.created" and event.data["id"] == appointment.pk
    assert set(event.recipients.values_list("user_id", flat=True)) == {appointment.therapist_id}


def test_deadline_never_after_the_start(book, tomorrow_at):
    # Next door (5 minutes away), a start 10 minutes off can be made, and the therapist
    # has less than the 30-minute response window to answer.
    next_door = factories.ServiceAreaFactory(name="Next door", travel_minutes=5)
    soon = tomorrow_at(10)
    appointment = book(soon, now=soon - timedelta(minutes=10), area_id=next_door.pk)
    assert appointment.response_deadline == soon


def test_a_start_the_therapist_cannot_reach_in_time_is_too_soon(book, tomorrow_at):
    start = tomorrow_at(10)
    before = counts()
    with pytest.raises(ValidationFailed, match="too soon: getting there takes 45 minutes") as e:
        book(start, now=start - timedelta(minutes=44))
    assert "start" in e.value.errors
    assert nothing_written(before)
    assert book(start, now=start - timedelta(minutes=45)).start == start


def test_transport_creates_both_legs_around_the_session(book, tomorrow_at):
    appointment = book(tomorrow_at(10), needs_transport=True)
    dropoff, pickup = appointment.trips.order_by("window_start")
    assert (dropoff.leg, dropoff.window_start, dropoff.window_end) == (
        "dropoff",
        tomorrow_at(9, 15),
        tomorrow_at(10),
    )
    # Picked up when the session and its 15-minute buffer are over.
    assert (pickup.leg, pickup.window_start, pickup.window_end) == (
        "pickup",
        tomorrow_at(11, 15),
        tomorrow_at(12),
    )
    assert {dropoff.status, pickup.status} == {"queued"}
    # Both legs lie inside the therapist's busy range, stored on the appointment.
    assert (appointment.travel_minutes, appointment.area) == (45, None)
    assert (appointment.busy_from, appointment.busy_until) == (tomorrow_at(9, 15), tomorrow_at(12))


def test_an_area_sets_the_travel_and_the_legs(book, client_record, tomorrow_at):
    client_record.area = factories.ServiceAreaFactory(name="Makati", travel_minutes=30)
    client_record.save()
    appointment = book(tomorrow_at(10), needs_transport=True)
    assert (appointment.travel_minutes, appointment.area) == (30, client_record.area)
    assert (appointment.busy_from, appointment.busy_until) == (
        tomorrow_at(9, 30),
        tomorrow_at(11, 45),
    )
    windows = list(
        appointment.trips.order_by("window_start").values_list("window_start", "window_end")
    )
    assert windows == [
        (tomorrow_at(9, 30), tomorrow_at(10)),
        (tomorrow_at(11, 15), tomorrow_at(11, 45)),
    ]
    # A booking may name another area; a later change to the area moves nothing booked.
    far = factories.ServiceAreaFactory(name="Antipolo", travel_minutes=90)
    other = book(tomorrow_at(15), area_id=far.pk)
    assert (other.travel_minutes, other.busy_from) == (90, tomorrow_at(13, 30))
    far.travel_minutes = 10
    far.save()
    other.refresh_from_db()
    assert (other.travel_minutes, other.busy_from) == (90, tomorrow_at(13, 30))


def test_transport_without_a_driver_who_works_then_is_refused(book, tomorrow_at):
    factories.driver(username="early")
    WorkingHours.objects.filter(staff__username="early").update(start=time(8), end=time(11))
    before = counts()
    with pytest.raises(Conflict, match="No driver is free for the pick-up 11:15–12:00") as e:
        book(tomorrow_at(10), needs_transport=True)
    assert e.value.reason == "no_driver"
    assert [(c.leg, c.start, c.end) for c in e.value.conflicts] == [
        ("pickup", tomorrow_at(11, 15), tomorrow_at(12))
    ]
    assert nothing_written(before)
    assert book(tomorrow_at(9), needs_transport=True).trips.count() == 2


def test_buffer_and_travel_block_the_next_start(book, tomorrow_at):
    first = book(tomorrow_at(10))  # busy 09:15-12:00: travel, session, buffer, travel
    before = counts()
    # Inside the 15-minute buffer after 11:00, and a start whose travel there begins
    # (11:45) before the therapist is back from the first (12:00).
    for start in (tomorrow_at(11), tomorrow_at(12, 30)):
        with pytest.raises(Conflict) as caught:
            book(start)
        assert [c.appointment_id for c in caught.value.conflicts] == [first.pk]
        assert caught.value.reason == "therapist_busy"
        assert "Ana Cruz is already booked from" in caught.value.message
        assert nothing_written(before)
    assert book(tomorrow_at(12, 45)).busy_from == tomorrow_at(12)


def test_other_therapists_are_independent(book, service, tomorrow_at):
    other = factories.therapist(service)
    book(tomorrow_at(10))
    assert book(tomorrow_at(10), therapist_id=other.pk).therapist == other


@pytest.mark.parametrize(
    "hour, reason",
    [
        (7, "outside working hours"),
        (19, "outside working hours"),
        (12, "during a break"),
        (15, "during time off"),
    ],
)
def test_working_time_is_enforced(book, therapist, tomorrow_at, hour, reason):
    day = tomorrow_at(0).astimezone(timezone.get_current_timezone()).weekday()
    Break.objects.create(staff=therapist, weekday=day, start=time(12), end=time(13))
    TimeOff.objects.create(staff=therapist, start=tomorrow_at(15), end=tomorrow_at(16))
    with pytest.raises(Conflict, match=reason):
        book(tomorrow_at(hour, 30) if hour == 19 else tomorrow_at(hour))


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"start": "past"}, "start", "already passed"),
        ({"start": "far"}, "start", "too far ahead"),
        ({"start": "off-step"}, "start", "every 15 minutes"),
        ({"start": "naive"}, "start", "UTC offset"),
        ({"client_id": 999999}, "client", "no client"),
        ({"service_id": 999999}, "service", "no service"),
        ({"therapist_id": 999999}, "therapist", "no therapist"),
        ({"therapist_id": "abc"}, "therapist", "no therapist"),
    ],
)
def test_bad_input_is_refused_with_field_errors(book, tomorrow_at, change, field, message):
    starts = {
        "past": timezone.now() - timedelta(hours=1),
        "far": timezone.now() + timedelta(days=400),
        "off-step": tomorrow_at(10, 10),
        "naive": datetime(2030, 5, 1, 10),
    }
    if "start" in change:
        change = {"start": starts[change["start"]]}
    before = counts()
    with pytest.raises(ValidationFailed, match=message) as caught:
        book(change.pop("start", tomorrow_at(10)), **change)
    assert field in caught.value.errors
    assert nothing_written(before)


def test_inactive_or_unperformed_service_is_refused(book, service, tomorrow_at):
    other = factories.ServiceFactory(name="Hot stone")
    with pytest.raises(ValidationFailed, match="does not perform Hot stone"):
        book(tomorrow_at(10), service_id=other.pk)
    service.active = False
    service.save()
    with pytest.raises(ValidationFailed, match="no longer offered"):
        book(tomorrow_at(10))


@pytest.mark.parametrize("role", ["therapist", "driver"])
def test_only_the_desk_books(book, tomorrow_at, role):
    with pytest.raises(NotPermitted):
        book(tomorrow_at(10), actor=factories.UserFactory(role=role))


def test_cancelled_time_is_free_again(book, desk, tomorrow_at):
    first = book(tomorrow_at(10), needs_transport=True)
    act_on_appointment(actor=desk, appointment_id=first.pk, action="cancel", reason="client ill")
    assert set(first.trips.values_list("status", flat=True)) == {"cancelled"}
    assert book(tomorrow_at(10)).pk != first.pk


def test_booking_runs_a_bounded_number_of_queries(book, tomorrow_at, django_assert_max_num_queries):
    # Warm the counter row (and hire the driver): busy 08:00-10:45.
    book(tomorrow_at(8, 45), needs_transport=True)
    # Reads (client, service, therapist), the lock, the working time (hours, breaks and
    # time off), then one insert per table, the event counter, and the events with their
    # recipients: constant, whatever the day holds. On PostgreSQL the working time is one
    # statement, the events one, and the exclusion constraint is the overlap check;
    # elsewhere those are three, three and a pre-check read. Driver capacity adds four on
    # PostgreSQL (the day's capacity lock, the drivers, their working time, the day's
    # open trips) and five elsewhere (no lock; the working time is three).
    bound = 18 if connection.vendor == "postgresql" else 23
    with django_assert_max_num_queries(bound):
        book(tomorrow_at(11, 30), needs_transport=True)


# --- rescheduling -------------------------------------------------------------------------


def test_reschedule_keeps_id_and_history_and_replans_transport(book, desk, therapist, tomorrow_at):
    appointment = book(tomorrow_at(10), needs_transport=True)
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="accept")
    old_trips = set(appointment.trips.values_list("pk", flat=True))
    moved = reschedule_appointment(
        actor=desk, appointment_id=appointment.pk, start=tomorrow_at(14), reason="client asked"
    )
    assert moved.pk == appointment.pk
    assert (moved.start, moved.end, moved.status) == (tomorrow_at(14), tomorrow_at(15), "pending")
    actions = list(
        Transition.objects.filter(appointment=appointment).values_list("action", flat=True)
    )
    assert actions == ["create", "accept", "reschedule"]
    assert set(Trip.objects.filter(pk__in=old_trips).values_list("status", flat=True)) == {
        "cancelled"
    }
    new = moved.trips.exclude(pk__in=old_trips).order_by("window_start")
    assert [t.window_end for t in new][:1] == [tomorrow_at(14)]


def test_reschedule_onto_itself_overlapping_is_allowed(book, desk, tomorrow_at):
    appointment = book(tomorrow_at(10))
    moved = reschedule_appointment(
        actor=desk, appointment_id=appointment.pk, start=tomorrow_at(10, 30)
    )
    assert moved.start == tomorrow_at(10, 30)


def test_reschedule_conflict_changes_nothing(book, desk, tomorrow_at):
    first = book(tomorrow_at(10))
    second = book(tomorrow_at(14), needs_transport=True)
    before = counts()
    with pytest.raises(Conflict):
        reschedule_appointment(actor=desk, appointment_id=second.pk, start=tomorrow_at(10, 30))
    second.refresh_from_db()
    assert second.start == tomorrow_at(14)
    assert nothing_written(before)
    assert first.pk


# --- expiry -------------------------------------------------------------------------------


def test_expire_overdue_only_takes_pending_past_deadline(book, therapist, tomorrow_at):
    now = timezone.now()
    overdue = book(tomorrow_at(10), now=now)
    accepted = book(tomorrow_at(13), now=now)
    act_on_appointment(actor=therapist, appointment_id=accepted.pk, action="accept")
    fresh = book(tomorrow_at(16), now=now + timedelta(minutes=20))
    expired = expire_overdue(now=now + timedelta(minutes=31))
    assert expired == [overdue.pk]
    statuses = dict(Appointment.objects.values_list("pk", "status"))
    assert statuses == {overdue.pk: "expired", accepted.pk: "confirmed", fresh.pk: "pending"}
    assert datetime.now(UTC)  # stays aware
