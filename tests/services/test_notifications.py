"""Notifications (scheduling/services/notifications/), in process.

Writing with the cause, reminders by scan, delivery claims, retries and sweeps. The
provider is the fake one (in-process store here); the real-worker tests are in
test_worker_delivery.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from scheduling.models import (
    Appointment,
    Notification,
    StreamEvent,
    Transition,
)
from scheduling.notify import Message, OutcomeUnknown
from scheduling.notify.fake import Behaviour, store
from scheduling.services.appointments import (
    act_on_appointment,
    create_appointment,
    reschedule_appointment,
)
from scheduling.services.dispatch import run_pass
from scheduling.services.notifications.delivery import NOTIFICATION_FAILED, backoff, deliver
from scheduling.services.notifications.outbox import queue_reminders
from scheduling.services.notifications.sweeps import requeue_stale, retry_failed
from scheduling.services.trips import set_shift
from tests import factories

pytestmark = pytest.mark.django_db

FAKE = "scheduling.notify.fake.FakeProvider"


class UnsureProvider:
    """A provider without idempotency keys whose answer never arrives."""

    dedupes_by_key = False

    def send(self, message: Message) -> str:
        raise OutcomeUnknown("read timeout")


@pytest.fixture
def provider(settings):
    """Every channel through the fake provider, its counts in this process."""
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {"sms": FAKE, "whatsapp": FAKE, "email": FAKE},
        "FAKE_PROVIDER_URL": "",
        "NOTIFY_MAX_ATTEMPTS": 3,
        "NOTIFY_RETRY_BASE_SECONDS": 10,
        "NOTIFY_RETRY_MAX_SECONDS": 60,
    }
    shared = store()
    shared.reset()
    yield shared
    shared.reset()


@pytest.fixture
def therapist_with_phone(therapist):
    therapist.phone = "+639181112222"
    therapist.save()
    return therapist


@pytest.fixture
def book(desk, service, therapist_with_phone, client_record):
    def book(start, **fields) -> Appointment:
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist_with_phone.pk,
            start=start,
            **fields,
        )

    return book


def kinds(appointment: Appointment) -> list[tuple[str, str, str]]:
    return sorted(
        Notification.objects.filter(appointment=appointment).values_list(
            "kind", "audience", "channel"
        )
    )


# --- written with the cause ------------------------------------------------------------------


def test_a_booking_tells_the_client_and_the_therapist(book, tomorrow_at, client_record):
    appointment = book(tomorrow_at(10))
    assert kinds(appointment) == [
        ("booking_created", "client", "sms"),
        ("booking_created", "therapist", "sms"),
    ]
    row = Notification.objects.get(appointment=appointment, audience="client")
    create = Transition.objects.get(appointment=appointment, action="create")
    assert (
        row.key
        == f"appointment{appointment.pk}:booking_created:t{create.pk}:sms:client{client_record.pk}"
    )
    assert (row.to, row.status, row.attempts) == (client_record.phone, "pending", 0)
    assert row.enqueued_at is not None


def test_a_failed_booking_writes_no_notification(book, tomorrow_at):
    with pytest.raises(RuntimeError), transaction.atomic():
        book(tomorrow_at(10))
        raise RuntimeError("something after the booking failed")
    assert not Notification.objects.exists()


def test_delivery_is_enqueued_only_on_commit(book, tomorrow_at, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        book(tomorrow_at(10))
    # One delivery task for the transaction, with both messages' ids (delivery.enqueue).
    assert [len(c.batch) for c in callbacks if hasattr(c, "batch")] == [2]


def test_the_clients_preferred_channel_is_used(book, tomorrow_at, client_record):
    client_record.preferences = {"channel": "whatsapp"}
    client_record.save()
    appointment = book(tomorrow_at(10))
    assert ("booking_created", "client", "whatsapp") in kinds(appointment)

    client_record.preferences = {"channel": "email"}
    client_record.email = "maria@example.com"
    client_record.save()
    second = book(tomorrow_at(14))
    row = Notification.objects.get(appointment=second, audience="client")
    assert (row.channel, row.to) == ("email", "maria@example.com")


def test_nobody_to_write_to_writes_nothing(desk, service, therapist, client_record, tomorrow_at):
    assert not therapist.phone and not therapist.email
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(10),
    )
    assert kinds(appointment) == [("booking_created", "client", "sms")]


def test_status_changes_tell_who_they_concern(book, tomorrow_at, therapist_with_phone, desk):
    accepted = book(tomorrow_at(10))
    act_on_appointment(actor=therapist_with_phone, appointment_id=accepted.pk, action="accept")
    rejected = book(tomorrow_at(13))  # leaves at 12:15, once back from the first (12:00)
    act_on_appointment(actor=therapist_with_phone, appointment_id=rejected.pk, action="reject")
    cancelled = book(tomorrow_at(16))
    act_on_appointment(actor=desk, appointment_id=cancelled.pk, action="cancel")

    assert ("appointment_accepted", "client", "sms") in kinds(accepted)
    assert ("appointment_rejected", "client", "sms") in kinds(rejected)
    assert {k for k in kinds(cancelled) if k[0] == "appointment_cancelled"} == {
        ("appointment_cancelled", "client", "sms"),
        ("appointment_cancelled", "therapist", "sms"),
    }


def test_messages_are_in_the_business_time_zone(book, tomorrow_at):
    start = tomorrow_at(10)  # 10:00 in Manila, 02:00 UTC
    timezone.activate("UTC")  # whatever zone a request or worker has active
    try:
        appointment = book(start)
    finally:
        timezone.deactivate()
    body = Notification.objects.get(appointment=appointment, audience="client").body
    assert start.strftime("%a %-d %b, 10:00") in body
    assert "Swedish massage" in body


def test_names_are_not_html_escaped(book, tomorrow_at, client_record):
    client_record.name = "Ana O'Brien & Co"
    client_record.save()
    appointment = book(tomorrow_at(10))
    body = Notification.objects.get(appointment=appointment, audience="client").body
    assert "Ana O'Brien & Co" in body


def test_completion_schedules_a_follow_up_for_the_sweep(
    book, tomorrow_at, therapist_with_phone, settings, provider
):
    settings.SCHEDULING = {**settings.SCHEDULING, "FOLLOW_UP_DELAY_MINUTES": 60}
    appointment = book(tomorrow_at(10))
    for action in ("accept", "start", "complete"):
        act_on_appointment(actor=therapist_with_phone, appointment_id=appointment.pk, action=action)
    follow_up = Notification.objects.get(appointment=appointment, kind="follow_up")
    completed = Transition.objects.get(appointment=appointment, action="complete").at
    assert follow_up.send_after == completed + timedelta(minutes=60)
    assert follow_up.enqueued_at is None  # no countdown in the broker: the sweep sends it

    assert deliver(notification_id=follow_up.pk) == "skipped"  # not due yet
    requeue_stale(now=completed + timedelta(minutes=59))
    follow_up.refresh_from_db()
    assert follow_up.enqueued_at is None
    requeue_stale(now=completed + timedelta(minutes=61))
    follow_up.refresh_from_db()
    assert follow_up.enqueued_at == completed + timedelta(minutes=61)
    assert deliver(notification_id=follow_up.pk, now=completed + timedelta(minutes=61)) == "sent"


def test_an_assigned_trip_tells_the_driver(book, tomorrow_at):
    driver = factories.driver(phone="+639190001111")  # hired first: capacity is checked
    appointment = book(tomorrow_at(10), needs_transport=True)
    set_shift(driver=driver, on_shift=True)
    run_pass(now=tomorrow_at(9))
    row = Notification.objects.get(kind="trip_assigned")
    trip = appointment.trips.get(leg="dropoff")
    assert (row.user_id, row.trip_id, row.audience, row.to) == (
        driver.pk,
        trip.pk,
        "driver",
        driver.phone,
    )
    assert "09:15" in row.body and appointment.address in row.body


# --- reminders ------------------------------------------------------------------------------


@pytest.fixture
def three_days_ahead():
    start = timezone.localtime() + timedelta(days=3)
    return start.replace(hour=10, minute=0, second=0, microsecond=0)


def reminders(appointment: Appointment, status: str = "pending") -> list[tuple[str, str]]:
    return sorted(
        Notification.objects.filter(
            appointment=appointment, kind__startswith="reminder", status=status
        ).values_list("kind", "audience")
    )


def test_reminders_24h_and_2h_before_once_each(book, three_days_ahead):
    start = three_days_ahead
    appointment = book(start)

    assert queue_reminders(now=start - timedelta(hours=25)) == []
    assert len(queue_reminders(now=start - timedelta(hours=23, minutes=59))) == 2
    assert reminders(appointment) == [("reminder_24h", "client"), ("reminder_24h", "therapist")]
    assert queue_reminders(now=start - timedelta(hours=23)) == []  # once

    assert len(queue_reminders(now=start - timedelta(hours=1, minutes=50))) == 2
    assert ("reminder_2h", "client") in reminders(appointment)
    assert queue_reminders(now=start - timedelta(hours=1)) == []
    body = Notification.objects.get(appointment=appointment, kind="reminder_2h", audience="client")
    assert "today" in body.body and "10:00" in body.body


def test_no_24h_reminder_for_a_booking_made_after_it_was_due(book, three_days_ahead):
    start = three_days_ahead
    appointment = book(start)
    # Booked 20 hours before: the confirmation went out; a "tomorrow" reminder would not.
    Transition.objects.filter(appointment=appointment).update(at=start - timedelta(hours=20))
    assert queue_reminders(now=start - timedelta(hours=19)) == []
    assert len(queue_reminders(now=start - timedelta(hours=1))) == 2  # the 2 h one still goes


def test_no_reminder_for_a_cancelled_appointment_and_pending_ones_are_cancelled(
    book, three_days_ahead, desk
):
    start = three_days_ahead
    appointment = book(start)
    queue_reminders(now=start - timedelta(hours=23))
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel")
    assert reminders(appointment) == []
    assert len(reminders(appointment, status="cancelled")) == 2
    assert queue_reminders(now=start - timedelta(hours=1)) == []


def test_rescheduling_cancels_pending_reminders_and_reminds_at_the_new_time(
    book, three_days_ahead, desk, therapist_with_phone
):
    start = three_days_ahead
    appointment = book(start)
    queue_reminders(now=start - timedelta(hours=23))
    new_start = start + timedelta(hours=4)
    reschedule_appointment(actor=desk, appointment_id=appointment.pk, start=new_start)
    # On the scans' clock, the move happened 22 h before the old time.
    Transition.objects.filter(appointment=appointment, action="reschedule").update(
        at=start - timedelta(hours=22)
    )
    act_on_appointment(actor=therapist_with_phone, appointment_id=appointment.pk, action="accept")
    assert reminders(appointment) == []  # none at the old time
    assert len(reminders(appointment, status="cancelled")) == 2

    assert queue_reminders(now=new_start - timedelta(hours=25)) == []
    written = queue_reminders(now=new_start - timedelta(hours=23))
    assert len(written) == 2
    stamp = int(new_start.timestamp())
    assert all(f":at{stamp}:" in row.key for row in Notification.objects.filter(pk__in=written))
    assert new_start.strftime("%H:%M") in Notification.objects.get(pk=written[0]).body


# --- delivery ------------------------------------------------------------------------------


def one(book, tomorrow_at) -> Notification:
    appointment = book(tomorrow_at(10))
    return Notification.objects.get(appointment=appointment, audience="client")


def test_deliver_sends_once_even_when_asked_twice(book, tomorrow_at, provider):
    row = one(book, tomorrow_at)
    assert deliver(notification_id=row.pk) == "sent"
    assert deliver(notification_id=row.pk) == "skipped"  # the broker delivered it twice
    row.refresh_from_db()
    assert (row.status, row.attempts, row.lease_until) == ("sent", 1, None)
    assert row.provider_id.startswith("fake-") and row.sent_at is not None
    assert provider.calls() == {row.key: 1}


def test_transient_failure_backs_off_and_retries(
    book, tomorrow_at, provider, django_capture_on_commit_callbacks
):
    row = one(book, tomorrow_at)
    provider.configure(Behaviour(transient_rate=1.0))
    before = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        assert deliver(notification_id=row.pk) == "retry"
    assert len(callbacks) == 1  # the next attempt, enqueued with its countdown
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "try again" in row.last_error
    # Base 10 s, first attempt: between 5 and 10 s (half fixed, half jitter).
    delay = (row.send_after - before).total_seconds()
    assert 5 <= delay <= 10.5

    assert deliver(notification_id=row.pk) == "skipped"  # too early: the backoff holds
    provider.configure(Behaviour())
    assert deliver(notification_id=row.pk, now=row.send_after) == "sent"


def test_backoff_doubles_up_to_the_cap_with_jitter(provider):
    for attempts, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = [backoff(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_after_the_last_attempt_it_fails_and_the_desk_is_told(book, tomorrow_at, provider):
    row = one(book, tomorrow_at)
    provider.configure(Behaviour(transient_rate=1.0))
    outcomes = []
    for _ in range(3):
        outcomes.append(deliver(notification_id=row.pk, now=timezone.now() + timedelta(hours=1)))
    assert outcomes == ["retry", "retry", "failed"]
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 3)
    assert "try again (call 3)" in row.last_error
    event = StreamEvent.objects.get(type=NOTIFICATION_FAILED)
    assert event.data["id"] == row.pk and event.data["attempts"] == 3
    assert "+63" not in str(event.data)  # no phone numbers on the stream


def test_permanent_failure_fails_at_once(book, tomorrow_at, provider):
    row = one(book, tomorrow_at)
    provider.configure(Behaviour(permanent_rate=1.0))
    assert deliver(notification_id=row.pk) == "failed"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (
        "failed",
        1,
        "fake provider: recipient rejected",
    )
    assert StreamEvent.objects.filter(type=NOTIFICATION_FAILED).count() == 1


def test_unknown_outcome_without_provider_dedupe_is_not_repeated(
    book, tomorrow_at, provider, settings
):
    backends = {"sms": f"{__name__}.UnsureProvider", "email": FAKE, "whatsapp": FAKE}
    settings.SCHEDULING = {**settings.SCHEDULING, "NOTIFY_BACKENDS": backends}
    row = one(book, tomorrow_at)
    assert deliver(notification_id=row.pk) == "failed"
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == 1
    assert "outcome unknown" in row.last_error and "not sent again" in row.last_error


# --- the sweep -------------------------------------------------------------------------------


def crashed_mid_send(row: Notification, *, lease_ended: timedelta) -> None:
    """What a worker killed between claim and record leaves behind."""
    Notification.objects.filter(pk=row.pk).update(
        status="sending", attempts=1, lease_until=timezone.now() - lease_ended
    )


def test_sweep_resends_a_dead_workers_claim_when_the_provider_dedupes(book, tomorrow_at, provider):
    row = one(book, tomorrow_at)
    crashed_mid_send(row, lease_ended=timedelta(seconds=-30))
    assert requeue_stale()["reclaimed"] == 0  # the lease still runs: maybe still sending

    crashed_mid_send(row, lease_ended=timedelta(seconds=1))
    assert requeue_stale()["reclaimed"] == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.enqueued_at >= timezone.now() - timedelta(seconds=5)
    assert deliver(notification_id=row.pk) == "sent"


def test_sweep_fails_a_dead_workers_claim_when_the_provider_cannot_dedupe(
    book, tomorrow_at, settings
):
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {
            **settings.SCHEDULING["NOTIFY_BACKENDS"],
            "sms": f"{__name__}.UnsureProvider",
        },
    }
    row = one(book, tomorrow_at)
    crashed_mid_send(row, lease_ended=timedelta(seconds=1))
    assert requeue_stale()["abandoned"] == 1
    row.refresh_from_db()
    assert row.status == "failed" and "outcome unknown" in row.last_error
    assert StreamEvent.objects.filter(type=NOTIFICATION_FAILED).count() == 1


def test_sweep_requeues_only_what_is_overdue(book, tomorrow_at, settings, provider):
    settings.SCHEDULING = {**settings.SCHEDULING, "NOTIFY_STALE_SECONDS": 120}
    lost = one(book, tomorrow_at)
    fresh = Notification.objects.exclude(pk=lost.pk).get()
    Notification.objects.filter(pk=lost.pk).update(send_after=timezone.now() - timedelta(minutes=5))

    assert requeue_stale()["requeued"] == 1
    lost.refresh_from_db()
    assert lost.enqueued_at >= timezone.now() - timedelta(seconds=5)
    # Enqueued again just now: not stale again until another NOTIFY_STALE_SECONDS pass.
    assert requeue_stale()["requeued"] == 0
    fresh.refresh_from_db()
    assert fresh.status == "pending"


def test_retry_failed_gives_fresh_attempts(book, tomorrow_at, provider):
    row = one(book, tomorrow_at)
    provider.configure(Behaviour(permanent_rate=1.0))
    deliver(notification_id=row.pk)
    earlier = Notification.objects.exclude(pk=row.pk).get()
    deliver(notification_id=earlier.pk)
    Notification.objects.filter(pk=earlier.pk).update(updated_at=timezone.now() - timedelta(days=2))

    assert retry_failed(since=timezone.now() - timedelta(days=1)) == [row.pk]
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)
    provider.configure(Behaviour())
    assert deliver(notification_id=row.pk) == "sent"
    assert retry_failed() == [earlier.pk]
