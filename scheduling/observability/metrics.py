"""Prometheus metrics: the definitions, and the scrape-time readings of the database.

Counters and histograms are per process and, when PROMETHEUS_MULTIPROC_DIR is set (the
full stack: gunicorn workers, Celery workers, daphne), written to files in that
directory, which /metrics adds up (prometheus_client's multi-process mode). Without it
(the embedded default, most tests) they live in this process only. What the database
or the broker knows (backlogs, waits, queue depths) is read when /metrics is scraped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

REQUEST_SECONDS = Histogram(
    "scheduling_http_request_duration_seconds",
    "HTTP request duration by route (the URL pattern, not the path) and status.",
    ["route", "method", "status"],
)
REQUEST_QUERIES = Histogram(
    "scheduling_http_request_db_queries",
    "Database queries per HTTP request, by route.",
    ["route"],
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200),
)
TASK_RUNS = Counter(
    "scheduling_celery_task_runs", "Celery task runs by task and outcome.", ["task", "outcome"]
)
TASK_SECONDS = Histogram(
    "scheduling_celery_task_duration_seconds", "Celery task run time by task.", ["task"]
)

QUEUES = ("dispatch", "notify", "default")


def registry() -> CollectorRegistry:
    """What /metrics serves: every process's counters, plus the scrape-time readings."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
    else:
        collected = CollectorRegistry()
        collected.register(_ProcessMetrics())
    collected.register(StateCollector())
    return collected


class _ProcessMetrics(Collector):
    """This process's own metrics (single-process mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class StateCollector(Collector):
    """Backlogs and waits, read from PostgreSQL and the broker at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from _notifications()
        yield from _trips()
        yield _queue_depths()


def _notifications() -> Iterator[Metric]:
    from scheduling.models import Notification, NotificationStatus
    from scheduling.services.operations import outbox_backlog_seconds

    by_status = GaugeMetricFamily(
        "scheduling_notifications", "Notifications by outcome (status).", labels=["status"]
    )
    counts = dict(Notification.objects.values_list("status").annotate(n=Count("id")))
    for status in NotificationStatus.values:
        by_status.add_metric([status], counts.get(status, 0))
    yield by_status
    yield GaugeMetricFamily(
        "scheduling_notification_oldest_pending_age_seconds",
        "How long the oldest due pending notification has waited (the outbox backlog).",
        value=outbox_backlog_seconds(now=timezone.now()),
    )


def _trips() -> Iterator[Metric]:
    from scheduling.models import Trip, TripStatus

    now = timezone.now()
    waiting = Trip.objects.filter(status=TripStatus.QUEUED).aggregate(
        n=Count("id"), since=Min("created_at")
    )
    yield GaugeMetricFamily(
        "scheduling_trips_waiting_for_driver", "Trips queued without a driver.", value=waiting["n"]
    )
    longest = (now - waiting["since"]).total_seconds() if waiting["since"] else 0.0
    yield GaugeMetricFamily(
        "scheduling_trip_longest_wait_seconds",
        "How long the longest-queued trip has waited for a driver.",
        value=max(0.0, longest),
    )


def _queue_depths() -> Metric:
    """Messages waiting in each Celery queue (Redis lists); none in the embedded default."""
    depths = GaugeMetricFamily(
        "scheduling_celery_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
    )
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return depths
    from config.celery import app

    with app.connection_for_read(settings.CELERY_BROKER_URL) as connection:
        client = connection.default_channel.client
        for queue in QUEUES:
            depths.add_metric([queue], client.llen(queue))
    return depths
