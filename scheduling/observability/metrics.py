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
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
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

# Realtime processes (scheduling/observability/stream.py). The gauges are each
# process's own: in multi-process mode prometheus_client gives every live process's value
# a `pid` label ("liveall") and drops a process's values when it exits; the counters
# carry `pid` themselves, since multi-process mode would otherwise add them up.
WS_CONNECTIONS = Gauge(
    "scheduling_websocket_connections",
    "Open websocket connections on this realtime process, by stream (desk or personal).",
    ["stream"],
    multiprocess_mode="liveall",
)
WS_FRAMES = Counter(
    "scheduling_websocket_frames_sent",
    "Websocket frames sent, by realtime process and kind (events or ping).",
    ["pid", "kind"],
)
WS_EVENTS = Counter(
    "scheduling_websocket_events_sent",
    "Stream events sent to sockets (a frame carries one or more), by realtime process.",
    ["pid"],
)
_stream_lag: Gauge | None = None


def stream_lag() -> Gauge:
    """The stream lag gauge, made on first use. An unlabelled gauge writes its value the
    moment it exists, so made at import it would give every gunicorn and Celery process
    a lag of 0 of its own; made here it belongs to the realtime processes that measure
    it (and, outside multi-process mode, to the one process there is, from the start)."""
    global _stream_lag
    if _stream_lag is None:
        _stream_lag = Gauge(
            "scheduling_stream_lag_events",
            "Committed head of the stream minus the last seq this process's hub handed to "
            "its sockets, measured every WATCH_SECONDS.",
            multiprocess_mode="liveall",
        )
    return _stream_lag


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    stream_lag()

QUEUES = ("dispatch", "notify", "default")


def registry() -> CollectorRegistry:
    """What /metrics serves: every process's counters, plus the scrape-time readings."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
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
        yield from _periodic()
        yield _stream_head()


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
    """Trips waiting for a driver: the queued trips dispatch would serve now (dispatch's
    own `dispatchable` rule), each waiting since it became dispatchable (its window within
    the horizon, or its pickup requested, and never before it was created). A trip
    booked for next week is queued, not waiting."""
    from django.db.models import DateTimeField, ExpressionWrapper, F, Value
    from django.db.models.functions import Coalesce, Greatest, Least

    from scheduling.models import Trip, TripStatus
    from scheduling.services.dispatch import dispatchable, horizon

    now = timezone.now()
    within = ExpressionWrapper(F("window_start") - Value(horizon()), output_field=DateTimeField())
    since = Greatest("created_at", Least(within, Coalesce("requested_at", within)))
    waiting = (
        Trip.objects.filter(dispatchable(now))
        .annotate(dispatchable_since=since)
        .aggregate(n=Count("id"), since=Min("dispatchable_since"))
    )
    yield GaugeMetricFamily(
        "scheduling_trips_queued",
        "Trips queued without a driver, dispatchable or not yet.",
        value=Trip.objects.filter(status=TripStatus.QUEUED).count(),
    )
    yield GaugeMetricFamily(
        "scheduling_trips_waiting_for_driver",
        "Queued trips that dispatch would serve now (within the horizon, or requested).",
        value=waiting["n"],
    )
    longest = (now - waiting["since"]).total_seconds() if waiting["since"] else 0.0
    yield GaugeMetricFamily(
        "scheduling_trip_longest_wait_seconds",
        "How long the longest-waiting dispatchable trip has waited for a driver.",
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
        client = connection.default_channel.client  # type: ignore[attr-defined]  # Redis's
        for queue in QUEUES:
            depths.add_metric([queue], client.llen(queue))
    return depths


def _periodic() -> Iterator[Metric]:
    """Beat's health: /health/'s rule (`late_periodic_tasks`), per task."""
    from scheduling.models import PeriodicRun
    from scheduling.services.operations import late_periodic_tasks, periodic_periods

    now = timezone.now()
    late = {entry.task for entry in late_periodic_tasks(now=now)}
    ran = dict(PeriodicRun.objects.values_list("task", "last_run_at"))
    late_family = GaugeMetricFamily(
        "scheduling_periodic_task_late",
        "1 when a periodic task has not run for two of its periods (or never): beat silent.",
        labels=["task"],
    )
    period = GaugeMetricFamily(
        "scheduling_periodic_task_period_seconds",
        "Each periodic task's period in the beat schedule.",
        labels=["task"],
    )
    last = GaugeMetricFamily(
        "scheduling_periodic_task_last_run_timestamp_seconds",
        "When each periodic task last started (Unix time); absent until its first run.",
        labels=["task"],
    )
    for task, seconds in sorted(periodic_periods().items()):
        late_family.add_metric([task], 1 if task in late else 0)
        period.add_metric([task], seconds)
        if ran.get(task) is not None:
            last.add_metric([task], ran[task].timestamp())
    yield from (late_family, period, last)


def _stream_head() -> Metric:
    from scheduling.realtime.events import committed_head

    return GaugeMetricFamily(
        "scheduling_stream_committed_seq",
        "The stream's committed head (EventCounter.last_seq): its rate is events per second.",
        value=committed_head(),
    )
