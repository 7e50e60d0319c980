"""Every list endpoint: a constant number of queries however many rows, keyset pages."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from scheduling.models import Appointment, StreamEvent
from scheduling.realtime.events import EventBatch
from scheduling.services.appointments import create_appointment
from scheduling.services.trips import assign_trip, set_shift
from tests import factories
from tests.factories import api

pytestmark = pytest.mark.django_db
ROWS = 50


@pytest.fixture
def fifty(desk, service, tomorrow_at):
    """50 appointments with transport over 50 therapists, 50 clients, 50 drivers."""
    driver = factories.driver()
    set_shift(driver=driver, on_shift=True)
    start = tomorrow_at(10)
    for i in range(ROWS):
        therapist = factories.therapist(service)
        factories.driver()
        client = factories.ClientFactory()
        appointment = create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
            needs_transport=True,
        )
        if i < 1:
            assign_trip(trip_id=appointment.trips.first().pk, driver_id=driver.pk)
    return driver


@pytest.mark.parametrize(
    "url, expected_queries",
    [
        ("/api/clients/", 2),  # the page's names and ids, then its rows (a deferred join)
        ("/api/clients/?q=a", 2),
        ("/api/services/", 1),
        ("/api/staff/", 1),
        ("/api/staff/?role=driver", 1),
        ("/api/appointments/", 2),  # the page, then its trips in one query
        ("/api/appointments/?date={day}&status=pending", 2),
        ("/api/trips/", 1),
        # The events, then how far retention has pruned (read after them, so a prune
        # committing in between is still seen: a 410 to reload, never a silent gap).
        ("/api/events/", 2),
        # The service, then the therapists, their working time (one statement on
        # PostgreSQL, three elsewhere) and their bookings.
        ("/api/availability/?service={service}&date={day}", None),
    ],
)
def test_list_queries_do_not_depend_on_rows(
    fifty, desk, service, tomorrow_at, url, expected_queries, django_assert_num_queries
):
    if expected_queries is None:
        expected_queries = 4 if connection.vendor == "postgresql" else 6
    url = url.format(day=tomorrow_at(0).date(), service=service.pk)
    with django_assert_num_queries(expected_queries):
        response = api(desk).get(url)
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    if isinstance(body, dict):
        body = body.get("results", body.get("events", body.get("therapists")))
    rows = body
    assert len(rows) >= 1


def test_scoped_lists_for_therapists_and_drivers(fifty, service, django_assert_num_queries):
    therapist = Appointment.objects.first().therapist
    with django_assert_num_queries(2):
        mine = api(therapist).get("/api/appointments/").json()["results"]
    assert [a["therapist"] for a in mine] == [therapist.pk]
    with django_assert_num_queries(2):
        driven = api(fifty).get("/api/appointments/").json()["results"]
    assert len(driven) == 1
    with django_assert_num_queries(1):
        trips = api(fifty).get("/api/trips/").json()["results"]
    assert [t["driver"] for t in trips] == [fifty.pk]


def test_pages_are_keyset_and_complete(fifty, desk):
    client = api(desk)
    seen, url = [], "/api/appointments/?page_size=20"
    while url:
        body = client.get(url).json()
        seen += [a["id"] for a in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(Appointment.objects.values_list("pk", flat=True))
    assert len(seen) == len(set(seen)) == ROWS
    assert "cursor=" in client.get("/api/appointments/?page_size=20").json()["next"]


def test_events_catch_up_is_scoped_and_shaped(fifty, desk, service, tomorrow_at):
    therapist = Appointment.objects.first().therapist
    body = api(therapist).get("/api/events/?after=0").json()
    theirs = StreamEvent.objects.filter(recipients__user=therapist).order_by("seq")
    assert [e["seq"] for e in body["events"]] == list(theirs.values_list("seq", flat=True))
    assert body["events"]
    everything = api(desk).get("/api/events/?after=0&limit=1000").json()
    assert len(everything["events"]) > len(body["events"])
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs) and everything["last_seq"] == seqs[-1]
    later = api(desk).get(f"/api/events/?after={seqs[-3]}").json()
    assert [e["seq"] for e in later["events"]] == seqs[-2:]
    # A driver sees their trip's appointment without the desk's notes.
    with transaction.atomic():
        batch = EventBatch()
        batch.add(
            "appointment.updated",
            {"id": 1, "notes": "secret", "address": "here"},
            recipients=[fifty.pk],
        )
        batch.flush()
    driven = api(fifty).get("/api/events/?after=0").json()["events"]
    assert driven and all("notes" not in e["data"] for e in driven)
    paged = api(desk).get("/api/events/?after=0&limit=5").json()
    assert len(paged["events"]) == 5 and paged["more"] is True


@pytest.mark.parametrize(
    "url",
    [
        "/api/appointments/?date=9999-12-31",
        "/api/appointments/?date=0001-01-01",
        "/api/appointments/?date=2030-02-30",
        "/api/appointments/?status=sleeping",
        "/api/appointments/?therapist=-4",
        "/api/appointments/?therapist=99999999999999999999999",
        "/api/availability/?service=1&date=9999-12-31",
        "/api/availability/?service=1",
        "/api/availability/?service=99999&date=2030-01-01",
        "/api/events/?after=-1",
        "/api/events/?after=abc",
        "/api/events/?limit=0",
        "/api/clients/?q=" + "x" * 500,
        "/api/appointments/?cursor=garbage",
    ],
)
def test_bad_filters_are_400_or_404(desk, url):
    response = api(desk).get(url)
    assert 400 <= response.status_code < 500, (url, response.status_code)
    assert response.json()["detail"]
