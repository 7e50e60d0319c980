"""The ceiling: a task that does nothing but say it ran, through the same broker and
workers as the product's tasks."""

from __future__ import annotations

import time
from functools import cache

import redis
from celery import shared_task
from django.conf import settings


@cache
def counter() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@shared_task(name="scheduling.notify.bench_noop", acks_late=True, reject_on_worker_lost=True)
def noop(sent_at: float) -> None:
    """Routed like a delivery (scheduling.notify.*): records when it started running."""
    client = counter()
    client.rpush("bench:noop", f"{sent_at} {time.time()}")
