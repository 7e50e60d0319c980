"""The request id crosses into a real Celery worker: a booking's web request (in this
process, publishing to the test broker) and the worker's runs of its dispatch and
delivery tasks, the retries those runs enqueue, and the stream events the worker
publishes, all log with one id, as JSON lines on the worker's stdout, with nothing
personal in them. (tests/ops/test_logs.py covers the rest in-process.)"""

from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.models import Notification
from scheduling.notify.fake import Behaviour, store
from tests import factories
from tests.worker_support import Worker, needs_worker, producing_to, purge, wait_until, workers

pytestmark = needs_worker

# Celery's own format ("[2026-12-02 01:02:03,456: INFO/MainProcess] ...") or the text one.
LOG_LOOKING = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T][\d:,.]+Z?:? (DEBUG|INFO|WARNING|ERROR)")
FAKE = "scheduling.notify.fake.FakeProvider"
ATTEMPTS = 3
WORKER_ENV = {
    "LOG_FORMAT": "json",
    "NUM_PROXIES": "1",
    "NOTIFY_SMS_BACKEND": FAKE,
    "NOTIFY_WHATSAPP_BACKEND": FAKE,
    "NOTIFY_EMAIL_BACKEND": FAKE,
    "NOTIFY_MAX_ATTEMPTS": str(ATTEMPTS),
    "NOTIFY_RETRY_BASE_SECONDS": "0.05",
    "NOTIFY_RETRY_MAX_SECONDS": "0.1",
}


@pytest.fixture
def failing_provider(settings):
    settings.NUM_PROXIES = 1
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {"sms": FAKE, "whatsapp": FAKE, "email": FAKE},
        "NOTIFY_MAX_ATTEMPTS": ATTEMPTS,
    }
    provider = store()
    provider.reset()
    # Every attempt fails for now: each run enqueues the next from inside the worker.
    provider.configure(Behaviour(transient_rate=1.0))
    purge()
    with producing_to():
        yield provider
    purge()
    provider.reset()


def test_the_request_id_follows_a_booking_into_the_worker_and_onward(
    failing_provider, desk, service, therapist, client_record
):
    factories.ensure_driver()
    therapist.phone = "+639189876543"
    therapist.save()
    day = timezone.localdate() + timedelta(days=2)
    start = timezone.make_aware(datetime.combine(day, time(10)))
    token = Token.objects.create(user=desk).key
    api = APIClient()
    worker = Worker("logs", env=WORKER_ENV)
    with workers(worker):
        response = api.post(
            "/api/appointments/",
            {
                "client": client_record.pk,
                "service": service.pk,
                "therapist": therapist.pk,
                "start": start.isoformat(),
                "needs_transport": True,
            },
            format="json",
            headers={"Authorization": f"Token {token}", "X-Request-ID": "worker-life-1"},
        )
        assert response.status_code == 201, response.json()
        assert response["X-Request-ID"] == "worker-life-1"
        total = Notification.objects.count()
        assert total == 2  # the client and the therapist
        wait_until(
            lambda: Notification.objects.filter(status="failed").count() == total,
            timeout=30,
            what=f"{total} notifications to use up their {ATTEMPTS} attempts",
        )
        # The booking's messages go in one delivery task; each retry is a task of its own.
        expected_runs = 1 + total * (ATTEMPTS - 1)
        wait_until(
            lambda: len(runs(worker, "scheduling.notify.deliver")) >= expected_runs,
            timeout=10,
            what="the last runs' log lines",
        )
    records = json_lines(worker.log())
    delivered = runs(worker, "scheduling.notify.deliver")
    assert len(delivered) == expected_runs
    # The first run of each carried the request's id; every retry, enqueued by a run in
    # the worker, carried it on.
    assert {r["request_id"] for r in delivered} == {"worker-life-1"}
    assert len({r["task_id"] for r in delivered}) == expected_runs
    assert all(r["state"] == "success" and r["duration_ms"] >= 0 for r in delivered)
    dispatched = runs(worker, "scheduling.dispatch.run")
    assert dispatched and dispatched[0]["request_id"] == "worker-life-1"
    # The failures the worker announced on the stream: published under the same id.
    published = [r for r in records if r.get("kind") == "stream"]
    assert published and {r["request_id"] for r in published} == {"worker-life-1"}
    assert all(r["events"] == ["notification.failed"] for r in published)

    text = worker.log()
    bodies = [b for b in Notification.objects.values_list("body", flat=True) if b]
    secrets = [
        client_record.name,
        client_record.phone[1:],
        client_record.address,
        therapist.get_full_name(),
        therapist.phone[1:],
        *bodies,
    ]
    assert [secret for secret in secrets if secret in text] == []


def json_lines(text: str) -> list[dict]:
    """The worker's log records: every line that is one is a JSON object. The rest is
    what Celery prints rather than logs (its start-up banner, a warning about running as
    root, "Warm shutdown"), and none of it looks like a log line in another format."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
        else:
            assert not LOG_LOOKING.search(line), line
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    return records


def runs(worker: Worker, task: str) -> list[dict]:
    return [
        r for r in json_lines(worker.log()) if r.get("kind") == "task" and r.get("task") == task
    ]
