"""/health/ tells the truth about beat: each periodic task records its own runs, and one
more than two periods late makes /health/ 503 naming beat and the task. It also reports
how long the oldest due message has waited (the outbox backlog)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from config.celery import app
from scheduling.models import Notification, PeriodicRun
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 3, 4, 2, 0, tzinfo=UTC)
# The worker check would ask a broker no test starts: only beat is looked at here.
NOT_EMBEDDED = override_settings(CELERY_TASK_ALWAYS_EAGER=False)


def run_every_periodic_task() -> None:
    """Run each beat entry's task, as a worker would when beat sends it."""
    from scheduling import tasks  # noqa: F401  (registers the tasks)

    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            app.tasks[entry["task"]].apply().get()


def beat_check() -> tuple[int, dict]:
    with NOT_EMBEDDED:
        response = APIClient().get("/health/")
    body = response.json()
    assert "ms" in body["checks"]["beat"]
    return response.status_code, body["checks"]["beat"]


def test_each_periodic_task_records_its_own_run():
    with time_machine.travel(T0, tick=False):
        run_every_periodic_task()
    runs = dict(PeriodicRun.objects.values_list("task", "last_run_at"))
    assert runs == {entry["task"]: T0 for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def test_a_task_outside_the_beat_schedule_records_nothing():
    with time_machine.travel(T0, tick=False):
        app.tasks["scheduling.notify.deliver"].apply(args=(999_999,))
    assert not PeriodicRun.objects.exists()


def test_on_time_then_late_by_two_periods_is_503_naming_beat():
    with time_machine.travel(T0, tick=False):
        run_every_periodic_task()
    with time_machine.travel(T0 + timedelta(seconds=59), tick=False):
        status, beat = beat_check()
    assert beat["ok"] is True, beat
    # The 30-second sweeps are now more than two periods late; the daily prune is not.
    with time_machine.travel(T0 + timedelta(seconds=61), tick=False):
        status, beat = beat_check()
    assert status == 503
    assert beat["ok"] is False
    assert beat["detail"].startswith("beat silent")
    assert "scheduling.dispatch.run last ran 61 s ago (every 30 s)" in beat["detail"]
    assert "scheduling.sweep.notifications" in beat["detail"]
    assert "scheduling.sweep.prune" not in beat["detail"]


def test_a_task_that_never_ran_is_late():
    with time_machine.travel(T0, tick=False):
        run_every_periodic_task()
        PeriodicRun.objects.filter(task="scheduling.sweep.reminders").delete()
        status, beat = beat_check()
    assert status == 503
    assert beat["detail"] == "beat silent: scheduling.sweep.reminders never ran"


def test_the_embedded_default_says_it_has_no_beat():
    response = APIClient().get("/health/")
    assert response.json()["checks"]["beat"] == {
        "ok": True,
        "detail": "no beat in the embedded default",
        "ms": response.json()["checks"]["beat"]["ms"],
    }


def test_outbox_backlog_is_the_oldest_due_message_and_has_no_pii():
    client = ClientFactory()
    with time_machine.travel(T0, tick=False):
        for key, due in (("a", T0 - timedelta(seconds=125)), ("b", T0 + timedelta(hours=1))):
            Notification.objects.create(
                key=key,
                kind="reminder",
                channel="sms",
                audience="client",
                client=client,
                to="+639171234567",
                body="See you at 10:00, Maria",
                send_after=due,
            )
        response = APIClient().get("/health/")
    outbox = response.json()["checks"]["outbox"]
    assert outbox["ok"] is True
    assert outbox["detail"] == "oldest due message waiting 125 s"
    text = response.content.decode()
    assert "+639171234567" not in text and "Maria" not in text


def test_the_embedded_sweeps_are_checked_like_beat(settings):
    settings.EMBEDDED_SWEEPS = True
    response = APIClient().get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["beat"]["detail"].startswith("beat silent")
    run_every_periodic_task()
    assert APIClient().get("/health/").json()["checks"]["beat"]["ok"] is True
