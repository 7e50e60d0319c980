"""/health/: is every part this process depends on answering? No secrets in it."""

from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.celery import app as celery_app
from scheduling.realtime.events import STREAM_LAYER
from scheduling.services import operations

WORKER_PING_SECONDS = 1.0
STREAM_ROUND_TRIP_SECONDS = 2.0


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_cache() -> str:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "1", 5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(key)
    return "ok"


def check_channel_layer() -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "health.ping"})
    message = async_to_sync(layer.receive)(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned another message")
    return "ok"


def check_stream_layer() -> str:
    """The live stream's own layer (Redis pub/sub in the full stack): a message published
    on a fresh channel comes back to its subscriber."""
    if STREAM_LAYER not in settings.CHANNEL_LAYERS:
        return "default layer"  # the embedded default: the stream rides the default layer
    return async_to_sync(_stream_round_trip)(get_channel_layer(STREAM_LAYER))


async def _stream_round_trip(layer) -> str:
    try:
        channel = await layer.new_channel()  # subscribes before anything is published
        await layer.send(channel, {"type": "health.ping"})
        message = await asyncio.wait_for(layer.receive(channel), STREAM_ROUND_TRIP_SECONDS)
    finally:
        await layer.flush()  # this request's connections, not the stream's
    if message.get("type") != "health.ping":
        raise RuntimeError("stream layer returned another message")
    return "ok"


def check_workers() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "in-process"  # the embedded default runs tasks in the web process
    # The broker named by settings now, so a deployment (or a test) that points it
    # elsewhere is checked where it points.
    with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        # kombu-stubs type timeout as int; kombu adds it to time(), so a float is honoured.
        connection.ensure_connection(max_retries=1, timeout=WORKER_PING_SECONDS)  # type: ignore[arg-type]
        replies = celery_app.control.ping(timeout=WORKER_PING_SECONDS, connection=connection)
    if not replies:
        raise RuntimeError("no Celery worker answered")
    return f"{len(replies)} worker(s)"


def check_beat() -> str:
    """Every periodic task ran within two of its periods (each records its own runs)."""
    # The embedded default's development server runs the schedule itself (EMBEDDED_SWEEPS);
    # any other in-process setup (tests, a shell) has no beat at all.
    if settings.CELERY_TASK_ALWAYS_EAGER and not getattr(settings, "EMBEDDED_SWEEPS", False):
        return "no beat in the embedded default"
    late = operations.late_periodic_tasks(now=timezone.now())
    if late:
        raise HealthProblem("beat silent: " + "; ".join(_describe(task) for task in late))
    return f"{len(operations.periodic_periods())} periodic task(s) on time"


def _describe(late: operations.LateTask) -> str:
    if late.last_run_at is None:
        return f"{late.task} never ran"
    ago = (timezone.now() - late.last_run_at).total_seconds()
    return f"{late.task} last ran {ago:.0f} s ago (every {late.period_seconds:.0f} s)"


def check_outbox() -> str:
    """How long the oldest due message has waited; a report, not a failure (a provider
    outage is not this process's fault, and the alert rules watch the backlog)."""
    return (
        f"oldest due message waiting {operations.outbox_backlog_seconds(now=timezone.now()):.0f} s"
    )


class HealthProblem(RuntimeError):
    """A check's own finding, safe to show: it names tasks, never hosts or data."""


HEALTH = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "down"]),
        "checks": serializers.DictField(
            child=inline_serializer(
                "Check",
                {
                    "ok": serializers.BooleanField(),
                    "detail": serializers.CharField(),
                    "ms": serializers.FloatField(),
                },
            )
        ),
    },
)

CHECKS = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "stream_layer": check_stream_layer,
    "workers": check_workers,
    "beat": check_beat,
    "outbox": check_outbox,
}


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: HEALTH, 503: HEALTH})
    def get(self, request: Request) -> Response:
        checks = {name: _run(check) for name, check in CHECKS.items()}
        healthy = all(c["ok"] for c in checks.values())
        return Response(
            {"status": "ok" if healthy else "down", "checks": checks},
            status=200 if healthy else 503,
        )


def _run(check) -> dict:
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except HealthProblem as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a health check reports every failure; it never raises
        # The exception's class only: messages can carry hosts, users or passwords.
        detail, ok = f"unavailable ({type(exc).__name__})", False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}
