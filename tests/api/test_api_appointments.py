"""The appointments endpoints: create, list, detail, PATCH, actions, and their errors."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from scheduling.models import Appointment, Transition, WorkingHours
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    def as_user(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return as_user


@pytest.fixture
def booking(client_record, service, therapist, tomorrow_at):
    factories.ensure_driver()  # a visit with transport needs a driver who works then
    return {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "start": tomorrow_at(10).isoformat(),
        "address": "12 Mabini St, Makati",
        "needs_transport": True,
    }


def test_create_returns_the_contract_fields(api, desk, booking, tomorrow_at):
    response = api(desk).post("/api/appointments/", booking, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert body["start"] == tomorrow_at(10).isoformat()
    assert body["end"] == tomorrow_at(11).isoformat()
    assert {
        "id",
        "client",
        "service",
        "therapist",
        "address",
        "trips",
        "response_deadline",
        "price",
        "travel_minutes",
        "area",
        "busy_from",
        "busy_until",
    } <= set(body)
    assert [t["leg"] for t in body["trips"]] == ["dropoff", "pickup"]
    # The default travel: 45 minutes there before 10:00, back by 12:00 after the buffer.
    assert (body["travel_minutes"], body["area"]) == (45, None)
    assert (body["busy_from"], body["busy_until"]) == (
        tomorrow_at(9, 15).isoformat(),
        tomorrow_at(12).isoformat(),
    )
    assert [(t["window_start"], t["window_end"]) for t in body["trips"]] == [
        (tomorrow_at(9, 15).isoformat(), tomorrow_at(10).isoformat()),
        (tomorrow_at(11, 15).isoformat(), tomorrow_at(12).isoformat()),
    ]


def test_create_in_an_area_takes_its_travel(api, desk, booking, tomorrow_at):
    area = factories.ServiceAreaFactory(name="Pasig", travel_minutes=20)
    response = api(desk).post("/api/appointments/", {**booking, "area": area.pk}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["travel_minutes"], body["area"]) == (20, area.pk)
    assert body["busy_from"] == tomorrow_at(9, 40).isoformat()
    unknown = api(desk).post("/api/appointments/", {**booking, "area": 999999}, format="json")
    assert unknown.status_code == 400 and "area" in unknown.json()["errors"]


def test_no_driver_is_409_naming_the_legs(api, desk, booking, tomorrow_at):
    for hours in WorkingHours.objects.filter(staff__role="driver"):
        hours.end = hours.end.replace(hour=11)  # the driver goes home at 11:00
        hours.save()
    response = api(desk).post("/api/appointments/", booking, format="json")
    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["reason"]) == ("conflict", "no_driver")
    assert body["detail"].startswith("No driver is free for the pick-up 11:15–12:00")
    assert body["conflicts"] == [
        {
            "appointment": None,
            "start": tomorrow_at(11, 15).isoformat(),
            "end": tomorrow_at(12).isoformat(),
            "leg": "pickup",
        }
    ]
    assert not Appointment.objects.exists()


def test_conflict_is_409_with_the_conflicting_appointment(api, desk, booking):
    first = api(desk).post("/api/appointments/", booking, format="json").json()
    response = api(desk).post("/api/appointments/", booking, format="json")
    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["reason"]) == ("conflict", "therapist_busy")
    assert [c["appointment"] for c in body["conflicts"]] == [first["id"]]
    assert [(c["start"], c["end"]) for c in body["conflicts"]] == [
        (first["busy_from"], first["busy_until"])
    ]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"start": "2030-05-01T10:00:00"}, "start"),
        ({"start": "10000-01-01T10:00:00+08:00"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"client": "abc"}, "client"),
        ({"client": 10**30}, "client"),
        ({"service": -1}, "service"),
        ({"therapist": "abc"}, "therapist"),  # null books any free therapist (issue 13)
        ({"notes": "x" * 1_000_000}, "notes"),
        ({"needs_transport": "maybe"}, "needs_transport"),
    ],
)
def test_bad_input_is_400_with_field_errors_and_nothing_written(api, desk, booking, payload, field):
    response = api(desk).post("/api/appointments/", {**booking, **payload}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()["errors"]
    assert not Appointment.objects.exists()


def test_malformed_json_and_non_utf8(api, desk):
    client = api(desk)
    for body in (b"{not json", b"\xff\xfe\x00garbage", b"[1, 2", b""):
        response = client.post("/api/appointments/", body, content_type="application/json")
        assert response.status_code == 400, (body, response.content[:200])
        assert "detail" in response.json()
    assert not Appointment.objects.exists()


def test_therapist_accepts_own_and_cannot_see_others(api, desk, booking, therapist, service):
    created = api(desk).post("/api/appointments/", booking, format="json").json()
    other = factories.therapist(service)
    assert api(other).post(f"/api/appointments/{created['id']}/accept/").status_code == 404
    response = api(therapist).post(f"/api/appointments/{created['id']}/accept/")
    assert response.status_code == 200 and response.json()["status"] == "confirmed"
    again = api(therapist).post(f"/api/appointments/{created['id']}/accept/")
    assert again.status_code == 409
    assert again.json() == {
        "code": "invalid_transition",
        "status": "confirmed",
        "detail": again.json()["detail"],
    }


def test_patch_only_notes_and_address(api, desk, booking):
    created = api(desk).post("/api/appointments/", booking, format="json").json()
    url = f"/api/appointments/{created['id']}/"
    ok = api(desk).patch(url, {"notes": "Gate code 1234"}, format="json")
    assert ok.status_code == 200 and ok.json()["notes"] == "Gate code 1234"
    for field, value in (("status", "completed"), ("price", "0.00"), ("therapist", 1)):
        refused = api(desk).patch(url, {field: value}, format="json")
        assert refused.status_code == 400 and field in refused.json()["errors"]
    stored = Appointment.objects.get()
    assert (stored.status, stored.notes) == ("pending", "Gate code 1234")
    assert Transition.objects.filter(appointment=stored).count() == 1


def test_unauthenticated_is_401(booking):
    response = APIClient().post("/api/appointments/", booking, format="json")
    assert response.status_code == 401
    assert APIClient().get("/api/schema/").status_code == 200


def test_unknown_route_is_json_404(api, desk):
    response = api(desk).get("/api/nothing-here/")
    assert response.status_code == 404 and response.json()["detail"]


def test_request_pickup_by_the_therapist(api, desk, booking, therapist, service):
    created = api(desk).post("/api/appointments/", booking, format="json").json()
    url = f"/api/appointments/{created['id']}/request-pickup/"
    assert api(factories.therapist(service)).post(url).status_code == 404
    assert api(therapist).post(url).status_code == 409  # still pending: not started
    api(therapist).post(f"/api/appointments/{created['id']}/accept/")
    api(therapist).post(f"/api/appointments/{created['id']}/start/")
    response = api(therapist).post(url)
    assert response.status_code == 200, response.json()
    pickup = next(t for t in response.json()["trips"] if t["leg"] == "pickup")
    assert pickup["status"] in {"queued", "assigned"}
