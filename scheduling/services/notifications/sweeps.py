"""Notifications, sweeping and retrying: what the periodic sweep and a person hand back.

A worker that dies mid-send leaves its row `sending`. Nobody knows whether the provider
took the message. Once the lease has run out (it outlasts the task's hard time limit, so
the worker is certainly gone) the sweep (`requeue_stale`) decides:
- a backend whose provider dedupes by key (`dedupes_by_key`) gets it again with the same
  key: the provider delivers at most once, so the notification is sent exactly once;
- any other backend (console, SMTP, Twilio) does not: the row is `failed` with
  "outcome unknown", and a person may send it again (`retry_failed_notifications`,
  `retry_failed`, the desk's Retry: `retry_notification`).
The same rule applies to a send that ends in a timeout after the request left
(`delivery.deliver`). The sweep also enqueues again what nobody picked up.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from scheduling.errors import InvalidTransition, NotFound
from scheduling.models import Notification, NotificationStatus
from scheduling.notify import backend_for
from scheduling.services.notifications import delivery
from scheduling.services.notifications.delivery import announce_failures
from scheduling.services.notifications.outbox import SWEEP_LIMIT


def requeue_stale(*, now: datetime | None = None) -> dict[str, int]:
    """The notification sweep (beat): hand the broker again what nobody picked up.

    - pending rows that are due and were never enqueued (a follow-up's delay is over);
    - pending rows overdue by NOTIFY_STALE_SECONDS (their task was lost: a crash between
      commit and enqueue, Redis down or restarted);
    - `sending` rows whose lease ran out (their worker died mid-send): sent again with
      the same key when the provider dedupes, otherwise failed as outcome unknown.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=float(settings.SCHEDULING["NOTIFY_STALE_SECONDS"]))
    counts = {"requeued": 0, "reclaimed": 0, "abandoned": 0}
    with transaction.atomic():
        orphans = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(status=NotificationStatus.SENDING, lease_until__lt=now)
            .order_by("id")[:SWEEP_LIMIT]
        )
        retry = [row for row in orphans if backend_for(row.channel).dedupes_by_key]
        abandon = [row for row in orphans if row not in retry]
        if retry:
            Notification.objects.filter(pk__in=[r.pk for r in retry]).update(
                status=NotificationStatus.PENDING,
                last_error="outcome unknown: the worker stopped mid-send; sent again with "
                "the same key, which the provider dedupes",
                lease_until=None,
                send_after=now,
                updated_at=now,
            )
        if abandon:
            Notification.objects.filter(pk__in=[r.pk for r in abandon]).update(
                status=NotificationStatus.FAILED,
                last_error="outcome unknown: the worker stopped mid-send; not sent again "
                "automatically, to avoid sending twice",
                lease_until=None,
                updated_at=now,
            )
            announce_failures(abandon)
        counts["reclaimed"], counts["abandoned"] = len(retry), len(abandon)

        lost = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(status=NotificationStatus.PENDING, send_after__lte=now)
            .filter(Q(enqueued_at__isnull=True) | Q(send_after__lte=stale))
            .order_by("send_after", "id")
            .values_list("pk", flat=True)[:SWEEP_LIMIT]
        )
        ids = [*(r.pk for r in retry), *lost]
        if ids:
            # send_after moves to now so the row is not "overdue" again before it is stale.
            Notification.objects.filter(pk__in=ids).update(
                enqueued_at=now, send_after=now, updated_at=now
            )
            delivery.enqueue(ids)  # in tasks of delivery.BATCH_SIZE
        counts["requeued"] = len(ids)
    return counts


def retry_failed(
    *,
    since: datetime | None = None,
    only: Collection[int] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Give failed notifications (failed since `since`, and among `only`, when given) a
    fresh set of attempts: a person decided they are worth sending again."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = Notification.objects.select_for_update().filter(status=NotificationStatus.FAILED)
        if since is not None:
            rows = rows.filter(updated_at__gte=since)
        if only is not None:
            rows = rows.filter(pk__in=only)
        ids = list(rows.order_by("id").values_list("pk", flat=True))
        Notification.objects.filter(pk__in=ids).update(
            status=NotificationStatus.PENDING,
            attempts=0,
            send_after=now,
            enqueued_at=now,
            updated_at=now,
        )
        delivery.enqueue(ids)
    return ids


def retry_notification(*, notification_id: int, now: datetime | None = None) -> int:
    """The desk's Retry on one failed notification (retry_failed, for that one row)."""
    if retry_failed(only=[notification_id], now=now):
        return notification_id
    current = (
        Notification.objects.filter(pk=notification_id).values_list("status", flat=True).first()
    )
    if current is None:
        raise NotFound(f"There is no notification with id {notification_id}.")
    raise InvalidTransition(
        f"This message is {current} now, not failed: nothing to retry.", current
    )
