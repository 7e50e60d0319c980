"""Notification delivery by real Celery workers, against real Redis and PostgreSQL.

The provider is the fake one, counting in Redis what the worker processes send: it
dedupes by key like a provider that takes idempotency keys, and can fail on demand.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from django.db.models import Count

from scheduling.models import Notification, StreamEvent
from scheduling.notify.fake import Behaviour, store
from scheduling.services.notifications.delivery import NOTIFICATION_FAILED
from scheduling.services.notifications.sweeps import requeue_stale
from tests.worker_support import (
    RedisServer,
    Worker,
    bookings,
    needs_worker,
    producing_to,
    purge,
    wait_until,
    workers,
)

pytestmark = needs_worker

FAKE = "scheduling.notify.fake.FakeProvider"
MAX_ATTEMPTS = 8
# Short everything, the same in the worker processes (environment) and in this one.
DELIVERY = {
    "NOTIFY_SMS_BACKEND": FAKE,
    "NOTIFY_WHATSAPP_BACKEND": FAKE,
    "NOTIFY_EMAIL_BACKEND": FAKE,
    "NOTIFY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "NOTIFY_RETRY_BASE_SECONDS": "0.05",
    "NOTIFY_RETRY_MAX_SECONDS": "0.4",
    "NOTIFY_TIME_LIMIT_SECONDS": "2",  # a claim's lease: 4 s
    "NOTIFY_STALE_SECONDS": "1",
}


@pytest.fixture
def delivery(settings):
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {"sms": FAKE, "whatsapp": FAKE, "email": FAKE},
        "NOTIFY_MAX_ATTEMPTS": MAX_ATTEMPTS,
        "NOTIFY_RETRY_BASE_SECONDS": 0.05,
        "NOTIFY_RETRY_MAX_SECONDS": 0.4,
        "NOTIFY_TIME_LIMIT_SECONDS": 2,
        "NOTIFY_STALE_SECONDS": 1,
    }
    provider = store()
    provider.reset()
    purge()
    with producing_to():
        yield provider
    purge()
    provider.reset()


def statuses() -> Counter:
    return Counter(dict(Notification.objects.values_list("status").annotate(n=Count("id"))))


def settled(total: int) -> bool:
    return sum(statuses()[s] for s in ("sent", "failed")) == total


def sweep_until_settled(total: int, *, timeout: float) -> None:
    """What beat does every 30 s, here every half second: re-enqueue what was lost."""
    deadline = time.monotonic() + timeout
    while not settled(total):
        if time.monotonic() > deadline:
            pytest.fail(f"not settled after {timeout}s: {statuses()}")
        requeue_stale()
        time.sleep(0.5)


def assert_each_sent_once(provider) -> None:
    rows = list(Notification.objects.values_list("key", "status", "provider_id"))
    delivered = Counter(provider.log())
    assert all(count == 1 for count in delivered.values()), delivered.most_common(3)
    assert set(delivered) == {key for key, status, _ in rows if status == "sent"}
    assert all(pid.startswith("fake-") for _, status, pid in rows if status == "sent")


def test_a_booking_is_delivered_by_a_worker(delivery):
    with workers(Worker("deliver", queues=("notify",), env=DELIVERY)):
        (appointment,) = bookings(1)
        wait_until(lambda: settled(2), timeout=15, what="2 notifications sent")

    assert statuses() == {"sent": 2}
    assert_each_sent_once(delivery)
    sent = Notification.objects.filter(appointment=appointment)
    assert {n.audience for n in sent} == {"client", "therapist"}
    assert all(n.attempts == 1 and n.sent_at for n in sent)


def test_transient_failures_are_retried_until_sent_and_permanent_ones_fail(delivery):
    behaviour = Behaviour(transient_rate=0.3, permanent_rate=0.05, seed="fault-rates")
    delivery.configure(behaviour)
    with workers(Worker("rates", queues=("notify",), concurrency=2, env=DELIVERY)):
        bookings(100)
        total = Notification.objects.count()
        assert total == 200
        wait_until(lambda: settled(total), timeout=60, what=f"{total} notifications settled")

    keys = list(Notification.objects.values_list("key", flat=True))
    # The oracle: which keys the provider refuses for good, and which (if any) fail
    # transiently on every one of their attempts.
    permanent = {k for k in keys if behaviour.fails_permanently(k)}
    exhausted = {
        k
        for k in keys
        if k not in permanent
        and all(behaviour.fails_transiently(k, a) for a in range(1, MAX_ATTEMPTS + 1))
    }
    failed = set(Notification.objects.filter(status="failed").values_list("key", flat=True))
    assert permanent, "the seed should give some permanent failures"
    assert failed == permanent | exhausted
    assert_each_sent_once(delivery)

    retried = Notification.objects.filter(status="sent", attempts__gt=1)
    assert retried.count() >= 20  # about 30 % needed a second attempt
    assert all("try again" in n.last_error for n in retried)
    calls = delivery.calls()
    assert all(calls[n.key] == n.attempts for n in Notification.objects.all())
    # Every failure is on the desk's stream, once.
    failed_events = StreamEvent.objects.filter(type=NOTIFICATION_FAILED)
    assert sorted(e.data["id"] for e in failed_events) == sorted(
        Notification.objects.filter(status="failed").values_list("id", flat=True)
    )


def in_flight() -> set[str]:
    return set(Notification.objects.filter(status="sending").values_list("key", flat=True))


def test_kill_9_during_a_burst_every_notification_is_sent_exactly_once(delivery):
    # Each send takes 30 ms before the provider has it and 30 ms more before it answers,
    # so a kill finds sends cut off on both sides of the provider's delivery.
    delivery.configure(Behaviour(latency_ms=30, answer_ms=30))
    bookings(100)  # 200 tasks wait in the broker: nobody consumes yet
    total = Notification.objects.count()
    burst = Worker("burst", queues=("notify",), concurrency=2, env=DELIVERY).start()
    try:
        # kill -9 one pool process mid-send: the main process requeues its message, whose
        # row stays claimed (`sending`) until the sweep after the lease.
        wait_until(
            lambda: len(delivery.log()) >= 30 and len(in_flight()) == 2, timeout=60, what="30 sent"
        )
        os.kill(burst.pool_pids()[0], signal.SIGKILL)
        time.sleep(0.5)  # the surviving process finishes its send
        stuck = in_flight()
        # Then the whole worker, main process and pool, with messages unacknowledged.
        wait_until(
            lambda: len(delivery.log()) >= 90 and len(in_flight() - stuck) == 2,
            timeout=60,
            what="90 sent",
        )
        burst.kill()
    finally:
        burst.stop()
    cut_off = set(Notification.objects.filter(status="sending").values_list("key", flat=True))
    assert cut_off, "the kill found no send in flight"
    assert statuses()["sent"] < total, "the burst was over before the kill"

    with workers(Worker("after", queues=("notify",), concurrency=2, env=DELIVERY)):
        sweep_until_settled(total, timeout=60)

    assert statuses() == {"sent": total}
    assert_each_sent_once(delivery)
    # Only sends cut off by a kill went to the provider twice (with the same key, so it
    # delivered once); nothing else was repeated.
    repeats = {key for key, n in delivery.calls().items() if n > 1}
    assert repeats, "no send was repeated: the test did not exercise the crash path"
    assert repeats <= cut_off, repeats - cut_off
    assert len(cut_off) <= 4, cut_off  # at most two in flight at each of the two kills


def test_redis_down_for_a_while_loses_nothing(delivery, caplog):
    broker = RedisServer().start()
    try:
        with producing_to(broker.url):
            delivery.configure(Behaviour(latency_ms=10))
            worker = Worker("outage", queues=("notify",), env=DELIVERY, broker=broker.url)
            with workers(worker):
                bookings(30)
                wait_until(lambda: statuses()["sent"] >= 10, timeout=20, what="10 sent")
                broker.stop()  # and with it every message it held
                started = time.monotonic()
                during = bookings(15)  # the desk keeps booking: commits succeed
                assert len(during) == 15
                assert time.monotonic() - started < 30
                assert "broker unreachable" in caplog.text
                time.sleep(1)
                broker.start()
                total = Notification.objects.count()
                assert total == 90
                sweep_until_settled(total, timeout=90)
    finally:
        broker.stop()

    assert statuses() == {"sent": total}
    assert_each_sent_once(delivery)
