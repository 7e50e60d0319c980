"""The driver's shift (/driver/): the shift switch, the queue position, the trips and their
buttons, each reaching its service; and what a driver never sees. Django test client on
real PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from scheduling.models import DriverProfile, Transition, Trip
from scheduling.services.appointments import create_appointment
from scheduling.services.trips import act_on_trip, assign_trip, set_shift
from tests import factories

pytestmark = pytest.mark.django_db

PAGE = "/driver/"
REGIONS = ("/driver/status/", "/driver/trips/")
SECRET_NOTE = "Gate code 4411, dog is nervous"
BOOKING_NOTE = "Client prefers lavender oil"
CLIENT_PHONE = "+639175550123"


@pytest.fixture
def driver(db):
    return factories.driver(first_name="Ben", last_name="Reyes", username="ben")


@pytest.fixture
def signed_in(client, driver):
    client.force_login(driver)
    return client


@pytest.fixture
def private_client(db):
    return factories.ClientFactory(
        name="Carla Private", phone=CLIENT_PHONE, notes=SECRET_NOTE, address="12 Mabini St"
    )


@pytest.fixture
def trip_for(desk, service, therapist, private_client):
    """A leg of a booking with transport at `start`, assigned to `driver`."""

    def make(start: datetime, driver, *, leg: str = "dropoff", therapist_=None, now=None) -> Trip:
        appointment = create_appointment(
            actor=desk,
            client_id=private_client.pk,
            service_id=service.pk,
            therapist_id=(therapist_ or therapist).pk,
            start=start,
            notes=BOOKING_NOTE,
            needs_transport=True,
            now=now,
        )
        trip = appointment.trips.get(leg=leg)
        assign_trip(trip_id=trip.pk, driver_id=driver.pk)
        trip.refresh_from_db()
        return trip

    return make


def day_at(days: int, hour: int, minute: int = 0) -> datetime:
    day = timezone.localdate() + timedelta(days=days)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def act_url(trip: Trip, action: str) -> str:
    return f"/driver/trips/{trip.pk}/{action}/"


def action_urls(html: str) -> set[str]:
    return set(re.findall(r'action="(/driver/trips/\d+/\w+/)"', html))


def assert_nothing_private(html: str) -> None:
    for private in (SECRET_NOTE, BOOKING_NOTE, CLIENT_PHONE, "9175550123"):
        assert private not in html


# --- who sees it ------------------------------------------------------------------------


def test_an_off_shift_driver_sees_the_switch(signed_in):
    html = signed_in.get(PAGE).content.decode()
    assert "Off shift" in html
    assert "Go on shift" in html
    assert 'name="on_shift" value="1"' in html
    assert "No trip right now." in html
    assert 'data-live="driver.queue trip.assigned trip.updated"' in html
    assert 'data-live="trip.assigned trip.updated"' in html
    assert "data-live-after=" in html


@pytest.mark.parametrize("role", ["receptionist", "manager", "therapist"])
def test_other_roles_get_403(client, role):
    client.force_login(factories.UserFactory(role=role))
    for path in (PAGE, *REGIONS):
        assert client.get(path).status_code == 403, path
    assert client.post("/driver/shift/", {"on_shift": "1"}).status_code == 403


def test_anonymous_is_sent_to_login(client, db):
    for path in (PAGE, *REGIONS):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")


def test_a_driver_without_a_profile_is_told_what_to_do(client, db):
    client.force_login(factories.UserFactory(role="driver"))
    assert "Ask a manager to set up your driver profile" in client.get(PAGE).content.decode()
    response = client.post("/driver/shift/", {"on_shift": "1"}, follow=True)
    assert "no driver profile yet" in response.content.decode()


# --- shift and queue --------------------------------------------------------------------


def test_going_on_and_off_shift(signed_in, driver):
    response = signed_in.post("/driver/shift/", {"on_shift": "1"}, follow=True)

    profile = DriverProfile.objects.get(user=driver)
    assert profile.on_shift and profile.available_since is not None
    html = response.content.decode()
    assert response.redirect_chain == [(PAGE, 302)]
    assert "You are on shift" in html
    assert 'data-queue-position="1"' in html
    assert "You are next in the queue" in html and "1 driver waiting" in html

    response = signed_in.post("/driver/shift/", {"on_shift": "0"}, follow=True)

    profile.refresh_from_db()
    assert not profile.on_shift and profile.available_since is None
    assert "You are off shift" in response.content.decode()


def test_the_queue_position_counts_the_drivers_ahead(signed_in, driver):
    earlier = [factories.driver(), factories.driver()]
    for other in earlier:
        set_shift(driver=other, on_shift=True)
    set_shift(driver=driver, on_shift=True)
    set_shift(driver=factories.driver(), on_shift=True)  # behind

    html = signed_in.get("/driver/status/").content.decode()

    assert 'data-queue-position="3"' in html
    assert "2 ahead of you" in html
    assert "4 drivers waiting" in html


@pytest.mark.parametrize("data", [{}, {"on_shift": "maybe"}, {"on_shift": "x" * 10_000}])
def test_bad_shift_input_is_a_message(signed_in, driver, data):
    response = signed_in.post("/driver/shift/", data, follow=True)
    assert response.status_code == 200
    assert "Choose on shift or off shift." in response.content.decode()
    assert not DriverProfile.objects.get(user=driver).on_shift


# --- trips ------------------------------------------------------------------------------


def test_the_trips_show_where_and_when_and_never_the_clients_private_details(
    signed_in, driver, trip_for, tomorrow_at
):
    trip = trip_for(tomorrow_at(10), driver)

    pages = [signed_in.get(PAGE), *(signed_in.get(path) for path in REGIONS)]

    html = pages[0].content.decode()
    assert "Drop-off" in html
    assert "Take Ana Cruz to the client" in html
    assert "12 Mabini St" in html
    # The window (45 minutes before the 10:00 start) and the session, in Manila time.
    assert ">09:15</time> – <time" in html and ">10:00</time>" in html
    assert "10:00 – 11:00" in html
    assert 'data-status="assigned"' in html
    assert action_urls(html) == {act_url(trip, "depart")}
    for page in pages:
        assert_nothing_private(page.content.decode())
        assert "Carla Private" not in page.content.decode()


def test_buttons_follow_the_state_machine(signed_in, driver, trip_for, tomorrow_at):
    assigned = trip_for(tomorrow_at(10), driver)
    en_route = trip_for(tomorrow_at(13), driver)
    arrived = trip_for(tomorrow_at(16), driver)
    act_on_trip(actor=driver, trip_id=en_route.pk, action="depart")
    for action in ("depart", "arrive"):
        act_on_trip(actor=driver, trip_id=arrived.pk, action=action)

    html = signed_in.get(PAGE).content.decode()

    assert action_urls(html) == {
        act_url(assigned, "depart"),
        act_url(en_route, "arrive"),
        act_url(arrived, "complete"),
    }
    # The trip under way comes first, whatever the windows.
    assert html.index(f'id="trip-{en_route.pk}"') < html.index(f'id="trip-{assigned.pk}"')


def test_depart_arrive_complete_through_the_page(signed_in, driver, trip_for, tomorrow_at):
    set_shift(driver=driver, on_shift=True)
    trip = trip_for(tomorrow_at(10), driver)
    assert DriverProfile.objects.get(user=driver).available_since is None  # busy

    for action, status in [("depart", "en_route"), ("arrive", "arrived"), ("complete", "done")]:
        response = signed_in.post(act_url(trip, action), follow=True)
        trip.refresh_from_db()
        assert trip.status == status, action
        assert response.redirect_chain == [(PAGE, 302)]
        log = Transition.objects.filter(trip=trip).latest("id")
        assert (log.action, log.actor_id) == (action, driver.pk)
        assert_nothing_private(response.content.decode())

    html = response.content.decode()
    assert "Trip done: drop-off of Ana Cruz, 09:15." in html
    # Done: back in the queue, as the service decides.
    assert 'data-queue-position="1"' in html


def test_an_action_not_allowed_now_shows_the_state_machines_message(
    signed_in, driver, trip_for, tomorrow_at
):
    trip = trip_for(tomorrow_at(10), driver)

    response = signed_in.post(act_url(trip, "arrive"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Cannot arrive a trip that is assigned." in html
    card = html[html.index(f'id="trip-{trip.pk}"') :]
    assert card.index('role="alert"') < card.index("</li>")
    trip.refresh_from_db()
    assert trip.status == "assigned"


def test_another_drivers_trip_is_404_and_unchanged(signed_in, trip_for, tomorrow_at):
    theirs = trip_for(tomorrow_at(10), factories.driver())

    for action in ("depart", "arrive", "complete"):
        response = signed_in.post(act_url(theirs, action))
        assert response.status_code == 404
        assert b"Mabini" not in response.content

    theirs.refresh_from_db()
    assert theirs.status == "assigned"
    assert "Mabini" not in signed_in.get(PAGE).content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/driver/trips/abc/depart/",
        "/driver/trips/999999/depart/",
        "/driver/trips/99999999999999999999/depart/",
    ],
)
def test_unknown_or_malformed_ids_are_404(signed_in, path):
    assert signed_in.post(path).status_code == 404


def test_actions_a_driver_does_not_have_are_404(signed_in, driver, trip_for, tomorrow_at):
    trip = trip_for(tomorrow_at(10), driver)
    for action in ("cancel", "assign", "explode"):
        assert signed_in.post(act_url(trip, action)).status_code == 404
    trip.refresh_from_db()
    assert trip.status == "assigned"


def test_csrf_is_enforced(driver, trip_for, tomorrow_at):
    trip = trip_for(tomorrow_at(10), driver)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(driver)

    assert strict.post(act_url(trip, "depart")).status_code == 403
    assert strict.post("/driver/shift/", {"on_shift": "1"}).status_code == 403

    trip.refresh_from_db()
    assert trip.status == "assigned"
    assert not DriverProfile.objects.get(user=driver).on_shift


def test_actions_are_post_only(signed_in, driver, trip_for, tomorrow_at):
    trip = trip_for(tomorrow_at(10), driver)
    assert signed_in.get(act_url(trip, "depart")).status_code == 405
    assert signed_in.get("/driver/shift/").status_code == 405


def test_an_htmx_action_answers_with_both_regions_and_the_message(
    signed_in, driver, trip_for, tomorrow_at
):
    trip = trip_for(tomorrow_at(10), driver)

    response = signed_in.post(act_url(trip, "depart"), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="shift-board">')
    assert 'id="shift-status"' in html and 'id="trips"' in html
    assert 'hx-swap-oob="true"' in html and "On your way: drop-off of Ana Cruz" in html
    assert 'data-status="en_route"' in html
    assert_nothing_private(html)


# --- queries ----------------------------------------------------------------------------


def test_queries_do_not_grow_with_trips(
    signed_in, driver, trip_for, service, django_assert_max_num_queries
):
    set_shift(driver=driver, on_shift=True)
    set_shift(driver=factories.driver(), on_shift=True)
    # Done today (booked early this morning, for whatever hour the test runs at), three
    # hours apart: each holds the therapist from 45 minutes before to 2 hours after ...
    for hour in (9, 12, 15, 18):
        trip = trip_for(day_at(0, hour), driver, now=day_at(0, 6))
        for action in ("depart", "arrive", "complete"):
            act_on_trip(actor=driver, trip_id=trip.pk, action=action)
    # ... and twenty to come, each with a therapist of its own.
    for days in range(1, 5):
        for hour in (9, 11, 13, 15, 17):
            trip_for(day_at(days, hour), driver, therapist_=factories.therapist(service))

    # session, user, stream position, profile, busy trips (+ appointment, therapist),
    # done today (+ the same); queue position and length only when waiting.
    with django_assert_max_num_queries(6):
        html = signed_in.get(PAGE).content.decode()
    assert html.count('class="trip card') == 24
    assert "Done today" in html
    with django_assert_max_num_queries(4):
        signed_in.get("/driver/trips/")
    with django_assert_max_num_queries(5):
        signed_in.get("/driver/status/")
