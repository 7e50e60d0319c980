"""The RAW BOOKING ceiling writes what a product booking writes (bench/api/raw_booking.py).

For one booking each way, with the same client, service, therapist, actor and clock, with
and without transport, every table of the app gains the same number of rows, and the key
columns of each row agree (ids and times aside), so the ceilings the bench measures
against cannot drift from the product.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps

from bench.api import raw_booking
from scheduling.models import (
    Appointment,
    EventCounter,
    Notification,
    StreamEvent,
    Transition,
    Trip,
)
from scheduling.services.appointments import create_appointment
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

MANILA = ZoneInfo("Asia/Manila")
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=MANILA)


def _counts() -> dict[str, int]:
    return {
        m._meta.db_table: m.objects.count() for m in apps.get_app_config("scheduling").get_models()
    }


def _delta(before: dict[str, int]) -> dict[str, int]:
    after = _counts()
    return {t: after[t] - before[t] for t in after if after[t] != before[t]}


def _appointment(pk: int) -> dict:
    a = Appointment.objects.get(pk=pk)
    return {
        "fields": (a.client_id, a.service_id, a.therapist_id, a.status, a.address, a.notes,
                   a.needs_transport, a.price, a.payment_status, a.created_by_id,
                   a.travel_minutes, a.area_id),
        "times": (a.end - a.start, a.blocked_until - a.start, a.busy_from - a.start,
                  a.busy_until - a.start, a.response_deadline),
    }  # fmt: skip


def _transitions(pk: int) -> list[tuple]:
    rows = Transition.objects.filter(appointment_id=pk)
    return list(
        rows.values_list("action", "from_status", "to_status", "actor_id", "reason", "trip_id")
    )


def _trips(pk: int) -> list[tuple]:
    """Each leg, its window against the start, and its log rows."""
    start = Appointment.objects.get(pk=pk).start
    shapes = []
    for trip in Trip.objects.filter(appointment_id=pk).order_by("id"):
        log = Transition.objects.filter(trip=trip).values_list(
            "action", "from_status", "to_status", "actor_id", "reason", "appointment_id"
        )
        shapes.append(
            (trip.leg, trip.status, trip.passengers, trip.driver_id, trip.assigned_at,
             trip.window_start - start, trip.window_end - start, list(log))
        )  # fmt: skip
    return shapes


def _trip_data(trip: dict, pk: int) -> tuple:
    return (trip["appointment"] == pk, trip["leg"], trip["status"], trip["driver"],
            trip["address"], sorted(trip))  # fmt: skip


def _notifications(pk: int, transition: int) -> list[tuple]:
    rows = Notification.objects.filter(appointment_id=pk).order_by("audience")
    return [
        (n.key.replace(f"appointment{pk}:", "A:").replace(f":t{transition}:", ":T:"), n.kind,
         n.channel, n.audience, n.to, n.subject, n.client_id, n.user_id, n.status, n.attempts,
         n.trip_id, n.enqueued_at is not None, bool(n.body))
        for n in rows
    ]  # fmt: skip


def _events(pk: int) -> list[tuple]:
    rows = StreamEvent.objects.filter(appointment_id=pk).prefetch_related("recipients")
    shapes = []
    for e in rows:
        recipients = sorted(e.recipients.values_list("user_id", flat=True))
        data = {k: v for k, v in e.data.items() if k not in {"id", "start", "end", "trips"}}
        trips = [_trip_data(trip, pk) for trip in e.data["trips"]]
        shapes.append(
            (e.type, e.trip_id, e.data["id"] == pk, recipients, sorted(e.data), data, trips)
        )
    return shapes


def _shape(pk: int) -> dict:
    transition = Transition.objects.get(appointment_id=pk).pk
    return {
        "appointment": _appointment(pk),
        "transitions": _transitions(pk),
        "trips": _trips(pk),
        "notifications": _notifications(pk, transition),
        "events": _events(pk),
    }


@pytest.mark.parametrize("transport", [False, True], ids=["plain", "transport"])
def test_raw_booking_writes_the_rows_create_appointment_writes(transport):
    service = factories.ServiceFactory()
    area = factories.ServiceAreaFactory(travel_minutes=30)
    client = factories.ClientFactory(area=area)
    therapist = factories.therapist(service, phone="+639170000001")
    desk = factories.UserFactory(role="receptionist")
    if transport:
        factories.driver()  # works all week: both bookings' legs can be carried
    product_start = datetime(2026, 6, 2, 10, 0, tzinfo=MANILA)
    raw_start = product_start + timedelta(hours=3)
    EventCounter.objects.get_or_create(pk=1)  # a running system's: both only move it
    with time_machine.travel(NOW, tick=False):
        before = _counts()
        product = create_appointment(
            actor=desk, client_id=client.pk, service_id=service.pk,
            therapist_id=therapist.pk, start=product_start, needs_transport=transport, now=NOW,
        )  # fmt: skip
        product_rows = _delta(before)
        booking = raw_booking.prepare(
            client_id=client.pk, service_id=service.pk, therapist_id=therapist.pk,
            actor_id=desk.pk, transport=transport,
        )  # fmt: skip
        before = _counts()
        raw = raw_booking.book(booking, start=raw_start, now=NOW)
        raw_rows = _delta(before)

    assert raw_rows == product_rows
    seqs = StreamEvent.objects.filter(appointment_id__in=[product.pk, raw]).values_list("seq")
    assert EventCounter.objects.get(pk=1).last_seq == max(s for (s,) in seqs)
    assert set(product_rows) >= {"scheduling_appointment", "scheduling_transition",
                                 "scheduling_notification", "scheduling_streamevent",
                                 "scheduling_streameventrecipient"}  # fmt: skip
    assert product_rows["scheduling_notification"] == 2  # client and therapist
    assert product_rows.get("scheduling_trip", 0) == (2 if transport else 0)
    product_shape, raw_shape = _shape(product.pk), _shape(raw)
    assert raw_shape == product_shape
    # The times themselves are the booking's own, as the product writes them.
    assert Appointment.objects.get(pk=raw).busy_from == raw_start - timedelta(minutes=30)
    key = Notification.objects.filter(appointment_id=raw).values_list("key", flat=True)[0]
    assert re.fullmatch(rf"appointment{raw}:booking_created:t\d+:sms:\w+\d+", key)


def test_raw_booking_meets_the_exclusion_constraint():
    """The same constraint refuses the raw booking that would refuse the product's."""
    from django.db import IntegrityError

    service = factories.ServiceFactory()
    client = factories.ClientFactory()
    therapist = factories.therapist(service)
    desk = factories.UserFactory(role="receptionist")
    start = datetime(2026, 6, 2, 10, 0, tzinfo=MANILA)
    booking = raw_booking.prepare(
        client_id=client.pk, service_id=service.pk, therapist_id=therapist.pk, actor_id=desk.pk
    )
    raw_booking.book(booking, start=start, now=NOW)
    with pytest.raises(IntegrityError):
        raw_booking.book(booking, start=start + timedelta(minutes=30), now=NOW)
