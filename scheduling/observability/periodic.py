"""Each periodic task records its own run as it starts, for /health/'s beat check.

A Celery signal rather than a line in each task: every task in the beat schedule is
covered, including one added later, and the beat schedule stays the only list.
"""

from __future__ import annotations

from celery import signals
from django.utils import timezone


@signals.task_prerun.connect
def record_run(sender=None, **kwargs) -> None:
    if sender is None:
        return
    from scheduling.services.operations import record_periodic_run

    record_periodic_run(task=sender.name, now=timezone.now())
