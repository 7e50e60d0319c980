"""Handing work to Celery, only once the transaction that asked for it has committed.

Services call `after_commit(TASK, id)`: a task never runs against rows its worker cannot
see yet, and a rolled-back transaction enqueues nothing. If the broker cannot take the
message, the row that describes the work still says so and a sweep enqueues it again
(DESIGN §7), so the failure is logged and the request that committed still succeeds.

In the embedded default (no Redis) Celery runs the task in-process at that moment.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError

from config.celery import app

# Task names, shared by scheduling/tasks.py (which defines them) and the services (which
# enqueue them by name and never import the tasks module).
DISPATCH = "scheduling.dispatch.run"
DELIVER = "scheduling.notify.deliver"

logger = logging.getLogger(__name__)


def after_commit(task: str, *args: int, countdown: float | None = None) -> None:
    """Enqueue `task(*args)` when the current transaction commits (at once outside one).

    Asked twice in one transaction, it is enqueued once: a burst of changes (several
    bookings, a shift change and a finished trip) makes one dispatch pass, not one each.
    """
    job = (task, args, countdown)
    connection = transaction.get_connection()
    listed = _listed_jobs(connection) if connection.in_atomic_block else None
    # A callback still listed will run unless a savepoint that is open now rolls back,
    # and that would take this one with it: one of them is enough.
    if listed is not None and job in listed:
        return

    def enqueue() -> None:
        send(task, *args, countdown=countdown)

    enqueue.job = job  # type: ignore[attr-defined]  # a function attribute, read below
    # robust: an exception in one callback is logged and does not stop the others or turn
    # a committed request into an error.
    transaction.on_commit(enqueue, robust=True)
    if listed is not None:
        listed.add(job)


def _listed_jobs(connection: Any) -> set[object]:
    """The jobs waiting for the current transaction's commit, without reading its whole
    callback list on every call (a dispatch pass asks hundreds of times: quadratic).

    Django only appends to `run_on_commit` while a transaction goes on; whenever it drops
    callbacks (commit, rollback, a savepoint rolled back) it puts a new list in its place.
    So the set kept beside the list it was read from stays true while that list is the
    connection's, and is read afresh, once, after any change."""
    kept = getattr(connection, "_scheduling_jobs", None)
    if kept is None or kept[0] is not connection.run_on_commit:
        jobs = {getattr(callback, "job", None) for _, callback, _ in connection.run_on_commit}
        kept = (connection.run_on_commit, jobs)
        connection._scheduling_jobs = kept
    return kept[1]


def send(task: str, *args: int, countdown: float | None = None) -> bool:
    """Enqueue now; False when the broker is unreachable (the sweep will catch up).

    By name: the app config registered the tasks (SchedulingConfig.ready imports
    scheduling/tasks.py), so the services never import the tasks that call them. The
    registered task, not `app.send_task`, so that eager mode (the embedded default) runs
    it in-process."""
    try:
        if countdown is None:  # none given is none at all (the stubs take no None for it)
            app.tasks[task].apply_async(args=args)
        else:
            app.tasks[task].apply_async(args=args, countdown=countdown)
    except OperationalError as exc:
        logger.warning("broker unreachable, %s%s left for the sweep: %s", task, args, exc)
        return False
    return True
