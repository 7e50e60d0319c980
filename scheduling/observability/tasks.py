"""Celery task runs, failures and durations, from Celery's signals (every task, no list):
the metrics, and the task's log line with the request id it carried (observability/logs.py)."""

from __future__ import annotations

import time
from contextvars import Token

from celery import signals

from scheduling.observability import logs
from scheduling.observability.metrics import TASK_RUNS, TASK_SECONDS

_started: dict[str, tuple[float, Token[str | None]]] = {}


@signals.task_prerun.connect
def started(task_id: str | None = None, task=None, **kwargs) -> None:
    if task_id is not None:
        _started[task_id] = (time.perf_counter(), logs.enter_task(task))


@signals.task_postrun.connect
def finished(task_id: str | None = None, sender=None, state: str | None = None, **kwargs) -> None:
    begun = _started.pop(task_id, None) if task_id is not None else None
    if sender is None:
        return
    # Celery gives no state when the task raised in-process with propagation on (eager,
    # the embedded default and tests): its exception is on its way up to the caller.
    outcome = (state or "failure").lower()
    TASK_RUNS.labels(sender.name, outcome).inc()
    if begun is None or task_id is None:  # begun only for a task_id
        return
    seconds = time.perf_counter() - begun[0]
    TASK_SECONDS.labels(sender.name).observe(seconds)
    logs.leave_task(begun[1], task=sender.name, task_id=task_id, state=outcome, seconds=seconds)
