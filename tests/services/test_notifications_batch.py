"""Delivery in batches (issue 17): one task per transaction's messages, each message with
its own claim, outcome and retry (scheduling/services/notifications/delivery.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from celery.signals import task_prerun
from django.db import transaction

from scheduling import background, tasks
from scheduling.models import Appointment, Notification
from scheduling.notify import Message, TransientError
from scheduling.services.appointments import create_appointment
from scheduling.services.notifications import delivery
from scheduling.services.notifications.sweeps import requeue_stale

pytestmark = pytest.mark.django_db

RECORDER = "tests.services.test_notifications_batch.Recorder"


class Recorder:
    """A provider without idempotency keys (a second send would be a second message) that
    counts what it was given; keys listed in `refuse` fail transiently."""

    dedupes_by_key = False
    sent: Counter[str] = Counter()
    refuse: set[str] = set()

    def send(self, message: Message) -> str:
        if message.key in self.refuse:
            raise TransientError("provider busy")
        self.sent[message.key] += 1
        return f"rec-{message.key}"


@pytest.fixture
def recorder(settings):
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {"sms": RECORDER, "whatsapp": RECORDER, "email": RECORDER},
        "NOTIFY_MAX_ATTEMPTS": 3,
        "NOTIFY_RETRY_BASE_SECONDS": 10,
        "NOTIFY_RETRY_MAX_SECONDS": 60,
    }
    Recorder.sent = Counter()
    Recorder.refuse = set()
    yield Recorder
    Recorder.sent = Counter()
    Recorder.refuse = set()


@pytest.fixture
def book(desk, service, therapist, client_record):
    therapist.phone = "+639181112222"
    therapist.save()

    def book(start) -> Appointment:
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
        )

    return book


def batches(callbacks) -> list[list[int]]:
    return [c.batch for c in callbacks if hasattr(c, "batch")]


def test_a_booking_enqueues_one_task_for_its_two_messages(
    book, tomorrow_at, recorder, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        appointment = book(tomorrow_at(10))
    rows = sorted(Notification.objects.filter(appointment=appointment).values_list("pk", flat=True))
    assert len(rows) == 2
    assert [sorted(b) for b in batches(callbacks)] == [rows]
    assert not [c for c in callbacks if getattr(c, "job", (None,))[0] == background.DELIVER]

    assert tasks.deliver_notification(*rows) == ["sent", "sent"]
    assert sorted(Recorder.sent.values()) == [1, 1]
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


def test_two_bookings_in_one_transaction_share_one_task(
    book, tomorrow_at, recorder, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        book(tomorrow_at(10))
        book(tomorrow_at(14))
    assert [len(b) for b in batches(callbacks)] == [4]


def test_a_rolled_back_savepoint_keeps_the_rest_of_the_batch(
    book, tomorrow_at, recorder, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                book(tomorrow_at(10))
                raise RuntimeError("this booking failed")
        except RuntimeError:
            pass
        kept = book(tomorrow_at(14))
    rows = set(Notification.objects.filter(appointment=kept).values_list("pk", flat=True))
    assert Notification.objects.count() == 2
    assert [set(b) for b in batches(callbacks)] == [rows]


def test_one_failing_message_retries_alone(book, tomorrow_at, recorder):
    appointment = book(tomorrow_at(10))
    client_row = Notification.objects.get(appointment=appointment, audience="client")
    therapist_row = Notification.objects.get(appointment=appointment, audience="therapist")
    Recorder.refuse = {therapist_row.key}

    assert tasks.deliver_notification(therapist_row.pk, client_row.pk) == ["retry", "sent"]
    client_row.refresh_from_db()
    therapist_row.refresh_from_db()
    assert client_row.status == "sent" and Recorder.sent[client_row.key] == 1
    assert therapist_row.status == "pending" and therapist_row.attempts == 1
    assert therapist_row.last_error == "provider busy"
    assert therapist_row.send_after > client_row.sent_at  # its own backoff


def test_a_batch_run_again_after_a_crash_sends_nothing_twice(book, tomorrow_at, recorder):
    appointment = book(tomorrow_at(10))
    first, second = Notification.objects.filter(appointment=appointment).order_by("pk")
    # The worker got through the first message and died; the broker hands the batch again.
    assert delivery.deliver(notification_id=first.pk) == "sent"
    assert tasks.deliver_notification(first.pk, second.pk) == ["skipped", "sent"]
    assert tasks.deliver_notification(first.pk, second.pk) == ["skipped", "skipped"]
    assert Recorder.sent == Counter({first.key: 1, second.key: 1})


def test_the_single_id_task_of_before_still_delivers(book, tomorrow_at, recorder):
    appointment = book(tomorrow_at(10))
    row = Notification.objects.filter(appointment=appointment).first()
    assert tasks.deliver_notification(row.pk) == ["sent"]
    assert Recorder.sent[row.key] == 1


def test_rows_past_the_claim_window_go_to_a_new_task(book, tomorrow_at, recorder, settings):
    appointment = book(tomorrow_at(10))
    ids = list(Notification.objects.filter(appointment=appointment).values_list("pk", flat=True))
    settings.SCHEDULING = {**settings.SCHEDULING, "NOTIFY_TIME_LIMIT_SECONDS": 0}
    # The window is closed once the first is sent: the second is handed on (run at once
    # here, Celery being eager in tests), not claimed by this task.
    assert delivery.deliver_batch(notification_ids=ids) == ["sent", "deferred"]
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    assert sorted(Recorder.sent.values()) == [1, 1]


def test_the_sweep_hands_back_in_batches(
    client_record, recorder, django_capture_on_commit_callbacks, monkeypatch
):
    # Written without their task (a follow-up whose delay is over looks like this).
    Notification.objects.bulk_create(
        Notification(
            key=f"lost:{n}",
            kind="booking_created",
            channel="sms",
            audience="client",
            client=client_record,
            to="+639170000001",
            subject="Booking received",
            body="Hi",
        )
        for n in range(5)
    )
    monkeypatch.setattr(delivery, "BATCH_SIZE", 2)
    ran: list[int] = []

    def started(sender, args, **extra) -> None:
        if sender.name == background.DELIVER:
            ran.append(len(args))

    task_prerun.connect(started)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert requeue_stale()["requeued"] == 5
    finally:
        task_prerun.disconnect(started)
    assert [len(b) for b in batches(callbacks)] == [5]
    assert ran == [2, 2, 1]  # tasks of BATCH_SIZE at most
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    assert Recorder.sent == Counter({f"lost:{n}": 1 for n in range(5)})
