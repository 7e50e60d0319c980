"""`manage.py dispatch_queue`: what the desk reads, and `--run`."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from scheduling.models import DispatchDecision, Trip
from scheduling.services.dispatch import run_pass
from scheduling.services.trips import set_shift
from tests import factories

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("dispatch_queue", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def booked(book, tomorrow_at):
    return book(
        tomorrow_at(10),
        needs_transport=True,
    )


def test_empty(db):
    out = run()
    assert "(nobody waiting)" in out and "(no queued trips)" in out


def test_lists_the_queue_in_order_and_the_queued_trips(booked, tomorrow_at):
    second = factories.driver(first_name="Second", last_name="")
    first = factories.driver(vehicle="car", seats=3, first_name="First", last_name="")
    set_shift(driver=first, on_shift=True, now=tomorrow_at(6))
    set_shift(driver=second, on_shift=True, now=tomorrow_at(7))

    out = run()

    assert out.index("1. First (car, 3 seats)") < out.index("2. Second (motorcycle)")
    dropoff, pickup = booked.trips.order_by("window_start")
    assert f"#{dropoff.pk} dropoff of appointment #{booked.pk}" in out
    assert "waits for the horizon" in out  # tomorrow is beyond 90 minutes from now
    assert out.index(f"#{dropoff.pk} dropoff") < out.index(f"#{pickup.pk} pickup")


def test_shows_why_a_trip_waits(booked, tomorrow_at):
    motorcycle = factories.driver(first_name="Miko", last_name="")
    set_shift(driver=motorcycle, on_shift=True, now=tomorrow_at(6))
    Trip.objects.filter(appointment=booked).update(passengers=2)
    run_pass(now=tomorrow_at(9))

    out = run()

    assert "no driver at" in out and "(skipped: Miko vehicle)" in out


def test_run_dispatches_and_reports(booked, settings):
    settings.SCHEDULING = {**settings.SCHEDULING, "DISPATCH_HORIZON_MINUTES": 3 * 24 * 60}
    driver = factories.driver(first_name="Ramon", last_name="")
    set_shift(driver=driver, on_shift=True)

    out = run("--run")

    dropoff = booked.trips.get(leg="dropoff")
    assert "Dispatch pass: 2 decision(s)." in out
    assert f"trip #{dropoff.pk} -> Ramon" in out
    assert "no driver (0 skipped)" in out  # the pickup: the only driver just left the queue
    assert DispatchDecision.objects.count() == 2


def test_shows_the_decisions_taken_by_hand(booked, desk, tomorrow_at):
    """Issue 13: who gave or took back a trip by hand, and why, on the trip and below."""
    from scheduling.services.manual_dispatch import assign_by_hand, unassign

    liza = factories.driver(first_name="Liza", last_name="")
    set_shift(driver=liza, on_shift=True, now=tomorrow_at(6))
    dropoff = booked.trips.get(leg="dropoff")
    assign_by_hand(
        actor=desk, trip_id=dropoff.pk, driver_id=liza.pk, reason="near", now=tomorrow_at(8)
    )
    unassign(actor=desk, trip_id=dropoff.pk, reason="bike broke", now=tomorrow_at(8, 30))

    out = run()

    line = next(x for x in out.splitlines() if x.strip().startswith(f"#{dropoff.pk} dropoff"))
    assert f"taken back from Liza by {desk} at" in line and line.endswith(": bike broke")
    manual = out.split("Decisions taken by hand, latest first:")[1].splitlines()
    assert manual[1].startswith(f"  trip #{dropoff.pk}: taken back from Liza")
    assert manual[2].startswith(f"  trip #{dropoff.pk}: given to Liza by {desk}")
    assert manual[2].endswith(": near")
