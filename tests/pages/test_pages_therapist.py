"""The therapist's day (/therapist/): what it shows, to whom, and every button reaching its
service. Django test client on real PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from scheduling.limits import TEXT_MAX
from scheduling.models import Appointment, ServiceArea, Transition, Trip
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.trips import assign_trip
from tests import factories

pytestmark = pytest.mark.django_db

PAGE = "/therapist/"
REGION = "/therapist/appointments/"


@pytest.fixture
def book(desk, service, client_record):
    """Book `therapist` (the fixture's by default) at an aware start. With transport, some
    driver works then (Dan, all week, unless the test hired its own)."""

    def make(start: datetime, therapist=None, **fields) -> Appointment:
        if fields.get("needs_transport"):
            factories.ensure_driver()
        return create_appointment(
            actor=desk,
            client_id=fields.pop("client_id", client_record.pk),
            service_id=service.pk,
            therapist_id=(therapist.pk if therapist else fields.pop("therapist_id")),
            start=start,
            **fields,
        )

    return make


@pytest.fixture
def signed_in(client, therapist):
    client.force_login(therapist)
    return client


def day_at(days: int, hour: int, minute: int = 0) -> datetime:
    day = timezone.localdate() + timedelta(days=days)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def action_urls(html: str) -> set[str]:
    return set(re.findall(r'action="(/therapist/appointments/\d+/[\w-]+/)"', html))


def act_url(appointment: Appointment, action: str) -> str:
    return f"/therapist/appointments/{appointment.pk}/{action}/"


# --- who sees it ------------------------------------------------------------------------


def test_the_page_shows_the_therapists_own_appointments_in_business_time(
    signed_in, therapist, service, book, tomorrow_at
):
    mine = book(tomorrow_at(10), therapist, notes="Second floor, ring twice")
    other = factories.therapist(service)
    stranger = factories.ClientFactory(name="Zed Outsider", address="99 Elsewhere Rd")
    book(tomorrow_at(10), other, client_id=stranger.pk, notes="Other therapist's note")

    response = signed_in.get(PAGE)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Maria Santos" in html
    assert "Swedish massage" in html
    assert mine.address in html
    assert "Second floor, ring twice" in html
    # 10:00 in Manila is 02:00 UTC: the page speaks the business's clock.
    assert ">10:00</time>" in html and "11:00" in html
    assert "Zed Outsider" not in html and "Other therapist" not in html
    assert "99 Elsewhere Rd" not in html
    live = (
        "appointment.created appointment.updated appointment.removed trip.assigned trip.updated"
        " payment.updated"
    )
    assert f'data-live="{live}"' in html
    assert 'hx-get="/therapist/appointments/" hx-trigger="live[!typingIn(this)]"' in html
    assert "data-live-after=" in html


def test_each_card_says_when_to_leave_and_when_to_be_back(signed_in, therapist, book, tomorrow_at):
    makati = ServiceArea.objects.create(name="Makati", travel_minutes=30)
    near = book(tomorrow_at(10), therapist, area_id=makati.pk)
    default = book(tomorrow_at(14), therapist)

    html = signed_in.get(PAGE).content.decode()

    def card(appointment):
        found = html[html.index(f'id="appointment-{appointment.pk}"') :]
        return found[: found.index("</li>")]

    # From leaving base (the travel before the start) to being back (after the session,
    # its clean-up and the travel home), in the business's clock.
    leave, back = near.busy_from, near.busy_until
    assert (
        f'Leave by <time datetime="{timezone.localtime(leave).isoformat()}">09:30</time>'
        in card(near)
    )
    assert f'Back by <time datetime="{timezone.localtime(back).isoformat()}">11:45</time>' in card(
        near
    )
    assert "30 min travel each way" in card(near)
    assert ">13:15</time>" in card(default) and ">16:00</time>" in card(default)
    assert "45 min travel each way" in card(default)


def test_today_and_the_next_seven_days_only(signed_in, therapist, book):
    book(day_at(7, 10), therapist)
    beyond = book(day_at(8, 10), therapist)

    html = signed_in.get(PAGE).content.decode()

    assert html.count('class="appt card') == 1
    assert f'id="appointment-{beyond.pk}"' not in html


def test_an_empty_day_says_what_will_happen(signed_in):
    html = signed_in.get(PAGE).content.decode()
    assert "Nothing booked for you today yet" in html
    assert "0</strong> <span>waiting for your answer" in html


@pytest.mark.parametrize("role", ["receptionist", "manager", "driver"])
def test_other_roles_get_403(client, role):
    client.force_login(factories.UserFactory(role=role))
    assert client.get(PAGE).status_code == 403
    assert client.get(REGION).status_code == 403


def test_anonymous_is_sent_to_login(client, db):
    for path in (PAGE, REGION):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")
    assert client.post(act_url(Appointment(pk=1), "accept")).status_code == 302


def test_the_region_renders_alone_for_the_live_refresh(signed_in, therapist, book, tomorrow_at):
    book(tomorrow_at(10), therapist)
    response = signed_in.get(REGION, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="day"')
    assert "<html" not in html
    assert "Maria Santos" in html


# --- queries ----------------------------------------------------------------------------


@pytest.fixture
def busy_week(therapist, book):
    """Six appointments a day for a week, with transport, their legs with drivers. The
    clients live in a near area (5 minutes each way), so six fit in Ana's day."""
    near = ServiceArea.objects.create(name="Next door", travel_minutes=5)
    dropoff_driver = factories.driver()
    pickup_driver = factories.driver()
    booked = []
    for days in range(1, 8):
        for slot in range(6):
            start = day_at(days, 8, 15) + timedelta(minutes=90 * slot)
            client = factories.ClientFactory(notes=f"Client note {days}-{slot}")
            booked.append(
                book(start, therapist, client_id=client.pk, needs_transport=True, area_id=near.pk)
            )
    for appointment in booked:
        for trip in appointment.trips.all():
            driver = dropoff_driver if trip.leg == "dropoff" else pickup_driver
            assign_trip(trip_id=trip.pk, driver_id=driver.pk)
    return booked


def test_page_and_region_queries_do_not_grow_with_rows(
    signed_in, busy_week, django_assert_max_num_queries
):
    # session, user, stream position, appointments (+ client, service), their trips
    # (+ driver), the cash held to hand over: the same for 1 or 42 rows.
    with django_assert_max_num_queries(6):
        response = signed_in.get(PAGE)
    assert response.content.decode().count('class="appt card') == 42
    with django_assert_max_num_queries(5):
        region = signed_in.get(REGION)
    assert region.content.decode().count("assigned</span>") == 84


# --- buttons: what the state machine allows, and each reaching its service -------------


def test_buttons_follow_the_state_machine(signed_in, therapist, book, tomorrow_at):
    # Three hours apart: each holds Ana from 45 minutes before to 2 hours after its start.
    pending = book(tomorrow_at(9), therapist, needs_transport=True)
    confirmed = book(tomorrow_at(12), therapist, needs_transport=True)
    in_progress = book(tomorrow_at(15), therapist)
    completed = book(tomorrow_at(18), therapist)
    for appointment, actions in [
        (confirmed, ["accept"]),
        (in_progress, ["accept", "start"]),
        (completed, ["accept", "start", "complete"]),
    ]:
        for action in actions:
            act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=action)

    urls = action_urls(signed_in.get(PAGE).content.decode())

    assert urls == {
        act_url(pending, "accept"),
        act_url(pending, "reject"),
        act_url(confirmed, "start"),
        act_url(confirmed, "no_show"),
        act_url(confirmed, "request-pickup"),  # confirmed, with transport
        act_url(in_progress, "complete"),  # no transport: no pickup to ask for
        act_url(in_progress, "collect"),  # started: money can be recorded
        act_url(completed, "collect"),
    }


@pytest.mark.parametrize(
    ("before", "action", "after"),
    [
        ([], "accept", "confirmed"),
        (["accept"], "start", "in_progress"),
        (["accept", "start"], "complete", "completed"),
        (["accept"], "no_show", "no_show"),
    ],
)
def test_each_action_reaches_the_service(
    signed_in, therapist, book, tomorrow_at, before, action, after
):
    appointment = book(tomorrow_at(10), therapist)
    for step in before:
        act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=step)

    response = signed_in.post(act_url(appointment, action), follow=True)

    appointment.refresh_from_db()
    assert appointment.status == after
    assert response.redirect_chain == [(PAGE, 302)]
    assert "Maria Santos, " in response.content.decode()  # the success message
    log = Transition.objects.filter(appointment=appointment).latest("id")
    assert (log.action, log.actor_id) == (action, therapist.pk)


def test_reject_needs_a_reason_and_records_it(signed_in, therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist, needs_transport=True)
    field = f"a{appointment.pk}-reason"

    refused = signed_in.post(act_url(appointment, "reject"), {field: "   "})

    assert refused.status_code == 200
    assert "Say why you cannot take it." in refused.content.decode()
    assert '<details class="more" open>' in refused.content.decode()
    appointment.refresh_from_db()
    assert appointment.status == "pending"

    signed_in.post(act_url(appointment, "reject"), {field: "Car broke down"})

    appointment.refresh_from_db()
    assert appointment.status == "rejected"
    log = Transition.objects.get(appointment=appointment, action="reject")
    assert log.reason == "Car broke down"
    # The service's own cascade: transport is not needed any more.
    assert set(appointment.trips.values_list("status", flat=True)) == {"cancelled"}


def test_a_huge_reason_is_a_message_not_an_error(signed_in, therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist)
    response = signed_in.post(
        act_url(appointment, "reject"), {f"a{appointment.pk}-reason": "x" * 100_000}
    )
    assert response.status_code == 200
    assert f"at most {TEXT_MAX} characters" in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.status == "pending"


def test_request_pickup_through_the_page(signed_in, therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist, needs_transport=True)
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="accept")

    response = signed_in.post(act_url(appointment, "request-pickup"), follow=True)

    pickup = appointment.trips.get(leg="pickup")
    assert pickup.requested_at is not None
    html = response.content.decode()
    assert "Pickup requested" in html
    # Asked once: the button is gone, the state says so.
    assert act_url(appointment, "request-pickup") not in action_urls(html)
    assert "Requested, finding a driver" in html


def test_a_refused_pickup_shows_the_services_words(signed_in, therapist, book, tomorrow_at):
    walk_in = book(tomorrow_at(10), therapist)
    act_on_appointment(actor=therapist, appointment_id=walk_in.pk, action="accept")

    response = signed_in.post(act_url(walk_in, "request-pickup"))

    assert response.status_code == 200
    assert "This appointment has no transport." in response.content.decode()


def test_an_action_not_allowed_now_shows_the_state_machines_message(
    signed_in, therapist, book, tomorrow_at
):
    appointment = book(tomorrow_at(10), therapist)

    response = signed_in.post(act_url(appointment, "complete"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Cannot complete an appointment that is pending." in html
    # On the appointment's own card, as an alert.
    card = html[html.index(f'id="appointment-{appointment.pk}"') :]
    assert card.index('role="alert"') < card.index("</li>")
    appointment.refresh_from_db()
    assert appointment.status == "pending"


def test_acting_on_another_therapists_appointment_is_404_and_changes_nothing(
    signed_in, service, book, tomorrow_at
):
    theirs = book(tomorrow_at(10), factories.therapist(service), needs_transport=True)

    for action in ("accept", "reject", "request-pickup"):
        response = signed_in.post(act_url(theirs, action), {f"a{theirs.pk}-reason": "mine now"})
        assert response.status_code == 404, action
        assert b"Maria Santos" not in response.content

    theirs.refresh_from_db()
    assert theirs.status == "pending"
    assert not Transition.objects.filter(appointment=theirs).exclude(action="create").exists()
    assert not Trip.objects.filter(requested_at__isnull=False).exists()


@pytest.mark.parametrize(
    "path",
    [
        "/therapist/appointments/abc/accept/",
        "/therapist/appointments/999999/accept/",
        "/therapist/appointments/999999/request-pickup/",
        "/therapist/appointments/-1/accept/",
        "/therapist/appointments/99999999999999999999/accept/",
    ],
)
def test_unknown_or_malformed_ids_are_404(signed_in, path):
    assert signed_in.post(path).status_code == 404


def test_an_unknown_action_is_404(signed_in, therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist)
    for action in ("cancel", "expire", "reschedule", "delete"):
        assert signed_in.post(act_url(appointment, action)).status_code == 404
    appointment.refresh_from_db()
    assert appointment.status == "pending"


def test_actions_are_post_only(signed_in, therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist)
    assert signed_in.get(act_url(appointment, "accept")).status_code == 405
    appointment.refresh_from_db()
    assert appointment.status == "pending"


def test_csrf_is_enforced(therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(therapist)

    assert strict.post(act_url(appointment, "accept")).status_code == 403

    appointment.refresh_from_db()
    assert appointment.status == "pending"
    # The page's own token gets through.
    page = strict.get(PAGE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    strict.post(act_url(appointment, "accept"), {"csrfmiddlewaretoken": token})
    appointment.refresh_from_db()
    assert appointment.status == "confirmed"


def test_an_htmx_action_answers_with_the_region_and_the_message(
    signed_in, therapist, book, tomorrow_at
):
    appointment = book(tomorrow_at(10), therapist)

    response = signed_in.post(act_url(appointment, "accept"), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="day"')
    assert 'id="messages" class="messages" hx-swap-oob="true"' in html
    assert "Accepted: Maria Santos" in html
    assert 'data-status="confirmed"' in html


def test_a_pending_card_counts_down_to_its_deadline(signed_in, therapist, book, tomorrow_at):
    appointment = book(tomorrow_at(10), therapist)
    html = signed_in.get(PAGE).content.decode()
    deadline = timezone.localtime(appointment.response_deadline)
    assert f'<time data-countdown datetime="{deadline.isoformat()}">' in html
    assert f"Answer by {deadline:%H:%M}" in html
