"""Notifications, delivering (`deliver` for one row, `deliver_batch` for a task's rows):

Enqueueing (`enqueue`): a transaction that writes or hands back rows gets ONE delivery
task on commit, with the ids of every row it asked for (a booking writes two: the client's
and the therapist's), in tasks of at most BATCH_SIZE ids. The task delivers them one after
the other, each through the three steps below, each with its own claim, outcome and retry:
one message that fails or is retried does not fail or delay the others.

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
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field
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
    field = Notification._meta.get_field(name)
    # Only the row's own columns are named here (CLAIMED and the outcomes' fields).
    assert isinstance(field, Field) and field.column is not None, name
    return connection.ops.quote_name(field.column)


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

# Most ids one delivery task carries: the sweep hands back up to SWEEP_LIMIT rows at once,
# and a task's rows are sent one after the other.
BATCH_SIZE = 50


def enqueue(notification_ids: Iterable[int]) -> None:
    """Deliver these rows once the current transaction commits (at once outside one): one
    task per transaction, with every id the transaction asked for, BATCH_SIZE at most per
    task. A rolled-back transaction enqueues nothing."""
    ids = list(notification_ids)
    if not ids:
        return
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        _send_batches(ids)
        return
    pending = _pending_batch(conn)
    if pending is None:
        pending = []
        batch = pending

        def flush() -> None:
            _send_batches(batch)

        flush.batch = batch  # type: ignore[attr-defined]  # found again by _pending_batch
        # robust: a broker error is logged by background.send; the rows wait for the sweep.
        transaction.on_commit(flush, robust=True)
        conn._scheduling_delivery = (conn.run_on_commit, pending)
    pending.extend(ids)


def _pending_batch(conn: Any) -> list[int] | None:
    """The ids list of this transaction's delivery callback, if one is still listed.

    Django only appends to `run_on_commit` while a transaction goes on and puts a new list
    in its place when it drops callbacks (commit, rollback, a savepoint rolled back), so
    the list is read again only after such a change (as `background.after_commit`). Ids
    added by a savepoint later rolled back stay in the batch: their rows do not exist, and
    the claim finds nothing to send."""
    # What `enqueue` put there: (the run_on_commit list it was found in, the ids).
    kept: tuple[object, list[int]] | None = getattr(conn, "_scheduling_delivery", None)
    if kept is not None and kept[0] is conn.run_on_commit:
        return kept[1]
    for _, callback, _ in conn.run_on_commit:
        batch: list[int] | None = getattr(callback, "batch", None)
        if batch is not None:
            conn._scheduling_delivery = (conn.run_on_commit, batch)
            return batch
    return None


def _send_batches(ids: Sequence[int]) -> None:
    for start in range(0, len(ids), BATCH_SIZE):
        background.send(background.DELIVER, *ids[start : start + BATCH_SIZE])


def claim_window() -> float:
    """Seconds from a task's start during which it may still claim a row: half the
    per-message time limit. Each row claimed gets the rest of the task's time limit
    (`batch_time_limit`), at least a whole NOTIFY_TIME_LIMIT_SECONDS; the lease (twice
    that limit from the claim) outlasts the task, so the sweep never takes a row from a
    worker still sending it."""
    return int(settings.SCHEDULING["NOTIFY_TIME_LIMIT_SECONDS"]) / 2


def batch_time_limit() -> int:
    """The delivery task's hard time limit: the claim window plus one message's limit."""
    limit = int(settings.SCHEDULING["NOTIFY_TIME_LIMIT_SECONDS"])
    return limit + limit // 2


def deliver_batch(*, notification_ids: Sequence[int], now: datetime | None = None) -> list[str]:
    """Deliver each row (`deliver`), in order; what happened to each, "deferred" for the
    rows handed to a new task because the claim window had closed.

    Each row keeps its own claim, outcome and retry. An unexpected error on one row (the
    database, a bug) does not stop the others: it is logged, the next rows are delivered,
    then the first such error is raised, so the task is retried or recorded as failed; a
    re-run sends nothing twice, the rows already claimed are not pending any more."""
    started = time.monotonic()
    window = claim_window()
    outcomes: list[str] = []
    errors: list[Exception] = []
    ids = list(dict.fromkeys(notification_ids))
    for index, pk in enumerate(ids):
        if index and time.monotonic() - started > window:
            rest = ids[index:]
            _send_batches(rest)
            outcomes.extend("deferred" for _ in rest)
            break
        try:
            outcomes.append(deliver(notification_id=pk, now=now))
        except Exception as exc:
            logger.exception("notification %s: delivery raised; the batch goes on", pk)
            errors.append(exc)
            outcomes.append("error")
    if errors:
        raise errors[0]
    return outcomes


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
        float(config["NOTIFY_RETRY_BASE_SECONDS"]) * 2.0 ** (attempts - 1),
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


def _record_fields(
    row: Notification, *, lazy: bool = False, **fields: str | datetime | None
) -> bool:
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
