"""Manual dispatch and acting for staff on the API (issue 13 items 3 and 4): the bodies,
the refusals, and the stream each role receives (through /api/events/)."""

from __future__ import annotations

import json

import pytest

from scheduling.models import DispatchDecision, Transition, Trip
from scheduling.services.appointments import create_appointment
from scheduling.services.trips import set_shift
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(desk, service, client_record, therapist, tomorrow_at):
    """Two drivers on shift; Ana's 10:00 with transport, its drop-off queued."""
    liza = factories.driver(first_name="Liza", phone="+639180000001")
    ben = factories.driver(first_name="Ben", phone="+639180000002")
    set_shift(driver=liza, on_shift=True, now=tomorrow_at(7))
    set_shift(driver=ben, on_shift=True, now=tomorrow_at(7, 5))
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(10),
        needs_transport=True,
    )
    trip = appointment.trips.get(leg="dropoff")
    return {"liza": liza, "ben": ben, "appointment": appointment, "trip": trip}


def post(user, url: str, body) -> tuple[int, dict]:
    response = factories.api(user).post(url, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def events(user, after: int = 0) -> list[dict]:
    response = factories.api(user).get("/api/events/", {"after": after})
    assert response.status_code == 200, response.content
    return response.json()["events"]


def last_seq(user) -> int:
    return factories.api(user).get("/api/events/", {"after": 0, "limit": 1000}).json()["last_seq"]


def test_assign_answers_the_trip_and_the_drivers_stream_has_it(desk, scene, therapist):
    trip, liza, ben = scene["trip"], scene["liza"], scene["ben"]
    seen = {u.pk: last_seq(u) for u in (liza, ben, therapist)}

    code, body = post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": "r"})

    assert code == 200, body
    assert body == {
        "id": trip.pk,
        "appointment": trip.appointment_id,
        "leg": "dropoff",
        "window_start": body["window_start"],
        "window_end": body["window_end"],
        "status": "assigned",
        "driver": liza.pk,
        "passengers": 1,
        "visit": None,
    }
    mine = events(liza, seen[liza.pk])
    assert [e["type"] for e in mine] == ["trip.assigned", "driver.queue"]
    assert mine[0]["data"]["id"] == trip.pk and "notes" not in mine[0]["data"]
    # Ben's stream has his queue place only; the therapist hears of her trip.
    assert [e["type"] for e in events(ben, seen[ben.pk])] == ["driver.queue"]
    assert [e["type"] for e in events(therapist, seen[therapist.pk])] == ["trip.assigned"]
    # The driver's own trip list shows it.
    listed = factories.api(liza).get("/api/trips/").json()["results"]
    assert [t["id"] for t in listed] == [trip.pk]


def test_unassign_drops_it_from_the_drivers_phone(desk, scene):
    trip, liza = scene["trip"], scene["liza"]
    post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": "r"})
    seen = last_seq(liza)

    code, body = post(desk, f"/api/trips/{trip.pk}/unassign/", {"reason": "bike broke"})

    assert code == 200, body
    assert (body["status"], body["driver"]) == ("queued", None)
    mine = events(liza, seen)
    assert [(e["type"], e["data"].get("driver", "-")) for e in mine] == [
        ("trip.updated", None),
        ("driver.queue", "-"),
    ]
    assert mine[1]["data"]["position"] == 1  # her place back, ahead of Ben
    assert factories.api(liza).get(f"/api/trips/{trip.pk}/").status_code == 404
    decision = DispatchDecision.objects.filter(trip=trip).latest("id")
    assert (decision.outcome, decision.decided_by, decision.reason) == (
        "unassigned",
        desk,
        "bike broke",
    )


def test_refusals_are_clear_409s(desk, scene, tomorrow_at):
    trip, liza, ben = scene["trip"], scene["liza"], scene["ben"]
    set_shift(driver=ben, on_shift=False)
    code, body = post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": ben.pk, "reason": "r"})
    assert (code, body["code"], body["reason"]) == (409, "conflict", "off_shift")
    code, body = post(desk, f"/api/trips/{trip.pk}/unassign/", {"reason": "r"})
    assert (code, body["code"], body["status"]) == (409, "invalid_transition", "queued")
    assert post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": "r"})[0] == 200
    code, body = post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": "r"})
    assert (code, body["code"], body["status"]) == (409, "invalid_transition", "assigned")
    assert body["detail"] == "Cannot assign a trip that is assigned."


def test_a_busy_driver_is_a_409_naming_the_trip(desk, scene, service, client_record, tomorrow_at):
    trip, liza = scene["trip"], scene["liza"]
    other = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=factories.therapist(service).pk,
        start=tomorrow_at(10),
        needs_transport=True,
    ).trips.get(leg="dropoff")
    post(desk, f"/api/trips/{other.pk}/assign/", {"driver": liza.pk, "reason": "r"})
    code, body = post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": "r"})
    assert (code, body["code"], body["reason"]) == (409, "conflict", "driver_busy")
    assert [c["trip"] for c in body["conflicts"]] == [other.pk]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "driver"),
        ({"driver": "abc", "reason": "r"}, "driver"),
        ({"driver": -1, "reason": "r"}, "driver"),
        ({"driver": 10**12, "reason": "r"}, "driver"),
        ({"driver": 987654321, "reason": "r"}, "driver"),
        ({"driver": None, "reason": "r"}, "driver"),
        ({"driver": "LIZA", "reason": ""}, "driver"),
        ({"reason": "r"}, "driver"),
        ("LIZA", None),
        ([1, 2], None),
    ],
)
def test_bad_assign_input_is_a_400_and_writes_nothing(desk, scene, body, field):
    trip = scene["trip"]
    before = Transition.objects.count(), DispatchDecision.objects.count()
    code, answer = post(desk, f"/api/trips/{trip.pk}/assign/", body)
    assert code == 400, answer
    if field:
        assert field in answer["errors"]
    assert (Transition.objects.count(), DispatchDecision.objects.count()) == before
    assert Trip.objects.get(pk=trip.pk).status == "queued"


def test_the_reason_is_required_both_ways(desk, scene):
    trip, liza = scene["trip"], scene["liza"]
    code, body = post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk})
    assert code == 400 and "reason" in body["errors"]
    code, body = post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": " "})
    assert code == 400 and "reason" in body["errors"]
    code, body = post(desk, f"/api/trips/{trip.pk}/unassign/", {"reason": "x" * 2001})
    assert code == 400 and "reason" in body["errors"]


def test_unknown_trip_is_404_and_others_are_403(desk, scene, therapist):
    liza = scene["liza"]
    assert post(desk, "/api/trips/987654321/assign/", {"driver": liza.pk, "reason": "r"})[0] == 404
    assert post(desk, "/api/trips/987654321/unassign/", {"reason": "r"})[0] == 404
    for user in (liza, therapist):
        for action in ("assign", "unassign"):
            code, _ = post(user, f"/api/trips/{scene['trip'].pk}/{action}/", {"reason": "r"})
            assert code == 403


# --- acting for staff -------------------------------------------------------------------------


def test_the_desk_accepts_for_the_therapist_on_the_api(desk, scene, therapist):
    appointment = scene["appointment"]
    url = f"/api/appointments/{appointment.pk}/accept/"
    code, body = post(desk, url, {"reason": "phoned"})
    assert code == 403 and "on_behalf" in body["detail"]
    seen = last_seq(therapist)
    code, body = post(desk, url, {"reason": "phoned, her phone died", "on_behalf": True})
    assert code == 200, body
    assert body["status"] == "confirmed"
    transition = appointment.transitions.latest("id")
    assert (transition.actor, transition.on_behalf_of) == (desk, therapist)
    # Her own stream and page show it as if she had accepted.
    assert [e["data"]["status"] for e in events(therapist, seen)] == ["confirmed"]


def test_a_therapist_may_not_send_on_behalf(scene, therapist):
    url = f"/api/appointments/{scene['appointment'].pk}/accept/"
    code, body = post(therapist, url, {"on_behalf": True})
    assert code == 403 and "behalf" in body["detail"]
    assert post(therapist, url, {"on_behalf": "perhaps"})[0] == 400


def test_cancel_has_nobody_to_act_for(desk, scene):
    url = f"/api/appointments/{scene['appointment'].pk}/cancel/"
    assert post(desk, url, {"on_behalf": True})[0] == 403


def test_the_desk_drives_for_the_driver_and_asks_the_pickup_for_the_therapist(
    desk, scene, therapist
):
    trip, liza, appointment = scene["trip"], scene["liza"], scene["appointment"]
    post(desk, f"/api/trips/{trip.pk}/assign/", {"driver": liza.pk, "reason": "r"})
    code, body = post(desk, f"/api/trips/{trip.pk}/depart/", {})
    assert code == 403
    code, body = post(desk, f"/api/trips/{trip.pk}/depart/", {"on_behalf": True, "reason": "radio"})
    assert (code, body["status"]) == (200, "en_route")
    transition = Trip.objects.get(pk=trip.pk).transitions.latest("id")
    assert (transition.actor, transition.on_behalf_of, transition.reason) == (desk, liza, "radio")
    assert post(liza, f"/api/trips/{trip.pk}/arrive/", {"on_behalf": True})[0] == 403
    post(desk, f"/api/appointments/{appointment.pk}/accept/", {"on_behalf": True})
    code, _ = post(desk, f"/api/appointments/{appointment.pk}/request-pickup/", {"on_behalf": True})
    assert code == 200
    pickup = appointment.trips.get(leg="pickup").transitions.latest("id")
    assert (pickup.action, pickup.actor, pickup.on_behalf_of) == ("request_pickup", desk, therapist)
