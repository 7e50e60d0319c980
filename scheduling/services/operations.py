"""The system's view of itself: periodic runs (is beat alive?) and the outbox backlog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Min

from scheduling.models import Notification, NotificationStatus, PeriodicRun

# A periodic task is late once this many of its periods have passed without a run: one
# period of slack for a slow pass or a restart, the second means nobody is scheduling it.
LATE_PERIODS = 2


def periodic_periods() -> dict[str, float]:
    """Each periodic task's period in seconds, from the beat schedule (the only list)."""
    periods: dict[str, float] = {}
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        task = str(entry["task"])
        # Two entries for one task: the shorter period is the one it must keep.
        periods[task] = min(entry_period(entry), periods.get(task, float("inf")))
    return periods


def entry_period(entry: dict[str, Any]) -> float:
    """A beat schedule entry's period in seconds (a number, a timedelta or a schedule)."""
    schedule = entry["schedule"]
    seconds = (
        schedule if isinstance(schedule, int | float) else getattr(schedule, "run_every", schedule)
    )
    return seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)


def record_periodic_run(*, task: str, now: datetime) -> None:
    """Remember that `task` ran at `now`, if it is a periodic task (others are ignored)."""
    if task in periodic_periods():
        PeriodicRun.objects.update_or_create(task=task, defaults={"last_run_at": now})


@dataclass(frozen=True)
class LateTask:
    task: str
    period_seconds: float
    last_run_at: datetime | None  # None: never ran


def late_periodic_tasks(*, now: datetime) -> list[LateTask]:
    """Periodic tasks that have not run for more than LATE_PERIODS of their period."""
    last = dict(PeriodicRun.objects.values_list("task", "last_run_at"))
    late = []
    for task, period in sorted(periodic_periods().items()):
        ran = last.get(task)
        if ran is None or now - ran > timedelta(seconds=LATE_PERIODS * period):
            late.append(LateTask(task=task, period_seconds=period, last_run_at=ran))
    return late


def outbox_backlog_seconds(*, now: datetime) -> float:
    """How long the oldest message that is due has been waiting to be sent (0 when none)."""
    oldest = Notification.objects.filter(
        status=NotificationStatus.PENDING, send_after__lte=now
    ).aggregate(oldest=Min("send_after"))["oldest"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
