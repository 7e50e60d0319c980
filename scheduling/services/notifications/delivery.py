"""Notifications, delivering (`deliver`, one task per row):

1. Claim: in a short transaction, a due `pending` row becomes `sending` with one more
   attempt and a lease. A second task for the same row (the broker delivering twice, the
   sweep enqueueing again) finds it is not `pending` and does nothing.
2. Send, outside any transaction, with the row's key as the provider's idempotency key.
3. Record: `sent`; or back to `pending` after an exponential backoff with jitter; or
   `failed` with the error kept and a `notification.failed` stream event for the desk.

A worker that dies between 1 and 3 leaves the row `sending`; the sweep decides what becomes
of it once its lease has run out (`sweeps.requeue_stale`). For a provider that dedupes by
key, the claim and the `sent` outcome commit without waiting for the disk
(`lazy_commit_channels`): a commit lost to a database crash is what a dead worker leaves,
and the provider answers the repeat with the first message.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from scheduling import background
from scheduling.models import Notification, NotificationStatus
from scheduling.notify import (
    Message,
    OutcomeUnknown,
    PermanentError,
    TransientError,
    backend_for,
)
from scheduling.realtime.events import EventBatch

logger = logging.getLogger(__name__)

NOTIFICATION_FAILED = "notification.failed"

# Delivery runs once per message, so its two statements are written out: the ORM's query
# building cost more CPU than the rest of a delivery (bench/worker).
CLAIMED = (
    "id", "key", "kind", "channel", "audience", "to", "subject", "body", "attempts",
    "appointment_id", "trip_id",
)  # fmt: skip


def _column(name: str) -> str:
    return connection.ops.quote_name(Notification._meta.get_field(name).column)


def _claim_sql() -> str:
    table = connection.ops.quote_name(Notification._meta.db_table)
    return (
        f"UPDATE {table} SET status = %s, attempts = attempts + 1, "
        "lease_until = %s, updated_at = %s "
        "WHERE id = %s AND status = %s AND send_after <= %s "
        f"RETURNING {', '.join(_column(name) for name in CLAIMED)}"
    )


# PostgreSQL: the same claim, committed without waiting for its WAL to reach the disk when
# the row's channel is in the list passed (see `lazy_commit_channels`).
LAZY_CLAIM_SQL = (
    "WITH claimed AS ({claim}) SELECT *, CASE WHEN {channel} = ANY(%s) "
    "THEN set_config('synchronous_commit', 'off', true) END FROM claimed"
)


@cache
def _outcome_sql(names: tuple[str, ...], lazy: bool = False) -> str:
    table = connection.ops.quote_name(Notification._meta.db_table)
    assignments = ", ".join(f"{_column(name)} = %s" for name in names)
    update = f"UPDATE {table} SET {assignments}"
    where = "WHERE id = %s AND status = %s AND attempts = %s"
    if lazy:  # PostgreSQL only (see `lazy_commit_channels`)
        return (
            "WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true)) "
            f"{update} FROM lazy {where}"
        )
    return f"{update} {where}"


def lazy_commit_channels() -> frozenset[str]:
    """The channels whose claim and `sent` outcome may commit without waiting for the
    disk (PostgreSQL's `synchronous_commit = off` for that one statement's transaction).

    Only channels whose configured backend's provider dedupes by key (`dedupes_by_key`):
    if the database crashes in the moment before such a commit reaches the disk, the row
    comes back `pending` (claim lost) or `sending` (outcome lost), the sweep sends it
    again with the same key, and the provider answers with the first message instead of
    sending a second. For any other backend both commits wait for the disk as before, so
    a message sent is never forgotten and sent again. Retries and failures always wait.
    Each delivery spent about half its time waiting for those two disk flushes
    (`python -m bench.worker.profile --part delivery`, with and without)."""
    if connection.vendor != "postgresql":
        return frozenset()
    return _deduping(tuple(sorted(settings.SCHEDULING["NOTIFY_BACKENDS"].items())))


@cache
def _deduping(backends: tuple[tuple[str, str], ...]) -> frozenset[str]:
    found = set()
    for channel, path in backends:
        try:
            backend = import_string(path)
        except ImportError:
            continue  # deliver() reports it when a row of that channel comes
        if getattr(backend, "dedupes_by_key", False) is True:
            found.add(channel)
    return frozenset(found)


CLAIM_SQL = _claim_sql()


def deliver(*, notification_id: int, now: datetime | None = None) -> str:
    """Send one notification if it is due and nobody else is sending it.

    Returns what happened: "sent", "retry", "failed", or "skipped" (not due, not pending,
    or claimed by another worker)."""
    now = now or timezone.now()
    row = _claim(notification_id, now)
    if row is None:
        return "skipped"
    try:
        backend = backend_for(row.channel)
    except Exception as exc:
        # Misconfigured (a missing credential): nothing left; a person has to fix it.
        logger.exception("notification %s: no usable %s backend", row.pk, row.channel)
        return _fail(row, f"backend not usable: {exc}")
    message = Message(
        key=row.key, channel=row.channel, to=row.to, subject=row.subject, body=row.body
    )
    try:
        provider_id = backend.send(message)
    except PermanentError as exc:
        return _fail(row, str(exc))
    except TransientError as exc:
        return _retry(row, str(exc))
    except Exception as exc:
        # OutcomeUnknown, or anything unforeseen (a bug, the soft time limit): the provider
        # may have the message.
        if not isinstance(exc, OutcomeUnknown):
            logger.exception("notification %s: unexpected error while sending", row.pk)
        error = f"outcome unknown: {exc}"
        if backend.dedupes_by_key:
            return _retry(row, error)
        return _fail(row, f"{error}; not sent again automatically, to avoid sending twice")
    return _record(row, status=NotificationStatus.SENT, provider_id=provider_id)


def _claim(notification_id: int, now: datetime) -> Notification | None:
    """pending -> sending in one conditional UPDATE: of two tasks for the same row, the
    second waits on the first's row lock, then finds it no longer pending."""
    lease = 2 * timedelta(seconds=int(settings.SCHEDULING["NOTIFY_TIME_LIMIT_SECONDS"]))
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        NotificationStatus.SENDING,
        adapt(now + lease),
        adapt(now),
        notification_id,
        NotificationStatus.PENDING,
        adapt(now),
    ]
    lazy = _lazy_channels()
    with connection.cursor() as cursor:
        if lazy:
            sql = LAZY_CLAIM_SQL.format(claim=CLAIM_SQL, channel=_column("channel"))
            cursor.execute(sql, [*params, sorted(lazy)])
        else:
            cursor.execute(CLAIM_SQL, params)
        found = cursor.fetchone()
    if found is None:
        return None
    return Notification(**dict(zip(CLAIMED, found[: len(CLAIMED)], strict=True)))


def _lazy_channels() -> frozenset[str]:
    """`lazy_commit_channels()`, when this statement is its own transaction: inside a
    caller's transaction the setting would apply to the caller's commit too."""
    if connection.in_atomic_block:
        return frozenset()
    return lazy_commit_channels()


def _retry(row: Notification, error: str) -> str:
    config = settings.SCHEDULING
    if row.attempts >= int(config["NOTIFY_MAX_ATTEMPTS"]):
        return _fail(row, error)
    delay = backoff(row.attempts)
    now = timezone.now()
    with transaction.atomic():
        updated = _record_fields(
            row,
            status=NotificationStatus.PENDING,
            last_error=error,
            send_after=now + timedelta(seconds=delay),
            enqueued_at=now,
            lease_until=None,
        )
        if updated:
            background.after_commit(background.DELIVER, row.pk, countdown=delay)
    return "retry"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: doubling from the base, capped, with jitter (half
    fixed, half random) so a burst of failures does not come back as one burst."""
    config = settings.SCHEDULING
    ceiling = min(
        float(config["NOTIFY_RETRY_MAX_SECONDS"]),
        float(config["NOTIFY_RETRY_BASE_SECONDS"]) * 2 ** (attempts - 1),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _fail(row: Notification, error: str) -> str:
    with transaction.atomic():
        if _record_fields(row, status=NotificationStatus.FAILED, last_error=error):
            announce_failures([row])
    logger.warning(
        "notification %s (%s) failed after %s attempt(s)", row.pk, row.kind, row.attempts
    )
    return "failed"


def _record(row: Notification, *, status: str, provider_id: str) -> str:
    _record_fields(
        row,
        lazy=row.channel in _lazy_channels(),
        status=status,
        provider_id=provider_id,
        sent_at=timezone.now(),
        lease_until=None,
    )
    return "sent"


def _record_fields(row: Notification, *, lazy: bool = False, **fields) -> bool:
    """Write the outcome of this worker's claim, unless the claim was taken from it (the
    sweep reclaims only after the lease, which outlasts the task, so this is a guard)."""
    fields["updated_at"] = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    values = [adapt(v) if isinstance(v, datetime) else v for v in fields.values()]
    with connection.cursor() as cursor:
        cursor.execute(
            _outcome_sql(tuple(fields), lazy),
            [*values, row.pk, NotificationStatus.SENDING, row.attempts],
        )
        updated = cursor.rowcount
    if not updated:
        logger.error("notification %s: claim lost before its outcome was recorded", row.pk)
    return bool(updated)


def announce_failures(rows: list[Notification]) -> None:
    batch = EventBatch()
    for row in rows:
        batch.add(
            NOTIFICATION_FAILED,
            {
                "id": row.pk,
                "kind": row.kind,
                "channel": row.channel,
                "audience": row.audience,
                "appointment": row.appointment_id,
                "trip": row.trip_id,
                "attempts": row.attempts,
            },
        )
    batch.flush()
