"""Work left open too long (scheduling/services/attention.py, issue 13 item 4): the sweep
and the desk's "needs attention" list, with the clock as an input (time-machine or `now=`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from config.celery import app
from scheduling import tasks  # noqa: F401  (registers the tasks)
from scheduling.embedded_sweeps import EmbeddedBeat
from scheduling.models import StreamEvent, Trip
from scheduling.services.appointments import act_on_appointment
from scheduling.services.attention import ATTENTION_OVERDUE, flag_overdue, overdue
from scheduling.services.trips import act_on_trip, assign_trip
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def started(book, therapist, tomorrow_at):
    """Ana's 10:00-11:00 tomorrow, with transport: started, its drop-off driven there."""
    appointment = book(tomorrow_at(10), needs_transport=True)
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=action)
    driver = factories.driver()
    dropoff = appointment.trips.get(leg="dropoff")
    assign_trip(trip_id=dropoff.pk, driver_id=driver.pk)
    act_on_trip(actor=driver, trip_id=dropoff.pk, action="depart")
    appointment.refresh_from_db()
    return appointment, dropoff


def announced() -> list[tuple[int | None, int | None]]:
    return list(
        StreamEvent.objects.filter(type=ATTENTION_OVERDUE)
        .order_by("seq")
        .values_list("appointment_id", "trip_id")
    )


def test_nothing_is_overdue_before_two_hours(started):
    _, dropoff = started
    # The drop-off's window ended at 10:00, the session at 11:00.
    just_before = dropoff.window_end + timedelta(hours=2) - timedelta(seconds=1)
    assert overdue(now=just_before).total == 0
    assert flag_overdue(now=just_before) == 0
    assert announced() == []


def test_the_sweep_puts_each_on_the_list_once(started):
    appointment, dropoff = started
    at_trip = dropoff.window_end + timedelta(hours=2)
    assert flag_overdue(now=at_trip) == 1
    assert announced() == [(None, dropoff.pk)]
    at_both = appointment.end + timedelta(hours=2)
    found = overdue(now=at_both)
    assert [a.pk for a in found.appointments] == [appointment.pk]
    # The pick-up is open too, but its window has not ended two hours ago.
    assert [t.pk for t in found.trips] == [dropoff.pk]
    assert flag_overdue(now=at_both) == 1
    assert flag_overdue(now=at_both) == 0  # said once
    assert announced() == [(None, dropoff.pk), (appointment.pk, None)]


def test_done_in_time_leaves_the_list(started, therapist):
    appointment, dropoff = started
    later = appointment.end + timedelta(hours=3)
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="complete")
    Trip.objects.filter(pk=dropoff.pk).update(status="done")
    found = overdue(now=later)
    # Only the pick-up, never driven, is still open.
    assert found.appointments == [] and [t.leg for t in found.trips] == ["pickup"]


def test_the_task_and_the_embedded_sweeps_run_it(started, settings):
    appointment, _ = started
    with time_machine.travel(appointment.end + timedelta(hours=2, minutes=1), tick=False):
        assert app.tasks["scheduling.sweep.flag_overdue"].apply(throw=True).get() == 2
        ran = EmbeddedBeat().run_due(now=appointment.end + timedelta(hours=2, minutes=1))
    assert "flag-overdue" in ran
    assert settings.CELERY_BEAT_SCHEDULE["flag-overdue"]["task"] == "scheduling.sweep.flag_overdue"


def test_the_desk_sees_it_on_the_queues_page_and_the_board(client, desk, started):
    appointment, _ = started
    client.force_login(desk)
    with time_machine.travel(appointment.end + timedelta(hours=2), tick=False):
        html = client.get("/desk/queues/").content.decode()
        tile = client.get("/desk/queues/summary/").content.decode()
    assert "Left open too long" in html
    assert appointment.client.name in html and "window ended" in html
    assert "left open too long" in tile and "still in progress" in tile
    with time_machine.travel(appointment.end + timedelta(hours=1), tick=False):
        html = client.get("/desk/queues/").content.decode()
    assert "Nothing left open." not in html  # the drop-off's window ended at 10:00
