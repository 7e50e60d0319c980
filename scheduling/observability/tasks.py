"""Celery task runs, failures and durations, from Celery's signals (every task, no list)."""

from __future__ import annotations

import time

from celery import signals

from scheduling.observability.metrics import TASK_RUNS, TASK_SECONDS

_started: dict[str, float] = {}


@signals.task_prerun.connect
def started(task_id: str | None = None, **kwargs) -> None:
    if task_id is not None:
        _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def finished(task_id: str | None = None, sender=None, state: str | None = None, **kwargs) -> None:
    begun = _started.pop(task_id, None) if task_id is not None else None
    if sender is None:
        return
    TASK_RUNS.labels(sender.name, (state or "unknown").lower()).inc()
    if begun is not None:
        TASK_SECONDS.labels(sender.name).observe(time.perf_counter() - begun)
