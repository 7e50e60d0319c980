"""The embedded default's beat: `make run` has no Redis, so no Celery worker or beat, and
without this nothing would ever expire a booking, retry a message, send a reminder or
run a dispatch pass there.

A daemon thread in the development server runs CELERY_BEAT_SCHEDULE itself (so a task
added to the schedule later is run here too, with no second list): every second it runs,
in-process, each entry whose period has passed since it last ran, the way beat would
send it. Each task is the same Celery task the workers run, applied eagerly, so it
calls the same services and records its run for /health/. Started only by `runserver`
when EMBEDDED_SWEEPS is set (config/settings/local.py, embedded default only).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from config.celery import app
from scheduling.services.operations import entry_period

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class EmbeddedBeat:
    """Beat's bookkeeping for one process: when each schedule entry last ran."""

    def __init__(self) -> None:
        self.last_run: dict[str, datetime] = {}

    def run_due(self, *, now: datetime) -> list[str]:
        """Run every entry due at `now` (each one at start, like beat); return their names."""
        from scheduling import tasks  # noqa: F401  (registers the tasks)

        ran = []
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            last = self.last_run.get(name)
            if last is not None and now - last < timedelta(seconds=entry_period(entry)):
                continue
            self.last_run[name] = now
            self._run(name, entry)
            ran.append(name)
        return ran

    @staticmethod
    def _run(name: str, entry: dict[str, Any]) -> None:
        try:
            app.tasks[entry["task"]].apply(
                args=entry.get("args", ()), kwargs=entry.get("kwargs", {}), throw=True
            )
        except Exception:
            # As a worker would: the failure is logged with its traceback, and the other
            # sweeps (and this one's next period) still run.
            logger.exception("embedded sweep %s failed", name)


def _loop(stop: threading.Event) -> None:
    beat = EmbeddedBeat()
    while not stop.is_set():
        beat.run_due(now=timezone.now())
        # This thread's connection, by the rule for a request (CONN_MAX_AGE, broken ones).
        close_old_connections()
        stop.wait(TICK_SECONDS)


def start() -> threading.Event:
    """Start the sweeps thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=_loop, args=(stop,), name="embedded-sweeps", daemon=True).start()
    logger.info("embedded sweeps: running the beat schedule in this process")
    return stop


def is_serving_process(argv: list[str] | None = None) -> bool:
    """The runserver process that serves (not the autoreloader's parent that watches)."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] != "runserver":
        return False
    return os.environ.get("RUN_MAIN") == "true" or "--noreload" in argv
