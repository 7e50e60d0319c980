"""Celery wiring (config/celery.py, settings) and enqueueing on commit (background.py)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import transaction

from config.celery import app
from scheduling import background, tasks
from scheduling.models import Notification
from scheduling.services.trips import set_shift
from tests import factories
from tests.worker_support import free_port, producing_to

SIDE_EFFECTING = [
    background.DISPATCH,
    background.DELIVER,
    "scheduling.sweep.notifications",
    "scheduling.sweep.reminders",
    "scheduling.sweep.expire_overdue",
    "scheduling.sweep.flag_overdue",
    "scheduling.sweep.prune",
    "scheduling.sweep.reconcile_payments",
]


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def test_json_only():
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == app.conf.result_serializer == "json"


def test_tasks_have_explicit_names_and_their_queues():
    assert {t for t in app.tasks if t.startswith("scheduling.")} == set(SIDE_EFFECTING)
    assert tasks.run_dispatch.name == background.DISPATCH
    assert queue_of(background.DISPATCH) == "dispatch"
    assert queue_of(background.DELIVER) == "notify"
    assert queue_of("scheduling.sweep.reminders") == "default"


@pytest.mark.parametrize("name", SIDE_EFFECTING)
def test_side_effecting_tasks_ack_late_and_requeue_when_the_worker_dies(name):
    task = app.tasks[name]
    assert task.acks_late and task.reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert (task.time_limit or app.conf.task_time_limit) > (
        task.soft_time_limit or app.conf.task_soft_time_limit
    )


def test_a_delivery_claim_outlives_the_delivery_task():
    """The sweep takes a claim back only once its worker is certainly dead."""
    lease = 2 * settings.SCHEDULING["NOTIFY_TIME_LIMIT_SECONDS"]
    assert lease > tasks.deliver_notification.time_limit


def test_redis_keeps_a_retry_until_its_countdown_is_over():
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > settings.SCHEDULING["NOTIFY_RETRY_MAX_SECONDS"]


def test_beat_runs_registered_tasks_and_each_expires_within_its_period():
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks
        assert entry["options"]["expires"] <= entry["schedule"]
    assert {e["task"] for e in app.conf.beat_schedule.values()} == {
        background.DISPATCH,
        "scheduling.sweep.notifications",
        "scheduling.sweep.reminders",
        "scheduling.sweep.expire_overdue",
        "scheduling.sweep.flag_overdue",
        "scheduling.sweep.prune",
        "scheduling.sweep.reconcile_payments",
    }


# --- enqueue on commit ------------------------------------------------------------------------


def jobs(callbacks) -> list[tuple]:
    return [c.job for c in callbacks if hasattr(c, "job")]


@pytest.mark.django_db
def test_a_burst_in_one_transaction_makes_one_dispatch(
    book, django_capture_on_commit_callbacks, tomorrow_at
):
    drivers = [factories.driver() for _ in range(3)]
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for driver in drivers:
            set_shift(driver=driver, on_shift=True)
        book(
            tomorrow_at(10),
            needs_transport=True,
        )
    assert jobs(callbacks).count((background.DISPATCH, (), None)) == 1
    # The deliveries have their own task, with every notification's id (delivery.enqueue).
    batches = [c.batch for c in callbacks if hasattr(c, "batch")]
    assert [len(b) for b in batches] == [Notification.objects.count()] == [1]


@pytest.mark.django_db
def test_a_rolled_back_savepoint_does_not_swallow_a_later_request(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                background.after_commit(background.DISPATCH)
                raise RuntimeError("this part failed")
        except RuntimeError:
            pass
        background.after_commit(background.DISPATCH)
    assert jobs(callbacks) == [(background.DISPATCH, (), None)]


@pytest.mark.django_db(transaction=True)
def test_embedded_default_runs_the_task_in_process_after_commit(
    book, client_record, tomorrow_at, capsys
):
    """No broker (eager Celery): the notification is sent by the time the booking's
    commit returns, through the console backend."""
    assert app.conf.task_always_eager
    appointment = book(tomorrow_at(10))
    row = Notification.objects.get(appointment=appointment)
    assert (row.status, row.provider_id) == ("sent", f"console:{row.key}")
    out = capsys.readouterr().out
    assert "Booking received" in out and client_record.phone not in out


@pytest.mark.django_db(transaction=True)
def test_broker_down_the_commit_stands_and_the_row_waits_for_the_sweep(
    book, client_record, tomorrow_at, caplog
):
    with producing_to(f"redis://127.0.0.1:{free_port()}/0"):
        appointment = book(tomorrow_at(10))
    row = Notification.objects.get(appointment=appointment)
    assert row.status == "pending"
    assert "broker unreachable" in caplog.text and "left for the sweep" in caplog.text
    assert client_record.phone not in caplog.text


@pytest.mark.django_db
def test_a_job_is_listed_once_however_often_it_is_asked_and_again_after_a_rollback(
    django_capture_on_commit_callbacks,
):
    """The memo of waiting jobs follows Django's callback list: many asks, one job; a
    savepoint rolled back takes its job with it, and the job can be asked for again."""
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for _ in range(50):
            background.after_commit(background.DELIVER, 7)
        try:
            with transaction.atomic():
                background.after_commit(background.DELIVER, 8)
                background.after_commit(background.DELIVER, 8)
                raise RuntimeError("this part failed")
        except RuntimeError:
            pass
        background.after_commit(background.DELIVER, 7)
        background.after_commit(background.DELIVER, 8)
    assert jobs(callbacks) == [(background.DELIVER, (7,), None), (background.DELIVER, (8,), None)]
