"""Deliveries through a provider that dedupes by key commit their claim and their `sent`
outcome without waiting for the disk; every other backend's wait, as do retries and
failures (scheduling/services/notifications/delivery.py, `lazy_commit_channels`).
PostgreSQL only: SQLite has no such setting and nothing changes there."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.models import Client, Notification
from scheduling.notify.fake import store
from scheduling.services.notifications import delivery

FAKE = "scheduling.notify.fake.FakeProvider"
CONSOLE = "scheduling.notify.console.ConsoleBackend"
LAZY = "set_config('synchronous_commit', 'off', true)"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def backends(settings):
    def use(sms: str) -> None:
        settings.SCHEDULING = {
            **settings.SCHEDULING,
            "NOTIFY_BACKENDS": {"sms": sms, "whatsapp": CONSOLE, "email": CONSOLE},
            "FAKE_PROVIDER_URL": "",
        }
        store().reset()

    return use


def pending(key: str) -> Notification:
    client = Client.objects.create(name="Ana Cruz", phone="+639171234567")
    return Notification.objects.create(
        key=key,
        kind="booking_created",
        channel="sms",
        audience="client",
        client=client,
        to=client.phone,
        subject="Booking received",
        body="Hi, we have your booking.",
        send_after=timezone.now(),
        enqueued_at=timezone.now(),
    )


def delivered(row: Notification) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert delivery.deliver(notification_id=row.pk) == "sent"
    row.refresh_from_db()
    assert row.status == "sent" and row.sent_at is not None
    return [q["sql"] for q in queries.captured_queries]


def test_a_deduping_provider_claims_and_records_without_waiting_for_the_disk(backends):
    backends(FAKE)
    assert delivery.lazy_commit_channels() == {"sms"}
    statements = delivered(pending("lazy:1"))
    assert len(statements) == 2  # the claim and the outcome, as before
    assert all(LAZY in sql for sql in statements)


def test_any_other_backend_waits_for_the_disk(backends):
    backends(CONSOLE)
    assert delivery.lazy_commit_channels() == frozenset()
    statements = delivered(pending("lazy:2"))
    assert len(statements) == 2
    assert not any("synchronous_commit" in sql for sql in statements)


def test_inside_a_callers_transaction_nothing_is_lazy(backends):
    # The setting would apply to the caller's whole commit: left alone there.
    backends(FAKE)
    row = pending("lazy:3")
    with transaction.atomic():
        statements = delivered(row)
    assert not any("synchronous_commit" in sql for sql in statements)


def test_the_claim_turns_the_setting_off_for_its_own_transaction_only(backends):
    backends(FAKE)
    row = pending("lazy:4")
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    sql = delivery.LAZY_CLAIM_SQL.format(claim=delivery.CLAIM_SQL, channel='"channel"')
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        before = cursor.fetchone()[0]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            sql, ["sending", adapt(now), adapt(now), row.pk, "pending", adapt(now), ["sms"]]
        )
        assert cursor.fetchone() is not None
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "off"
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == before
