"""The desk's pages for manual dispatch and acting for staff (issue 13 items 3 and 4):
the same services as the API, behind forms on the appointment page and the drivers panel."""

from __future__ import annotations

import pytest

from scheduling.models import DispatchDecision, Transition, Trip
from scheduling.services.trips import set_shift
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(book, desk, therapist, tomorrow_at, client):
    liza = factories.driver(first_name="Liza", last_name="Reyes")
    set_shift(driver=liza, on_shift=True, now=tomorrow_at(7))
    appointment = book(tomorrow_at(10), needs_transport=True)
    client.force_login(desk)
    return {"liza": liza, "appointment": appointment, "trip": appointment.trips.get(leg="dropoff")}


def page(client, appointment) -> str:
    response = client.get(f"/desk/appointments/{appointment.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_appointment_page_gives_a_trip_by_hand(client, scene, desk):
    appointment, trip, liza = scene["appointment"], scene["trip"], scene["liza"]
    html = page(client, appointment)
    assert "Dispatch by hand" in html
    assert f'name="assign{trip.pk}-driver"' in html and "Liza Reyes" in html

    response = client.post(
        f"/desk/trips/{trip.pk}/assign/",
        {
            "back": "appointment",
            f"assign{trip.pk}-driver": liza.pk,
            f"assign{trip.pk}-reason": "near",
        },
        follow=True,
    )

    assert response.redirect_chain[-1][0] == f"/desk/appointments/{appointment.pk}/"
    html = response.content.decode()
    assert "trip given to Liza Reyes" in html
    assert "Given to Liza Reyes by" in html and ": near" in html
    assert Trip.objects.get(pk=trip.pk).driver == liza
    assert DispatchDecision.objects.get(trip=trip).decided_by == desk
    # Now it can be taken back, and the driver's actions can be taken for her.
    assert f'name="unassign{trip.pk}-reason"' in html
    assert f"/desk/trips/{trip.pk}/for/depart/" in html


def test_a_refusal_is_a_message_and_changes_nothing(client, scene):
    trip = scene["trip"]
    resting = factories.driver(first_name="Resting")
    response = client.post(
        f"/desk/trips/{trip.pk}/assign/",
        {f"assign{trip.pk}-driver": resting.pk, f"assign{trip.pk}-reason": "r"},
        follow=True,
    )
    assert "is not on shift" in response.content.decode()
    assert Trip.objects.get(pk=trip.pk).status == "queued"
    response = client.post(f"/desk/trips/{trip.pk}/assign/", {}, follow=True)
    assert "Driver: This field is required." in response.content.decode()


def test_the_drivers_panel_gives_and_takes_back(client, scene):
    trip, liza = scene["trip"], scene["liza"]
    html = client.get("/desk/drivers/").content.decode()
    assert f"drivers-dispatch-trip-{trip.pk}" in html
    response = client.post(
        f"/desk/trips/{trip.pk}/assign/",
        {"back": "drivers", f"assign{trip.pk}-driver": liza.pk, f"assign{trip.pk}-reason": "r"},
    )
    assert response.status_code == 302 and response["Location"] == "/desk/drivers/"
    response = client.post(
        f"/desk/trips/{trip.pk}/unassign/",
        {"back": "drivers", f"unassign{trip.pk}-reason": "bike broke"},
        follow=True,
    )
    assert "taken back from Liza Reyes" in response.content.decode()
    assert Trip.objects.get(pk=trip.pk).status == "queued"


def test_accepting_for_the_therapist_needs_the_phone_confirmed(client, scene, desk, therapist):
    appointment = scene["appointment"]
    html = page(client, appointment)
    assert f"/desk/appointments/{appointment.pk}/for/accept/" in html
    url = f"/desk/appointments/{appointment.pk}/for/accept/"

    response = client.post(url, {"for-accept-reason": "phoned"}, follow=True)
    assert "Tick that they confirmed it by phone." in response.content.decode()
    assert not Transition.objects.filter(appointment=appointment, action="accept").exists()

    response = client.post(
        url, {"for-accept-confirmed": "on", "for-accept-reason": "phoned"}, follow=True
    )
    html = response.content.decode()
    assert "Recorded: Ana Cruz accepted, by phone." in html
    assert f"{desk} for Ana Cruz, by phone" in html
    transition = Transition.objects.get(appointment=appointment, action="accept")
    assert (transition.actor, transition.on_behalf_of) == (desk, therapist)


def test_the_desk_departs_for_the_driver(client, scene, desk):
    trip, liza = scene["trip"], scene["liza"]
    client.post(
        f"/desk/trips/{trip.pk}/assign/",
        {f"assign{trip.pk}-driver": liza.pk, f"assign{trip.pk}-reason": "r"},
    )
    response = client.post(
        f"/desk/trips/{trip.pk}/for/depart/", {f"for{trip.pk}-depart-confirmed": "on"}, follow=True
    )
    assert "Recorded: Liza Reyes set off, by phone." in response.content.decode()
    assert Trip.objects.get(pk=trip.pk).transitions.latest("id").on_behalf_of == liza


@pytest.mark.parametrize("path", ["trips/{trip}/for/accept/", "appointments/{appt}/for/depart/"])
def test_unknown_actions_are_404(client, scene, path):
    url = "/desk/" + path.format(trip=scene["trip"].pk, appt=scene["appointment"].pk)
    assert client.post(url, {}).status_code == 404


def test_only_the_desk(client, scene, therapist):
    client.force_login(therapist)
    trip = scene["trip"]
    response = client.post(f"/desk/trips/{trip.pk}/assign/", {})
    assert response.status_code in (302, 403)
    assert Trip.objects.get(pk=trip.pk).status == "queued"
