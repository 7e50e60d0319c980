"""POST /api/visits/, GET /api/visits/{id}/ and POST /api/visits/{id}/cancel/ (issue 14
item 1): the contract in docs/api.md, "Visits"."""

from __future__ import annotations

import pytest

from scheduling.models import (
    Appointment,
    Notification,
    StreamEvent,
    TherapistChoice,
    Transition,
    Trip,
    Visit,
)
from scheduling.services.manual_dispatch import assign_by_hand
from scheduling.services.trips import set_shift
from tests import factories

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, ...]:
    tables = (Visit, Appointment, Trip, Transition, Notification, StreamEvent, TherapistChoice)
    return tuple(m.objects.count() for m in tables)


@pytest.fixture
def ben(service):
    return factories.therapist(service, username="ben", first_name="Ben")


@pytest.fixture
def car():
    return factories.driver(vehicle="car", seats=2, username="carla")


@pytest.fixture
def body(client_record, service, therapist, tomorrow_at):
    return {
        "client": client_record.pk,
        "start": tomorrow_at(10).isoformat(),
        "needs_transport": True,
        "sessions": [
            {"service": service.pk, "therapist": therapist.pk},
            {"service": service.pk, "therapist": None},
        ],
    }


def test_booking_a_couples_visit_answers_with_its_sessions_and_shared_trips(
    desk, car, therapist, ben, body, tomorrow_at
):
    response = factories.api(desk).post("/api/visits/", body, format="json")

    assert response.status_code == 201, response.json()
    got = response.json()
    visit = Visit.objects.get()
    assert got["id"] == visit.pk and got["start"] == tomorrow_at(10).isoformat()
    assert [a["therapist"] for a in got["appointments"]] == [therapist.pk, ben.pk]
    assert {a["visit"] for a in got["appointments"]} == {visit.pk}
    assert [(t["leg"], t["passengers"], t["visit"]) for t in got["trips"]] == [
        ("dropoff", 2, visit.pk),
        ("pickup", 2, visit.pk),
    ]
    # Every other representation of a session carries the visit's id.
    session = got["appointments"][1]["id"]
    detail = factories.api(desk).get(f"/api/appointments/{session}/").json()
    assert detail["visit"] == visit.pk
    listed = factories.api(desk).get("/api/appointments/").json()["results"]
    assert [a["visit"] for a in listed] == [visit.pk, visit.pk]
    lead = next(a for a in listed if a["trips"])
    assert {t["passengers"] for t in lead["trips"]} == {2}


def test_a_failing_session_is_a_409_naming_it_and_nothing_is_written(
    desk, car, therapist, ben, body, book, tomorrow_at
):
    book(tomorrow_at(10, 30), therapist_id=therapist.pk)
    before = counts()

    response = factories.api(desk).post("/api/visits/", body, format="json")

    assert response.status_code == 409
    got = response.json()
    assert (got["code"], got["reason"]) == ("conflict", "visit_conflict")
    assert got["failures"] == [
        {
            "session": 0,
            "service": body["sessions"][0]["service"],
            "therapist": therapist.pk,
            "reason": "therapist_busy",
            "detail": got["failures"][0]["detail"],
        }
    ]
    assert "already booked" in got["failures"][0]["detail"]
    assert counts() == before


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b.pop("sessions"), "sessions"),
        (lambda b: b.update(sessions=b["sessions"][:1]), "sessions"),
        (lambda b: b.update(sessions=b["sessions"] * 3), "sessions"),
        (lambda b: b.update(sessions="two"), "sessions"),
        (lambda b: b["sessions"][1].update(service="x"), "sessions[1].service"),
        (lambda b: b["sessions"][0].pop("service"), "sessions[0].service"),
        (lambda b: b.pop("needs_transport"), "needs_transport"),
        (lambda b: b.update(start="2030-05-01T10:00"), "start"),
        (lambda b: b.update(client=None), "client"),
    ],
)
def test_a_malformed_body_is_a_400_naming_the_field(desk, body, change, field):
    change(body)
    response = factories.api(desk).post("/api/visits/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not Visit.objects.exists()


def test_the_same_therapist_twice_is_a_400_naming_the_session(desk, therapist, body):
    body["sessions"][1]["therapist"] = therapist.pk
    response = factories.api(desk).post("/api/visits/", body, format="json")
    assert response.status_code == 400
    assert "sessions[1].therapist" in response.json()["errors"]


def test_only_the_desk_books_and_cancels(therapist, body, car, desk, ben):
    assert factories.api(therapist).post("/api/visits/", body, format="json").status_code == 403
    visit = factories.api(desk).post("/api/visits/", body, format="json").json()["id"]
    response = factories.api(therapist).post(f"/api/visits/{visit}/cancel/", {}, format="json")
    assert response.status_code == 403


def test_who_sees_a_visit(desk, car, therapist, ben, body, service):
    visit = factories.api(desk).post("/api/visits/", body, format="json").json()["id"]
    url = f"/api/visits/{visit}/"
    stranger = factories.therapist(service, username="stranger")
    other_driver = factories.driver(username="other")
    assert factories.api(desk).get(url).status_code == 200
    assert factories.api(ben).get(url).status_code == 200
    assert factories.api(stranger).get(url).status_code == 404
    assert factories.api(car).get(url).status_code == 404  # holds no trip of it yet
    assert factories.api(other_driver).get(url).status_code == 404

    set_shift(driver=car, on_shift=True)
    pickup = Trip.objects.get(visit_id=visit, leg="pickup")
    assign_by_hand(actor=desk, trip_id=pickup.pk, driver_id=car.pk, reason="regular")
    seen = factories.api(car).get(url).json()
    # A driver: the trip they hold, and no desk notes.
    assert [t["id"] for t in seen["trips"]] == [pickup.pk]
    assert "notes" not in seen
    assert all("notes" not in a for a in seen["appointments"])


def test_cancel_cancels_every_session_and_the_trips(desk, car, therapist, ben, body):
    visit = factories.api(desk).post("/api/visits/", body, format="json").json()["id"]

    response = factories.api(desk).post(
        f"/api/visits/{visit}/cancel/", {"reason": "client ill"}, format="json"
    )

    assert response.status_code == 200, response.json()
    got = response.json()
    assert {a["status"] for a in got["appointments"]} == {"cancelled"}
    assert {t["status"] for t in got["trips"]} == {"cancelled"}
    again = factories.api(desk).post(f"/api/visits/{visit}/cancel/", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    assert (
        factories.api(desk).post("/api/visits/987654/cancel/", {}, format="json").status_code == 404
    )


def test_one_session_cancelled_resizes_the_trips_and_cannot_be_moved_alone(
    desk, car, therapist, ben, body, tomorrow_at
):
    got = factories.api(desk).post("/api/visits/", body, format="json").json()
    first, second = (a["id"] for a in got["appointments"])

    moved = factories.api(desk).post(
        f"/api/appointments/{second}/reschedule/",
        {"start": tomorrow_at(14).isoformat()},
        format="json",
    )
    assert moved.status_code == 409 and moved.json()["reason"] == "part_of_visit"

    factories.api(desk).post(f"/api/appointments/{first}/cancel/", {}, format="json")
    visit = factories.api(desk).get(f"/api/visits/{got['id']}/").json()
    assert [a["status"] for a in visit["appointments"]] == ["cancelled", "pending"]
    assert [(t["appointment"], t["passengers"]) for t in visit["trips"]] == [
        (second, 1),
        (second, 1),
    ]
