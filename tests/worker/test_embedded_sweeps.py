"""The embedded default runs the beat schedule itself: `make run` expires bookings,
retries messages, sends reminders and runs dispatch passes without Redis or a beat."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from scheduling import embedded_sweeps
from scheduling.embedded_sweeps import EmbeddedBeat
from scheduling.models import PeriodicRun

pytestmark = pytest.mark.django_db


def test_an_overdue_booking_expires_on_the_next_tick(book, tomorrow_at):
    start = timezone.now().replace(microsecond=0)
    appointment = book(tomorrow_at(10), now=start)
    beat = EmbeddedBeat()
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        assert set(beat.run_due(now=timezone.now())) == set(settings.CELERY_BEAT_SCHEDULE)
    appointment.refresh_from_db()
    assert appointment.status == "pending"  # its deadline has not passed yet
    later = appointment.response_deadline + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        ran = beat.run_due(now=timezone.now())
    assert "expire-overdue" in ran
    assert "prune" not in ran  # daily: it ran at the first tick
    appointment.refresh_from_db()
    assert appointment.status == "expired"
    assert PeriodicRun.objects.get(task="scheduling.sweep.expire_overdue").last_run_at == later


def test_an_entry_runs_once_per_period():
    beat = EmbeddedBeat()
    now = timezone.now()
    assert "dispatch" in beat.run_due(now=now)
    assert beat.run_due(now=now + timedelta(seconds=29)) == []
    ran = beat.run_due(now=now + timedelta(seconds=30))
    assert "dispatch" in ran and "notifications" in ran
    assert "reminders" not in ran  # every 60 s


def test_a_failing_sweep_is_logged_and_the_others_still_run(settings, caplog):
    settings.CELERY_BEAT_SCHEDULE = {
        # A wrong call: delivery takes notification ids, no keywords.
        "broken": {"task": "scheduling.notify.deliver", "schedule": 30.0, "kwargs": {"no": 1}},
        **settings.CELERY_BEAT_SCHEDULE,
    }
    ran = EmbeddedBeat().run_due(now=timezone.now())
    assert "broken" in ran and "expire-overdue" in ran
    assert "embedded sweep broken failed" in caplog.text
    assert PeriodicRun.objects.filter(task="scheduling.sweep.expire_overdue").exists()


@pytest.mark.django_db(transaction=True)
def test_the_thread_runs_the_schedule_until_stopped():
    stop = embedded_sweeps.start()
    try:
        deadline = time.monotonic() + 10
        while runs_recorded() < len(settings.CELERY_BEAT_SCHEDULE):
            assert time.monotonic() < deadline, "the sweeps thread ran nothing"
            time.sleep(0.1)
    finally:
        stop.set()


def runs_recorded() -> int:
    """PeriodicRun rows so far. The embedded test database is in-memory SQLite with a
    shared cache, whose table locks refuse a reader at once (no busy timeout) while the
    sweeps thread writes: that read is asked again at the next poll, not failed."""
    try:
        return PeriodicRun.objects.count()
    except OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return 0


def test_only_the_serving_runserver_process_starts_it(monkeypatch):
    monkeypatch.delenv("RUN_MAIN", raising=False)
    assert embedded_sweeps.is_serving_process(["manage.py", "runserver", "--noreload"])
    assert not embedded_sweeps.is_serving_process(["manage.py", "runserver"])  # the watcher
    assert not embedded_sweeps.is_serving_process(["manage.py", "migrate"])
    monkeypatch.setenv("RUN_MAIN", "true")
    assert embedded_sweeps.is_serving_process(["manage.py", "runserver"])
