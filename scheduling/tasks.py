"""Celery tasks: thin, named explicitly, given ids, each calling one service.

Every task is idempotent: the dispatcher serves whatever is queued when it runs, and a
delivery claims its row before sending. So a message delivered twice by the broker (acks
are late, and a worker lost mid-task has its message requeued) does no harm.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import OperationalError

from scheduling import background
from scheduling.services import (
    appointments,
    attention,
    dispatch,
    gateway_payments,
    retention,
)
from scheduling.services.notifications import delivery, outbox, sweeps

# Side effects: acknowledge only once done, and requeue if the worker process dies.
SIDE_EFFECTING: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}
# A lost database connection or a deadlock victim: run again shortly; passes are idempotent.
DATABASE_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(
    name=background.DISPATCH,
    time_limit=60,
    soft_time_limit=50,
    **SIDE_EFFECTING,
    **DATABASE_RETRY,
)
def run_dispatch() -> int:
    """One FIFO pass over the queued trips; the number of decisions recorded."""
    return len(dispatch.run_pass())


# One task per transaction's messages (delivery.enqueue); a message queued before batches,
# with one id, is the batch of one. The limit: the claim window plus one message's limit.
DELIVER_TIME_LIMIT = delivery.batch_time_limit()


@shared_task(
    name=background.DELIVER,
    time_limit=DELIVER_TIME_LIMIT,
    soft_time_limit=max(1, DELIVER_TIME_LIMIT - 2),
    **SIDE_EFFECTING,
    **DATABASE_RETRY,
)
def deliver_notification(*notification_ids: int) -> list[str]:
    return delivery.deliver_batch(notification_ids=notification_ids)


@shared_task(name="scheduling.sweep.notifications", **SIDE_EFFECTING)
def sweep_notifications() -> dict[str, int]:
    return sweeps.requeue_stale()


@shared_task(name="scheduling.sweep.reminders", **SIDE_EFFECTING)
def queue_reminders() -> int:
    return len(outbox.queue_reminders())


@shared_task(name="scheduling.sweep.expire_overdue", **SIDE_EFFECTING)
def expire_overdue() -> int:
    return len(appointments.expire_overdue())


# Appointments in progress and trips open two hours past their end: on the desk's list.
@shared_task(name="scheduling.sweep.flag_overdue", **SIDE_EFFECTING)
def flag_overdue() -> int:
    return attention.flag_overdue()


# A first prune of a long history may take a while; each batch commits on its own, so one
# cut short by the limit loses nothing and the next day's carries on.
@shared_task(name="scheduling.sweep.prune", time_limit=3600, soft_time_limit=3500, **SIDE_EFFECTING)
def prune() -> dict[str, int]:
    return retention.prune()


# Links left pending are asked about at their gateway (issue 15): a slow gateway makes a
# long pass, and the next one carries on where this one was cut short.
@shared_task(
    name="scheduling.sweep.reconcile_payments",
    time_limit=600,
    soft_time_limit=590,
    **SIDE_EFFECTING,
)
def reconcile_payments() -> int:
    return len(gateway_payments.reconcile())
