"""Retention: what the product forgets, and when (`manage.py prune`, the daily sweep).

Everything is deleted in bounded batches, each its own short transaction, so no table is
locked for long and bookings go on while a year of rows goes:

- stream events older than RETENTION["STREAM_DAYS"], always a prefix of the sequence (a
  batch is the next run of seqs after the last one pruned). `StreamRetention` records the
  highest seq deleted in the batch's own transaction: readers (`/api/events/`, the
  websocket replay) read events first and the mark second, and a client whose `after` is
  below the mark is told to reload rather than silently missing what was deleted;
- idempotency keys older than RETENTION["IDEMPOTENCY_HOURS"] (a retry comes within it);
- dispatch and assignment decisions, and raw gateway webhooks, older than
  RETENTION["AUDIT_DAYS"] (a webhook flagged for a person and not yet resolved is kept
  until someone has looked at it);
- expired sessions;
- notifications older than RETENTION["MESSAGE_DAYS"] and finished (sent, failed,
  cancelled) keep their row and status, but lose their body, subject and address (PII).

Tables without an index on their time (decisions, webhooks, notifications) are walked
along the primary key: ids are handed out in time order, so the old rows are a prefix and each
batch reads the next `batch` ids, never the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import takewhile
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import models, transaction
from django.db.models import Max, Q
from django.utils import timezone

from scheduling.models import (
    DispatchDecision,
    IdempotencyKey,
    Notification,
    NotificationStatus,
    StreamEvent,
    StreamEventRecipient,
    StreamRetention,
    TherapistChoice,
    WebhookEvent,
    WebhookOutcome,
)

if TYPE_CHECKING:
    from scheduling.models import User

# Every model pruned here has the default manager (`objects`), which `models.Model` itself
# does not promise the type checker.
Model = Any

FINISHED = [NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.CANCELLED]
MARK = 1  # the single StreamRetention row
# A flagged webhook nobody has resolved yet is evidence a person still needs.
AWAITING_A_PERSON = Q(outcome=WebhookOutcome.FLAGGED, resolved_at__isnull=True)


@dataclass(frozen=True)
class Cutoffs:
    stream: datetime
    idempotency: datetime
    audit: datetime
    messages: datetime
    sessions: datetime

    @classmethod
    def at(cls, now: datetime) -> Cutoffs:
        keep = settings.RETENTION
        return cls(
            stream=now - timedelta(days=keep["STREAM_DAYS"]),
            idempotency=now - timedelta(hours=keep["IDEMPOTENCY_HOURS"]),
            audit=now - timedelta(days=keep["AUDIT_DAYS"]),
            messages=now - timedelta(days=keep["MESSAGE_DAYS"]),
            sessions=now,
        )


def stream_floor() -> int:
    """The highest stream seq deleted so far: events at or below it are gone."""
    mark = StreamRetention.objects.filter(pk=MARK).values_list("pruned_through", flat=True)
    return mark.first() or 0


def live_start(user: User) -> int:
    """Where a page or socket opened now starts its stream: the newest event `user` can
    see, and never below what retention has deleted. (A user with nothing visible above
    the mark would otherwise start at 0, be told the stream was pruned, reload, and start
    at 0 again for ever.) What the page shows is read after this, so it is current."""
    newest = StreamEvent.objects.visible_to(user).aggregate(last=Max("seq"))["last"]
    # Everything at or below the mark is deleted, so an event still there is above it:
    # the mark is read only for someone with nothing left (one query for everyone else).
    return newest if newest is not None else stream_floor()


def stream_gone(*, user: User, after: int) -> dict[str, object] | None:
    """None while everything after `after` is still kept; else what the client is told.

    Call it after reading the events (see the module docstring): the answer then covers
    what that read may have missed.
    """
    floor = stream_floor()
    if after >= floor:
        return None
    newest = StreamEvent.objects.visible_to(user).order_by("-seq").values_list("seq", flat=True)
    return {
        "detail": (
            f"Events up to seq {floor} are no longer kept (retention): reload the current "
            "state, then continue after last_seq."
        ),
        "code": "stream_pruned",
        "pruned_through": floor,
        "last_seq": newest.first() or floor,
    }


def prune(
    *, now: datetime | None = None, dry_run: bool = False, batch: int | None = None
) -> dict[str, int]:
    """Delete (or with dry_run, count) what is past its retention; rows per kind."""
    cutoffs = Cutoffs.at(now or timezone.now())
    size = batch or int(settings.RETENTION["BATCH"])
    if dry_run:
        return would_prune(cutoffs)
    return {
        "stream_events": _prune_stream(cutoffs.stream, size),
        "idempotency_keys": _delete_indexed(
            IdempotencyKey.objects.filter(created_at__lt=cutoffs.idempotency), size
        ),
        "dispatch_decisions": _delete_prefix(DispatchDecision, "decided_at", cutoffs.audit, size),
        "therapist_choices": _delete_prefix(TherapistChoice, "decided_at", cutoffs.audit, size),
        "webhook_events": _delete_prefix(
            WebhookEvent, "received_at", cutoffs.audit, size, keep=AWAITING_A_PERSON
        ),
        "sessions": _delete_indexed(Session.objects.filter(expire_date__lt=cutoffs.sessions), size),
        "notification_bodies": _clear_bodies(cutoffs.messages, size),
    }


def would_prune(cutoffs: Cutoffs) -> dict[str, int]:
    return {
        "stream_events": StreamEvent.objects.filter(created_at__lt=cutoffs.stream).count(),
        "idempotency_keys": IdempotencyKey.objects.filter(
            created_at__lt=cutoffs.idempotency
        ).count(),
        "dispatch_decisions": DispatchDecision.objects.filter(decided_at__lt=cutoffs.audit).count(),
        "therapist_choices": TherapistChoice.objects.filter(decided_at__lt=cutoffs.audit).count(),
        "webhook_events": WebhookEvent.objects.filter(received_at__lt=cutoffs.audit)
        .exclude(AWAITING_A_PERSON)
        .count(),
        "sessions": Session.objects.filter(expire_date__lt=cutoffs.sessions).count(),
        "notification_bodies": _bodies_to_clear(cutoffs.messages).count(),
    }


# --- the stream ---------------------------------------------------------------------------


def _prune_stream(cutoff: datetime, size: int) -> int:
    total = 0
    while True:
        deleted, more = _prune_stream_batch(cutoff, size)
        total += deleted
        if not more:
            return total


def _prune_stream_batch(cutoff: datetime, size: int) -> tuple[int, bool]:
    with transaction.atomic():
        # Locked: two prunes at once take turns, each batch continuing the other's prefix.
        mark, _ = StreamRetention.objects.select_for_update().get_or_create(pk=MARK)
        rows = list(
            StreamEvent.objects.filter(seq__gt=mark.pruned_through)
            .order_by("seq")
            .values_list("seq", "created_at")[:size]
        )
        old = [seq for seq, _ in takewhile(lambda row: row[1] < cutoff, rows)]
        if not old:
            return 0, False
        span = Q(seq__gt=mark.pruned_through, seq__lte=old[-1])
        StreamEventRecipient.objects.filter(
            event_id__gt=mark.pruned_through, event_id__lte=old[-1]
        ).delete()
        deleted, _ = StreamEvent.objects.filter(span).delete()
        mark.pruned_through = old[-1]
        mark.pruned_at = timezone.now()
        mark.save(update_fields=["pruned_through", "pruned_at"])
    return deleted, len(old) == size


# --- the rest -----------------------------------------------------------------------------


def _delete_indexed(rows: models.QuerySet[Any], size: int) -> int:
    """Rows found by an indexed condition, a batch of primary keys at a time."""
    return _in_batches(lambda: list(rows.values_list("pk", flat=True)[:size]), rows.model, size)


def _delete_prefix(
    model: type[Model],
    field: str,
    cutoff: datetime,
    size: int,
    *,
    keep: Q | None = None,
) -> int:
    """The oldest rows by primary key, while their `field` is before the cutoff, less
    those matching `keep` (stepped over: each batch starts after the last one read)."""
    total, after = 0, 0
    while True:
        with transaction.atomic():
            rows = model.objects.filter(pk__gt=after).order_by("pk").values_list("pk", field)
            old = [pk for pk, _ in takewhile(lambda row: row[1] < cutoff, rows[:size])]
            doomed = model.objects.filter(pk__in=old)
            if keep is not None:
                doomed = doomed.exclude(keep)
            if old:
                total += doomed.delete()[0]
        if len(old) < size:
            return total
        after = old[-1]


def _in_batches(next_batch: Callable[[], list[int]], model: type[Model], size: int) -> int:
    total = 0
    while True:
        with transaction.atomic():
            pks = next_batch()
            if pks:
                total += model.objects.filter(pk__in=pks).delete()[0]
        if len(pks) < size:
            return total


def _bodies_to_clear(cutoff: datetime) -> models.QuerySet[Notification]:
    return Notification.objects.filter(created_at__lt=cutoff, status__in=FINISHED).exclude(
        body="", subject="", to=""
    )


def _clear_bodies(cutoff: datetime, size: int) -> int:
    total, after = 0, 0
    while True:
        rows = list(
            Notification.objects.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "created_at", "status", "body", "subject", "to")[:size]
        )
        old = list(takewhile(lambda row: row[1] < cutoff, rows))
        pks = [row[0] for row in old if row[2] in FINISHED and any(row[3:])]
        if pks:
            # updated_at is left alone: the failure list and --since read it as "when it failed".
            total += Notification.objects.filter(pk__in=pks).update(body="", subject="", to="")
        if len(old) < size:
            return total
        after = old[-1][0]
