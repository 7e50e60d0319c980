"""Booking and rescheduling through the service: every check, and nothing half-written."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from scheduling.errors import Conflict, NotPermitted, ValidationFailed
from scheduling.models import Appointment, Break, StreamEvent, TimeOff, Transition, Trip
from scheduling.services.appointments import (
    act_on_appointment,
    expire_overdue,
    record_payment,
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
    soon = tomorrow_at(10)
    appointment = book(soon, now=soon - timedelta(minutes=10))
    assert appointment.response_deadline == soon


def test_transport_creates_both_legs_around_the_session(book, tomorrow_at):
    appointment = book(tomorrow_at(10), needs_transport=True)
    dropoff, pickup = appointment.trips.order_by("window_start")
    assert (dropoff.leg, dropoff.window_start, dropoff.window_end) == (
        "dropoff",
        tomorrow_at(9, 15),
        tomorrow_at(10),
    )
    assert (pickup.leg, pickup.window_start, pickup.window_end) == (
        "pickup",
        tomorrow_at(11),
        tomorrow_at(11, 45),
    )
    assert {dropoff.status, pickup.status} == {"queued"}


def test_buffer_blocks_the_next_start(book, tomorrow_at):
    first = book(tomorrow_at(10))
    before = counts()
    with pytest.raises(Conflict) as caught:
        book(tomorrow_at(11))  # inside the 15-minute buffer after 11:00
    assert [c.appointment_id for c in caught.value.conflicts] == [first.pk]
    assert "Ana Cruz is already booked" in caught.value.message
    assert nothing_written(before)
    assert book(tomorrow_at(11, 15)).start == tomorrow_at(11, 15)


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
    book(tomorrow_at(8))  # warm the counter row
    # Reads (client, service, therapist), the lock, the working time (hours, breaks and
    # time off), then one insert per table, the event counter, and the events with their
    # recipients: constant, whatever the day holds. On PostgreSQL the working time is one
    # statement, the events one, and the exclusion constraint is the overlap check;
    # elsewhere those are three, three and a pre-check read.
    bound = 14 if connection.vendor == "postgresql" else 18
    with django_assert_max_num_queries(bound):
        book(tomorrow_at(10), needs_transport=True)


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
    accepted = book(tomorrow_at(12), now=now)
    act_on_appointment(actor=therapist, appointment_id=accepted.pk, action="accept")
    fresh = book(tomorrow_at(16), now=now + timedelta(minutes=20))
    expired = expire_overdue(now=now + timedelta(minutes=31))
    assert expired == [overdue.pk]
    statuses = dict(Appointment.objects.values_list("pk", "status"))
    assert statuses == {overdue.pk: "expired", accepted.pk: "confirmed", fresh.pk: "pending"}
    assert datetime.now(UTC)  # stays aware


def test_only_a_manager_records_payment(desk, manager, book, tomorrow_at):
    appointment = book(tomorrow_at(10))
    with pytest.raises(NotPermitted):
        record_payment(actor=desk, appointment_id=appointment.pk, payment_status="paid")
    with pytest.raises(ValidationFailed):
        record_payment(actor=manager, appointment_id=appointment.pk, payment_status="comped")

    record_payment(actor=manager, appointment_id=appointment.pk, payment_status="refunded")

    appointment.refresh_from_db()
    assert appointment.payment_status == "refunded"
    event = StreamEvent.objects.order_by("-seq").first()
    assert (event.type, event.appointment_id) == ("appointment.updated", appointment.pk)
