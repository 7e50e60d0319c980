"""The fast renderings (scheduling/api/rows.py) say exactly what the serializers say.

The day list renders values() rows instead of going through AppointmentSerializer; the
serializer stays the documented shape. Here both render the same real data set (every
status, with and without transport, assigned and queued legs, prices with cents, notes,
a deadline with microseconds) for each role, and are compared field by field.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Prefetch
from rest_framework.test import APIRequestFactory

from scheduling.api import rows
from scheduling.api.serializers import (
    AppointmentSerializer,
    AvailabilitySerializer,
    ClientSerializer,
)
from scheduling.api.views import availability_body
from scheduling.models import Appointment, Client, Trip
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.availability import availability
from scheduling.services.travel import travel_for
from scheduling.services.trips import assign_trip, set_shift
from tests import factories
from tests.factories import api

pytestmark = pytest.mark.django_db


@pytest.fixture
def day(desk, tomorrow_at):
    """Appointments of tomorrow in every status, over three therapists and two drivers.

    Each therapist's visits are 2 h 45 apart from 08:45 (45 minutes' travel each way, the
    hour and its 10-minute buffer: 2 h 40 held), the three therapists 15 minutes apart;
    the two drivers, on all day, can carry every leg."""
    service = factories.ServiceFactory(price=Decimal("1234.50"), buffer_minutes=10)
    therapists = [factories.therapist(service) for _ in range(3)]
    drivers = [factories.driver() for _ in range(2)]
    for driver in drivers:
        set_shift(driver=driver, on_shift=True)
    booked = []
    for i in range(12):
        therapist = therapists[i % 3]
        client = factories.ClientFactory(address=f"{i} Rizal Ave")
        booked.append(
            create_appointment(
                actor=desk,
                client_id=client.pk,
                service_id=service.pk,
                therapist_id=therapist.pk,
                start=tomorrow_at(8, 45) + timedelta(minutes=165 * (i // 3) + 15 * (i % 3)),
                notes=f"note {i}" if i % 2 else "",
                needs_transport=i % 3 != 2,
                # A deadline with microseconds: the formats must agree on those too.
                now=tomorrow_at(0) - timedelta(days=1, microseconds=1234 * i),
            )
        )
    for appointment, action in zip(booked, ["accept", "reject", "cancel", "accept"], strict=False):
        act_on_appointment(
            actor=appointment.therapist, appointment_id=appointment.pk, action="accept"
        )
        if action != "accept":
            act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel")
    legs = Trip.objects.filter(status="queued").order_by("window_start", "id")
    assign_trip(trip_id=legs[0].pk, driver_id=drivers[0].pk)
    assign_trip(
        trip_id=legs.exclude(appointment=legs[0].appointment)[0].pk, driver_id=drivers[1].pk
    )
    return {"therapists": therapists, "drivers": drivers, "appointments": booked}


def serialized(user, appointments) -> list[dict]:
    request = APIRequestFactory().get("/")
    request.user = user
    prefetched = appointments.prefetch_related(
        Prefetch("trips", queryset=Trip.objects.order_by("window_start", "id"))
    )
    return [AppointmentSerializer(a, context={"request": request}).data for a in prefetched]


def fast(user, appointments) -> list[dict]:
    return rows.render_appointments(rows.appointment_rows(appointments), user)


def callers(day, desk) -> list:
    return [desk, *day["therapists"][:2], *day["drivers"]]


def test_rows_render_exactly_what_the_serializer_renders(day, desk):
    for user in callers(day, desk):
        mine = Appointment.objects.visible_to(user).order_by("start", "id")
        expected = serialized(user, mine)
        assert expected, user.role  # every caller sees something
        assert fast(user, mine) == expected, user.role
        # Field by field, in the serializer's order, so a difference names its field.
        for got, want in zip(fast(user, mine), expected, strict=True):
            assert list(got) == list(want)
            for name in want:
                assert got[name] == want[name], (user.role, want["id"], name)


def test_the_day_list_answers_what_the_serializer_renders(day, desk, tomorrow_at):
    date = tomorrow_at(0).date()
    for user in callers(day, desk):
        body = api(user).get(f"/api/appointments/?date={date}&page_size=200").json()
        mine = Appointment.objects.visible_to(user).on_day(date).order_by("start", "id")
        assert body["results"] == serialized(user, mine), user.role


def test_the_data_set_covers_what_the_renderings_must_agree_on(day, desk):
    listed = fast(desk, Appointment.objects.order_by("start", "id"))
    assert {a["status"] for a in listed} >= {"pending", "confirmed", "cancelled"}
    assert any(a["trips"] for a in listed) and any(not a["trips"] for a in listed)
    drivers = {t["driver"] for a in listed for t in a["trips"]}
    assert None in drivers and len(drivers - {None}) == 2
    assert any("." in a["response_deadline"] for a in listed)
    assert {a["price"] for a in listed} == {"1234.50"}
    driven = fast(day["drivers"][0], Appointment.objects.visible_to(day["drivers"][0]))
    assert driven and all("notes" not in a for a in driven)


def test_keyset_pages_of_rows_cover_the_day_once(day, desk, tomorrow_at):
    seen, url = [], f"/api/appointments/?date={tomorrow_at(0).date()}&page_size=5"
    while url:
        body = api(desk).get(url).json()
        seen += [a["id"] for a in body["results"]]
        url = body["next"]
    assert seen == [a.pk for a in Appointment.objects.order_by("start", "id")]
    # And back: the previous page of the last one is the one before it.
    previous = api(desk).get(body["previous"]).json()["results"]
    assert [a["id"] for a in previous] == seen[-len(previous) - (len(seen) % 5 or 5) :][:5]


@pytest.mark.parametrize("page_size", [1, 5, 50])
def test_the_day_list_query_count_does_not_depend_on_the_page_size(
    day, desk, tomorrow_at, page_size, django_assert_num_queries
):
    url = f"/api/appointments/?date={tomorrow_at(0).date()}&page_size={page_size}"
    for user in (desk, day["drivers"][0]):
        with django_assert_num_queries(2):  # the page, then its trips
            response = api(user).get(url)
        assert response.status_code == 200


@pytest.mark.parametrize("transport", [False, True])
def test_availability_answers_what_its_serializer_renders(day, desk, tomorrow_at, transport):
    service = day["appointments"][0].service
    date = tomorrow_at(0).date()
    # A therapist with a free day, so that with transport the drivers' day shows too.
    factories.therapist(service)
    travel = travel_for(client=None)
    result = availability(service=service, day=date, needs_transport=transport)
    assert sum(len(r.starts) + len(r.no_driver) for r in result) > 20
    assert any(r.starts for r in result)
    if transport:  # the day's drivers are busy at some times a therapist is free
        assert any(r.no_driver for r in result)
    expected = AvailabilitySerializer(
        {
            "service": service.pk,
            "date": date,
            "travel_minutes": 45,
            "needs_transport": transport,
            "therapists": [
                {
                    "therapist": r.therapist.pk,
                    "name": str(r.therapist),
                    "starts": r.starts,
                    "no_driver": r.no_driver,
                }
                for r in result
            ],
        }
    ).data
    query = f"service={service.pk}&date={date}&needs_transport={str(transport).lower()}"
    body = api(desk).get(f"/api/availability/?{query}").json()
    assert body == expected
    assert availability_body(service, date, result, travel, transport) == expected


@pytest.mark.parametrize("transport", [True, False])
def test_a_booking_answers_what_the_serializer_renders_of_it(
    day, desk, manager, tomorrow_at, transport
):
    service = day["appointments"][0].service
    for _ in range(2):  # drivers for the new legs, beside the day's
        factories.driver()
    for n, user in enumerate([desk, manager]):
        body = {
            "client": factories.ClientFactory().pk,
            "service": service.pk,
            "therapist": factories.therapist(service).pk,  # the day's have no room left
            "start": tomorrow_at(16).isoformat(),
            "notes": "gate code 1234",
            "needs_transport": transport,
        }
        response = api(user).post("/api/appointments/", body, format="json")
        assert response.status_code == 201, response.json()
        answer = response.json()
        assert bool(answer["trips"]) is transport
        assert answer == serialized(user, Appointment.objects.filter(pk=answer["id"]))[0]
        # A retry with an Idempotency-Key replays the same body.
        keyed = api(user).post(
            "/api/appointments/",
            {**body, "start": tomorrow_at(9).isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"k{n}{transport}",
        )
        again = api(user).post(
            "/api/appointments/",
            {**body, "start": tomorrow_at(9).isoformat()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"k{n}{transport}",
        )
        assert keyed.status_code == again.status_code == 201
        assert again.json() == keyed.json()
        assert (
            keyed.json() == serialized(user, Appointment.objects.filter(pk=keyed.json()["id"]))[0]
        )


@pytest.fixture
def address_book(db):
    """Namesakes (so that the order by name then id matters), odd characters, blanks."""
    names = ["Maria Santos", "maria santos", "José Santos-Reyes", "Ana Santos", "Zed O'Hara"]
    clients = [
        factories.ClientFactory(name=name, email=f"c{i}@example.com" if i % 2 else "")
        for i, name in enumerate(names * 4)
    ]
    clients[3].notes = "Prefers mornings\nGate code 12"
    clients[3].save()
    return clients


@pytest.mark.parametrize("query", ["", "?q=santos", "?q=SANTOS&page_size=3", "?q=0917"])
def test_client_pages_answer_what_the_serializer_renders(address_book, desk, query):
    """Page after page (a deferred join: names and ids first, then the rows)."""
    search = query.removeprefix("?q=").split("&")[0]
    expected_rows = Client.objects.search(search) if search else Client.objects.all()
    expected = ClientSerializer(expected_rows.order_by("name", "id"), many=True).data
    got, url = [], f"/api/clients/{query}"
    while url:
        body = api(desk).get(url).json()
        got += body["results"]
        url = body["next"]
    assert expected and got == expected


def test_client_page_query_count_does_not_depend_on_the_page_size(
    address_book, desk, django_assert_num_queries
):
    for size in (1, 7, 50):
        with django_assert_num_queries(2):  # the page's names and ids, then its rows
            response = api(desk).get(f"/api/clients/?q=santos&page_size={size}")
        assert len(response.json()["results"]) == min(size, 16)
