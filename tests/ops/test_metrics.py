"""GET /metrics: refused without the token, off without the setting, and after real
traffic it parses (with prometheus_client's own parser) into non-zero request counts by
route, query counts, task runs and the database's backlogs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from config.celery import app
from tests.factories import api

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape() -> dict[tuple[str, tuple], float]:
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_off_when_the_token_is_empty(settings):
    settings.METRICS_TOKEN = ""
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_refused_without_or_with_a_wrong_token(token):
    missing = APIClient().get("/metrics")
    assert missing.status_code == 401 and b"Bearer" in missing.content
    wrong = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer guess")
    assert wrong.status_code == 403 and TOKEN not in wrong.content.decode()


def test_requests_are_counted_by_route_and_status(token, desk):
    before = scrape()
    assert APIClient().get("/health/").status_code == 200
    assert api(desk).get("/api/appointments/").status_code == 200
    assert APIClient().get("/no/such/page/").status_code == 404
    after = scrape()
    count = "scheduling_http_request_duration_seconds_count"
    health = {"route": "/health/", "method": "GET", "status": "200"}
    assert value(after, count, **health) == value(before, count, **health) + 1
    listing = {"route": "/api/appointments/", "method": "GET", "status": "200"}
    assert value(after, count, **listing) == value(before, count, **listing) + 1
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    assert value(after, count, **unmatched) == value(before, count, **unmatched) + 1
    queries = "scheduling_http_request_db_queries_sum"
    assert value(after, queries, route="/api/appointments/") > value(
        before, queries, route="/api/appointments/"
    )


def test_task_runs_and_failures_by_task(token):
    from scheduling import tasks  # noqa: F401  (registers the tasks)

    before = scrape()
    app.tasks["scheduling.sweep.expire_overdue"].apply()
    # A wrong call: the task takes notification ids, no keywords.
    app.tasks["scheduling.notify.deliver"].apply(kwargs={"nonsense": 1}, throw=False)
    after = scrape()
    runs = "scheduling_celery_task_runs_total"
    ok = {"task": "scheduling.sweep.expire_overdue", "outcome": "success"}
    assert value(after, runs, **ok) == value(before, runs, **ok) + 1
    failed = {"task": "scheduling.notify.deliver", "outcome": "failure"}
    assert value(after, runs, **failed) == value(before, runs, **failed) + 1
    assert (
        value(
            after,
            "scheduling_celery_task_duration_seconds_count",
            task="scheduling.sweep.expire_overdue",
        )
        == value(
            before,
            "scheduling_celery_task_duration_seconds_count",
            task="scheduling.sweep.expire_overdue",
        )
        + 1
    )


def test_backlogs_come_from_the_database(token, book, tomorrow_at):
    book(tomorrow_at(10), needs_transport=True)
    samples = scrape()
    assert value(samples, "scheduling_notifications", status="pending") >= 0
    assert ("scheduling_notification_oldest_pending_age_seconds", ()) in samples


def test_a_trip_waits_for_a_driver_from_when_dispatch_would_serve_it(
    token, book, tomorrow_at, settings
):
    """Queued for tomorrow is not waiting; 30 minutes after its window came within the
    horizon (nobody dispatched it meanwhile), it has waited 30 minutes."""
    from datetime import timedelta

    import time_machine

    from scheduling.models import Trip
    from scheduling.services.dispatch import horizon

    book(tomorrow_at(10), needs_transport=True)
    [trip] = Trip.objects.filter(status="queued", leg="dropoff")
    samples = scrape()
    assert value(samples, "scheduling_trips_queued") >= 1
    assert value(samples, "scheduling_trips_waiting_for_driver") == 0
    assert value(samples, "scheduling_trip_longest_wait_seconds") == 0
    became = trip.window_start - horizon()
    with time_machine.travel(became + timedelta(minutes=30), tick=False):
        samples = scrape()
    assert value(samples, "scheduling_trips_waiting_for_driver") >= 1
    assert value(samples, "scheduling_trip_longest_wait_seconds") == pytest.approx(1800)


WRITER = """
import django
django.setup()
from scheduling.observability.metrics import TASK_RUNS
TASK_RUNS.labels("scheduling.sweep.reminders", "success").inc()
"""


def test_multi_process_mode_adds_every_process_up(token, tmp_path, monkeypatch):
    """Two processes (as two gunicorn or Celery workers) each count one run in the shared
    directory; /metrics in a third sees two, plus the database's readings."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "SQLITE_PATH": ":memory:",
    }
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WRITER], env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    # A process with no socket reports no realtime gauges (no lag of 0 per worker).
    assert list(tmp_path.glob("gauge_*.db")) == []
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape()
    runs = {"task": "scheduling.sweep.reminders", "outcome": "success"}
    assert value(samples, "scheduling_celery_task_runs_total", **runs) == 2
    assert ("scheduling_trips_waiting_for_driver", ()) in samples


@pytest.mark.redis
def test_queue_depths_are_read_from_the_broker(token, settings):
    from scheduling import tasks  # noqa: F401  (registers the tasks)

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    before = value(scrape(), "scheduling_celery_queue_depth", queue="notify")
    try:
        app.tasks["scheduling.notify.deliver"].apply_async(args=(999_999,), countdown=None)
        assert value(scrape(), "scheduling_celery_queue_depth", queue="notify") == before + 1
    finally:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            connection.default_channel.client.delete("notify")
        app.conf.task_always_eager = True


def test_beat_health_is_health_checks_rule_per_task(token):
    """scheduling_periodic_task_late is /health/'s rule (late_periodic_tasks): every task
    late before its first run; a run now makes it on time until two periods have passed."""
    from datetime import UTC, datetime, timedelta

    import time_machine

    from scheduling.services.operations import periodic_periods, record_periodic_run

    periods = periodic_periods()
    task, period = "scheduling.sweep.reminders", periods["scheduling.sweep.reminders"]
    t0 = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(t0, tick=False):
        samples = scrape()
        for name, seconds in periods.items():
            assert value(samples, "scheduling_periodic_task_late", task=name) == 1
            assert value(samples, "scheduling_periodic_task_period_seconds", task=name) == seconds
        assert ("scheduling_periodic_task_last_run_timestamp_seconds", (("task", task),)) not in (
            samples
        )
        record_periodic_run(task=task, now=t0)
        samples = scrape()
        assert value(samples, "scheduling_periodic_task_late", task=task) == 0
        assert value(
            samples, "scheduling_periodic_task_last_run_timestamp_seconds", task=task
        ) == pytest.approx(t0.timestamp())
    with time_machine.travel(t0 + timedelta(seconds=2 * period + 1), tick=False):
        assert value(scrape(), "scheduling_periodic_task_late", task=task) == 1


def test_the_stream_head_is_the_committed_seq(token, book, tomorrow_at):
    from scheduling.realtime.events import committed_head

    book(tomorrow_at(10))
    assert committed_head() > 0
    assert value(scrape(), "scheduling_stream_committed_seq") == committed_head()
