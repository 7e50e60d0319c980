"""Retention (scheduling/services/retention.py, `manage.py prune`): what is past its time
goes, in batches, and a stream client asking from before what is kept is told to reload
(410 on /api/events/, close code 4410 on the websocket), never handed a silent gap."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from io import StringIO

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from config.asgi import application
from scheduling.models import (
    DispatchDecision,
    EventCounter,
    IdempotencyKey,
    Notification,
    NotificationStatus,
    StreamEvent,
    StreamEventRecipient,
    TherapistChoice,
    WebhookEvent,
    WebhookOutcome,
)
from scheduling.realtime.events import EventBatch
from scheduling.services.appointments import create_appointment
from scheduling.services.retention import prune, stream_floor
from tests import factories

NOW = timezone.make_aware(datetime(2026, 6, 1, 9, 0))
A_YEAR_AGO = NOW - timedelta(days=400)  # past AUDIT_RETENTION_DAYS (365) too
HOST = [(b"host", b"localhost"), (b"origin", b"http://localhost")]


def add_events(user_ids: list[int], count: int = 1) -> None:
    with transaction.atomic():
        batch = EventBatch()
        for n in range(count):
            batch.add("test.event", {"n": n}, recipients=user_ids)
        batch.flush()


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def webhook(event_id: str, outcome: str, **fields) -> WebhookEvent:
    return WebhookEvent.objects.create(
        gateway="fake",
        event_id=event_id,
        raw_body="{}",
        received_at=timezone.now(),
        outcome=outcome,
        **fields,
    )


@pytest.fixture
def a_year_of_history(book, desk, therapist):
    """A booking (with its events, notifications, decisions) a year ago, one today."""
    with at(A_YEAR_AGO):
        old = book(timezone.now() + timedelta(days=1, hours=3), needs_transport=True)
        IdempotencyKey.objects.create(user=desk, key="old", fingerprint="x")
        TherapistChoice.objects.create(appointment=old, therapist=therapist, rule="fair")
        DispatchDecision.objects.create(trip=old.trips.first(), outcome="no_driver")
        webhook("old-settled", WebhookOutcome.APPLIED)
        webhook("old-flag-resolved", WebhookOutcome.FLAGGED, resolved_at=timezone.now())
        webhook("old-flag-open", WebhookOutcome.FLAGGED)  # kept: a person must look
        add_events([therapist.pk], count=5)
        stale = SessionStore()
        stale.set_expiry(3600)
        stale.create()
    with at(NOW - timedelta(hours=1)):
        new = book(timezone.now() + timedelta(days=1, hours=3), needs_transport=True)
        IdempotencyKey.objects.create(user=desk, key="new", fingerprint="y")
        DispatchDecision.objects.create(trip=new.trips.first(), outcome="no_driver")
        webhook("new", WebhookOutcome.APPLIED)
        fresh = SessionStore()
        fresh.set_expiry(3600)
        fresh.create()
    Notification.objects.update(status=NotificationStatus.SENT)
    return old, new


def test_prune_deletes_what_is_past_retention_and_keeps_the_rest(a_year_of_history):
    old, new = a_year_of_history
    old_seqs = set(
        StreamEvent.objects.filter(created_at__lt=NOW - timedelta(days=2)).values_list(
            "seq", flat=True
        )
    )
    new_seqs = set(StreamEvent.objects.exclude(seq__in=old_seqs).values_list("seq", flat=True))
    assert old_seqs and new_seqs and Notification.objects.filter(appointment=old).exists()

    with at(NOW):
        counts = prune(batch=2)

    assert set(StreamEvent.objects.values_list("seq", flat=True)) == new_seqs
    assert not StreamEventRecipient.objects.filter(event_id__in=old_seqs).exists()
    assert stream_floor() == max(old_seqs)
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert list(DispatchDecision.objects.values_list("trip__appointment", flat=True)) == [new.pk]
    assert not TherapistChoice.objects.exists()
    assert set(WebhookEvent.objects.values_list("event_id", flat=True)) == {"old-flag-open", "new"}
    assert Session.objects.count() == 1
    gone = Notification.objects.filter(appointment=old)
    assert set(gone.values_list("body", "subject", "to", "status")) == {("", "", "", "sent")}
    kept = Notification.objects.filter(appointment=new)
    assert kept.exists() and all(body for body in kept.values_list("body", flat=True))
    assert counts == {
        "stream_events": len(old_seqs),
        "idempotency_keys": 1,
        "dispatch_decisions": 1,
        "therapist_choices": 1,
        "webhook_events": 2,
        "sessions": 1,
        "notification_bodies": gone.count(),
    }
    with at(NOW):  # nothing left to do: a second run changes nothing
        assert set(prune(batch=2).values()) == {0}


def test_a_pending_notification_keeps_its_body_until_it_is_finished(a_year_of_history):
    old, _ = a_year_of_history
    Notification.objects.filter(appointment=old).update(status=NotificationStatus.PENDING)
    with at(NOW):
        prune()
    assert all(Notification.objects.filter(appointment=old).values_list("body", flat=True))


def test_dry_run_prints_what_it_would_delete_and_deletes_nothing(a_year_of_history):
    before = StreamEvent.objects.count(), IdempotencyKey.objects.count(), Session.objects.count()
    out = StringIO()
    with at(NOW):
        call_command("prune", "--dry-run", stdout=out)
    lines = out.getvalue().splitlines()
    old_events = StreamEvent.objects.filter(created_at__lt=NOW - timedelta(days=30)).count()
    assert f"Would delete {old_events} stream events older than 30 days" in lines
    assert "Would delete 1 idempotency keys older than 24 hours" in lines
    assert "Would delete 1 expired sessions" in lines
    assert "Would delete 2 raw gateway webhooks older than 365 days" in lines
    assert any(line.startswith("Would clear ") for line in lines)
    after = StreamEvent.objects.count(), IdempotencyKey.objects.count(), Session.objects.count()
    assert after == before and stream_floor() == 0

    with at(NOW):
        call_command("prune", stdout=out)
    assert f"Deleted {old_events} stream events older than 30 days" in out.getvalue()


def test_events_api_answers_410_with_a_reload_signal_when_after_is_pruned(
    a_year_of_history, therapist
):
    with at(NOW):
        prune()
    floor = stream_floor()
    newest = StreamEvent.objects.visible_to(therapist).order_by("-seq").first().seq
    api = factories.api(therapist)

    gone = api.get("/api/events/?after=0")
    assert gone.status_code == 410
    assert gone.json() == {
        "detail": gone.json()["detail"],
        "code": "stream_pruned",
        "pruned_through": floor,
        "last_seq": newest,
    }
    assert "reload" in gone.json()["detail"]
    assert api.get(f"/api/events/?after={floor - 1}").status_code == 410
    kept = api.get(f"/api/events/?after={floor}")
    assert kept.status_code == 200 and kept.json()["events"][-1]["seq"] == newest


@pytest.mark.django_db(transaction=True)
def test_the_websocket_closes_with_4410_when_after_is_pruned(settings, therapist):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with at(A_YEAR_AGO):
        add_events([therapist.pk], count=3)
    add_events([therapist.pk], count=2)
    prune()  # the real clock: the three from a year ago are past any retention
    token = Token.objects.create(user=therapist).key

    async def go():
        pruned = WebsocketCommunicator(application, f"/ws/stream/?after=1&token={token}", HOST)
        assert (await pruned.connect())[0]
        assert await pruned.receive_output(timeout=2) == {"type": "websocket.close", "code": 4410}
        kept = WebsocketCommunicator(application, f"/ws/stream/?after=3&token={token}", HOST)
        assert (await kept.connect())[0]
        frame = await kept.receive_json_from(timeout=2)
        assert [e["seq"] for e in frame["events"]] == [4, 5]
        await kept.disconnect()

    try:
        async_to_sync(go)()
    finally:
        channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
def test_a_page_opened_after_a_prune_starts_above_the_mark_and_stays(settings, client, therapist):
    """Someone with nothing left above the mark (every event of theirs was pruned) opens
    their page: it starts its stream at the mark, not at 0, so the catch-up and the socket
    answer normally instead of telling it to reload into the same page for ever."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with at(A_YEAR_AGO):
        add_events([therapist.pk], count=3)
    prune()
    floor = stream_floor()
    assert floor == 3 and not StreamEvent.objects.visible_to(therapist).exists()

    client.force_login(therapist)
    page = client.get("/therapist/")
    after = int(re.search(r'data-live-after="(\d+)"', page.content.decode()).group(1))
    assert after == floor
    caught_up = factories.api(therapist).get(f"/api/events/?after={after}")
    assert caught_up.status_code == 200 and caught_up.json()["events"] == []
    token = Token.objects.create(user=therapist).key

    async def go():
        # No `after`: the socket starts where a page opened now would.
        fresh = WebsocketCommunicator(application, f"/ws/stream/?token={token}", HOST)
        assert (await fresh.connect())[0]
        assert await fresh.receive_nothing(timeout=0.5)
        await fresh.disconnect()

    try:
        async_to_sync(go)()
    finally:
        channel_layers.backends.clear()


# --- a year of rows on PostgreSQL, pruned while bookings go on -----------------------------

EVENTS_PER_DAY = 200
YEAR_OF_EVENTS = """
    INSERT INTO scheduling_streamevent (seq, type, data, created_at)
    SELECT g, 'test.event', '{}'::jsonb, %(start)s + (g * interval '1 day') / %(per_day)s
    FROM generate_series(1, %(count)s) AS g
"""


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_year_of_events_is_pruned_in_batches_while_bookings_go_on(
    settings, desk, therapist, service, client_record, tomorrow_at
):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "appointment_create": (10_000, 60)}
    count = 365 * EVENTS_PER_DAY
    start = timezone.now() - timedelta(days=365)
    with connection.cursor() as cursor:
        cursor.execute(YEAR_OF_EVENTS, {"start": start, "per_day": EVENTS_PER_DAY, "count": count})
        cursor.execute(
            "INSERT INTO scheduling_streameventrecipient (event_id, user_id) "
            "SELECT seq, %s FROM scheduling_streamevent",
            [therapist.pk],
        )
    EventCounter.objects.update_or_create(pk=1, defaults={"last_seq": count})
    expected_kept = StreamEvent.objects.filter(
        created_at__gte=timezone.now() - timedelta(days=settings.RETENTION["STREAM_DAYS"])
    ).count()

    booked: list[int] = []
    errors: list[BaseException] = []
    pruning = threading.Event()

    def keep_booking() -> None:
        try:
            pruning.wait(timeout=30)
            for n in range(20):
                appointment = create_appointment(
                    actor=desk,
                    client_id=client_record.pk,
                    service_id=service.pk,
                    therapist_id=therapist.pk,
                    start=tomorrow_at(9) + timedelta(days=n // 4, hours=3 * (n % 4)),
                )
                booked.append(appointment.pk)
        except BaseException as exc:  # asserted below
            errors.append(exc)
        finally:
            connection.close()

    booking = threading.Thread(target=keep_booking, daemon=True)
    booking.start()
    with CaptureQueriesContext(connection) as queries:
        pruning.set()
        counts = prune(batch=1000)
    booking.join(timeout=120)

    assert not errors and len(booked) == 20
    # One short transaction per batch, each moving the retention mark.
    batches = [
        q
        for q in queries.captured_queries
        if q["sql"].startswith('UPDATE "scheduling_streamretention"')
    ]
    assert counts["stream_events"] == count - expected_kept
    assert len(batches) == (count - expected_kept) // 1000
    assert StreamEvent.objects.filter(seq__lte=count).count() == expected_kept
    assert stream_floor() == count - expected_kept
    # Every booking's events are there, after the kept tail, in order and without a gap.
    tail = list(StreamEvent.objects.filter(seq__gt=count).values_list("seq", flat=True))
    assert tail == list(range(count + 1, count + 1 + len(tail))) and len(tail) >= 20
    assert not StreamEventRecipient.objects.filter(event_id__lte=stream_floor()).exists()
