"""What the operator needs to know about the running system itself."""

from __future__ import annotations

from django.db import models


class PeriodicRun(models.Model):
    """The last time each periodic task (a CELERY_BEAT_SCHEDULE entry's task) ran.

    Written by the task itself when it starts, so /health/ can tell a silent beat (or
    no worker taking its tasks) from a quiet system: one row per task, updated in place.
    """

    task = models.CharField(max_length=200, primary_key=True)
    last_run_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.task} at {self.last_run_at:%Y-%m-%d %H:%M:%S}"
