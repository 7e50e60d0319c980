"""Couples and group visits on the pages (issue 14): the booking form's "Add a therapist"
rows booked through book_visit (each refusal beside its session, nothing written), the
board's linked blocks, the appointment page's visit card and "Cancel the whole visit",
the therapist's partner names, and the query budgets of those pages per session.
Django test client on real PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Notification,
    Transition,
    Trip,
    Visit,
)
from scheduling.services.appointments import create_appointment
from scheduling.services.visits import SessionAsk, book_visit
from tests import factories

pytestmark = pytest.mark.django_db

NEW = "/desk/appointments/new/"


@pytest.fixture
def desk_client(client, desk):
    client.force_login(desk)
    return client


@pytest.fixture
def ben(service):
    return factories.therapist(service, username="ben", first_name="Ben", last_name="Reyes")


@pytest.fixture
def cara(service):
    return factories.therapist(service, username="cara", first_name="Cara", last_name="Lim")


@pytest.fixture
def car(db):
    """A car with four seats, working all week: a visit's therapists ride together."""
    return factories.driver(
        vehicle="car", seats=4, username="dan", first_name="Dan", last_name="Uy"
    )


def form(client_record, service, first, when, /, *others, **changes) -> dict:
    """The booking form as posted: the first session (service, therapist) and the others
    as (service, therapist or None) rows."""
    data = {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": first.pk if first else "",
        "date": timezone.localtime(when).date().isoformat(),
        "start": timezone.localtime(when).isoformat(),
        "address": "12 Acacia St",
        "notes": "",
    }
    for number, (row_service, row_therapist) in enumerate(others, start=2):
        data[f"session-{number}-service"] = row_service.pk if row_service else ""
        data[f"session-{number}-therapist"] = row_therapist.pk if row_therapist else ""
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def written() -> tuple[int, ...]:
    """Rows of every table a booking writes."""
    return (
        Appointment.objects.count(),
        Visit.objects.count(),
        Trip.objects.count(),
        Transition.objects.count(),
        Notification.objects.count(),
    )


def couples(desk, client_record, service, start, *therapists, needs_transport=False) -> Visit:
    return book_visit(
        actor=desk,
        client_id=client_record.pk,
        start=start,
        sessions=[SessionAsk(service_id=service.pk, therapist_id=t.pk) for t in therapists],
        needs_transport=needs_transport,
        address="12 Acacia St",
    )


def queries_of(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured.captured_queries), response.content.decode()


# --- the form: rows -----------------------------------------------------------------------


def test_the_form_offers_add_a_therapist(desk_client):
    page = desk_client.get(NEW).content.decode()
    assert 'name="add_session"' in page and "Add a therapist" in page
    assert 'name="session-2-service"' not in page


def test_add_a_therapist_draws_a_row_keeping_what_was_chosen_and_books_nothing(
    desk_client, client_record, service, therapist, tomorrow_at
):
    before = written()
    data = form(client_record, service, therapist, tomorrow_at(10), add_session="1")
    response = desk_client.post(NEW, data)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="session-2-service"' in page and 'name="session-2-therapist"' in page
    assert "Any free therapist" in page and "Couples visit" in page
    assert f'value="{client_record.pk}" form="appointment-form"' in page  # still chosen
    assert "Not booked yet" not in page  # a redraw, not a refusal
    assert "Book the couples visit" in page
    assert written() == before

    # Up to four sessions: at the fourth, no more "Add a therapist".
    data = form(
        client_record,
        service,
        therapist,
        tomorrow_at(10),
        (service, None),
        (service, None),
        add_session="1",
    )
    page = desk_client.post(NEW, data).content.decode()
    assert 'name="session-4-service"' in page and 'name="add_session"' not in page
    assert "Group visit of 4" in page


def test_remove_takes_the_row_out_and_renumbers(
    desk_client, client_record, service, therapist, ben, cara, tomorrow_at
):
    data = form(
        client_record,
        service,
        therapist,
        tomorrow_at(10),
        (service, ben),
        (service, cara),
        remove_session="2",
    )
    page = desk_client.post(NEW, data).content.decode()
    assert 'name="session-3-service"' not in page
    # Cara's row is now session 2, still hers.
    row = page.split('id="session-2"')[1].split("</li>")[0]
    assert f'<option value="{cara.pk}" selected>' in row


# --- the form: booking ----------------------------------------------------------------------


def test_the_form_books_a_couples_visit(
    desk_client, client_record, service, therapist, ben, tomorrow_at
):
    start = tomorrow_at(10)
    response = desk_client.post(
        NEW, form(client_record, service, therapist, start, (service, ben)), follow=True
    )
    assert response.redirect_chain, response.content.decode()[:3000]
    visit = Visit.objects.get()
    sessions = list(visit.sessions.order_by("id"))
    assert [s.therapist for s in sessions] == [therapist, ben]
    assert {s.start for s in sessions} == {start}
    assert all(s.status == AppointmentStatus.PENDING for s in sessions)
    page = response.content.decode()
    assert "Booked a couples visit for Maria Santos with Ana Cruz and Ben Reyes" in page
    assert response.redirect_chain[-1][0] == f"/desk/appointments/{sessions[0].pk}/"


def test_any_free_therapist_is_never_the_same_one_twice(
    desk_client, client_record, service, therapist, ben, tomorrow_at
):
    response = desk_client.post(
        NEW, form(client_record, service, therapist, tomorrow_at(10), (service, None))
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert sorted(a.therapist_id for a in Visit.objects.get().sessions.all()) == sorted(
        [therapist.pk, ben.pk]
    )


def test_a_couples_visit_with_transport_shares_one_car(
    desk_client, client_record, service, therapist, ben, car, tomorrow_at
):
    data = form(client_record, service, therapist, tomorrow_at(10), (service, ben))
    response = desk_client.post(NEW, {**data, "needs_transport": "on"})
    assert response.status_code == 302, response.content.decode()[:3000]
    visit = Visit.objects.get()
    trips = list(visit.trips.order_by("window_start"))
    assert [t.leg for t in trips] == ["dropoff", "pickup"]
    assert all(t.passengers == 2 for t in trips)


def book_another_client(desk, service, therapist, start) -> None:
    """Another client's booking that holds `therapist` at `start`."""
    other = factories.ClientFactory(name="Jose Rizal")
    create_appointment(
        actor=desk,
        client_id=other.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
    )


def test_a_busy_partner_is_refused_beside_their_session_and_nothing_is_written(
    desk_client, desk, client_record, service, therapist, ben, tomorrow_at
):
    book_another_client(desk, service, ben, tomorrow_at(10))
    before = written()
    response = desk_client.post(
        NEW, form(client_record, service, therapist, tomorrow_at(10), (service, ben))
    )
    assert response.status_code == 409
    page = response.content.decode()
    row = page.split('id="session-2"')[1].split("</li>")[0]
    assert 'id="session-2-refusal"' in row and "Session 2:" in row
    assert "Nothing was booked" in page
    assert 'id="session-1-refusal"' not in page  # Ana could go
    assert f'<option value="{ben.pk}" selected>' in row  # the form is kept
    assert written() == before


def test_a_busy_first_therapist_is_refused_beside_the_first_session(
    desk_client, desk, client_record, service, therapist, ben, tomorrow_at
):
    book_another_client(desk, service, therapist, tomorrow_at(10))
    before = written()
    response = desk_client.post(
        NEW, form(client_record, service, therapist, tomorrow_at(10), (service, ben))
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert 'id="session-1-refusal"' in page and "Session 1" in page
    assert 'id="session-2-refusal"' not in page
    assert written() == before


def test_no_car_with_enough_seats_is_refused_and_nothing_is_written(
    desk_client, client_record, service, therapist, ben, tomorrow_at
):
    factories.driver(vehicle="motorcycle", seats=1, username="moto")
    before = written()
    data = form(client_record, service, therapist, tomorrow_at(10), (service, ben))
    response = desk_client.post(NEW, {**data, "needs_transport": "on"})
    assert response.status_code == 409, response.content.decode()[:2000]
    assert "Not booked yet" in response.content.decode()
    assert written() == before


def test_a_visit_does_not_repeat(desk_client, client_record, service, therapist, ben, tomorrow_at):
    before = written()
    data = form(client_record, service, therapist, tomorrow_at(10), (service, ben), every_weeks="1")
    response = desk_client.post(NEW, {**data, "count": "4"})
    assert response.status_code == 400
    assert "booked for one date" in response.content.decode()
    assert written() == before


@pytest.mark.parametrize(
    "rows",
    [
        "fifth session",
        "same therapist twice",
        "unknown service",
        "unknown therapist",
        "garbage service",
        "empty service",
        "negative therapist",
        "huge therapist",
        "many rows",
    ],
)
def test_ugly_sessions_are_a_400_with_the_form_never_a_500_and_nothing_written(
    desk_client, client_record, service, therapist, ben, cara, tomorrow_at, rows
):
    dee = factories.therapist(service, username="dee", first_name="Dee")
    eve = factories.therapist(service, username="eve", first_name="Eve")
    start = tomorrow_at(10)
    base = form(client_record, service, therapist, start)
    extra = {
        "fifth session": {
            f"session-{n}-{what}": (service.pk if what == "service" else t.pk)
            for n, t in zip(range(2, 6), [ben, cara, dee, eve], strict=True)
            for what in ("service", "therapist")
        },
        "same therapist twice": {
            "session-2-service": service.pk,
            "session-2-therapist": therapist.pk,
        },
        "unknown service": {"session-2-service": "999999", "session-2-therapist": ben.pk},
        "unknown therapist": {"session-2-service": service.pk, "session-2-therapist": "999999"},
        "garbage service": {"session-2-service": "x" * 5000, "session-2-therapist": ""},
        "empty service": {"session-2-service": "", "session-2-therapist": ben.pk},
        "negative therapist": {"session-2-service": service.pk, "session-2-therapist": "-3"},
        "huge therapist": {
            "session-2-service": service.pk,
            "session-2-therapist": "99999999999999999999999",
        },
        "many rows": {f"session-{n}-service": service.pk for n in range(2, 40)},
    }[rows]
    before = written()
    response = desk_client.post(NEW, {**base, **extra})
    assert response.status_code in (400, 409), (rows, response.status_code)
    page = response.content.decode()
    assert "Not booked yet" in page and 'id="appointment-form"' in page
    assert written() == before


def test_a_visit_with_a_bad_start_is_a_400(
    desk_client, client_record, service, therapist, ben, tomorrow_at
):
    data = form(client_record, service, therapist, tomorrow_at(10), (service, ben))
    for start in ("nonsense", "10000-01-01T10:00:00+08:00", ""):
        response = desk_client.post(NEW, {**data, "start": start})
        assert response.status_code == 400, start
    assert not Visit.objects.exists() and not Appointment.objects.exists()


# --- the board ------------------------------------------------------------------------------


def test_the_board_links_a_visits_sessions(
    desk_client, desk, client_record, service, therapist, ben, tomorrow_at
):
    visit = couples(desk, client_record, service, tomorrow_at(10), therapist, ben)
    ana_s, ben_s = visit.sessions.order_by("id")
    day = tomorrow_at(10).date().isoformat()
    page = desk_client.get(f"/desk/?date={day}").content.decode()
    for mine, partner in ((ana_s, "Ben Reyes"), (ben_s, "Ana Cruz")):
        block = page.split(f'id="block-{mine.pk}"')[1].split("</a>")[0]
        assert f'data-visit="{visit.pk}"' in block
        assert f"Couples visit #{visit.pk}" in block and f"with {partner}" in block


def test_board_queries_do_not_grow_with_visits_or_sessions(
    desk_client, desk, service, therapist, ben, cara, tomorrow_at
):
    dee = factories.therapist(service, username="dee", first_name="Dee")
    day = tomorrow_at(10).date().isoformat()
    couples(desk, factories.ClientFactory(), service, tomorrow_at(9), therapist, ben)
    few, _ = queries_of(desk_client, f"/desk/?date={day}")
    couples(desk, factories.ClientFactory(), service, tomorrow_at(12), therapist, ben, cara, dee)
    couples(desk, factories.ClientFactory(), service, tomorrow_at(15), cara, dee)
    many, page = queries_of(desk_client, f"/desk/?date={day}")
    assert many == few
    assert page.count('class="tl-visit">Group visit of 4') == 4
    assert page.count('class="tl-visit">Couples visit #') == 4


# --- the appointment page -------------------------------------------------------------------


def test_the_appointment_page_shows_the_visit_and_its_shared_trips(
    desk_client, desk, client_record, service, therapist, ben, car, tomorrow_at
):
    visit = couples(
        desk, client_record, service, tomorrow_at(10), therapist, ben, needs_transport=True
    )
    ana_s, ben_s = visit.sessions.order_by("id")
    page = desk_client.get(f"/desk/appointments/{ben_s.pk}/").content.decode()
    card = page.split('id="visit"')[1].split("</section>")[0]
    assert f'Couples visit <span class="muted">#{visit.pk}' in card
    assert f'href="/desk/appointments/{ana_s.pk}/"' in card  # the other session, linked
    assert "(this one)" in card
    assert card.count("<tr>") == 1 + 2  # the head, drop-off and pick-up
    assert "2: Ana Cruz, Ben Reyes" in card
    assert "Cancel the whole visit" in card


def test_appointment_page_queries_do_not_grow_with_sessions(
    desk_client, desk, service, therapist, ben, cara, tomorrow_at
):
    dee = factories.therapist(service, username="dee", first_name="Dee")
    two = couples(desk, factories.ClientFactory(), service, tomorrow_at(9), therapist, ben)
    four = couples(
        desk, factories.ClientFactory(), service, tomorrow_at(13), therapist, ben, cara, dee
    )
    few, _ = queries_of(desk_client, f"/desk/appointments/{two.sessions.first().pk}/")
    many, page = queries_of(desk_client, f"/desk/appointments/{four.sessions.first().pk}/")
    assert many == few
    assert "Group visit of 4" in page


def test_cancel_the_whole_visit_asks_to_confirm_then_cancels_every_session(
    desk_client, desk, client_record, service, therapist, ben, car, tomorrow_at
):
    visit = couples(
        desk, client_record, service, tomorrow_at(10), therapist, ben, needs_transport=True
    )
    _ana_s, ben_s = visit.sessions.order_by("id")
    url = f"/desk/visits/{visit.pk}/cancel/?from={ben_s.pk}"
    refused = desk_client.post(url, {"visit-reason": "Client is ill"})
    assert refused.status_code == 400
    assert "Tick the box" in refused.content.decode()
    assert not visit.sessions.filter(status=AppointmentStatus.CANCELLED).exists()
    assert desk_client.post(url, {"visit-confirm": "on"}).status_code == 400  # no reason

    response = desk_client.post(url, {"visit-reason": "Client is ill", "visit-confirm": "on"})
    assert response.status_code == 302
    assert response.url == f"/desk/appointments/{ben_s.pk}/"
    assert set(visit.sessions.values_list("status", flat=True)) == {AppointmentStatus.CANCELLED}
    assert set(visit.trips.values_list("status", flat=True)) == {"cancelled"}
    page = desk_client.get(response.url).content.decode()
    assert "Cancelled the whole visit" in page
    assert 'id="cancel-visit-form"' not in page  # nothing left to cancel


def test_cancel_visit_garbage_is_never_a_500(
    desk_client, desk, client_record, service, therapist, ben, tomorrow_at
):
    visit = couples(desk, client_record, service, tomorrow_at(10), therapist, ben)
    for url in (
        f"/desk/visits/{visit.pk}/cancel/?from=x",
        f"/desk/visits/{visit.pk}/cancel/?from=99999999999999999999",
        f"/desk/visits/{visit.pk}/cancel/?from=-1",
    ):
        response = desk_client.post(url, {"visit-reason": "x" * 5000, "visit-confirm": "on"})
        assert response.status_code == 400, url
    assert desk_client.post("/desk/visits/999999/cancel/", {}).status_code == 404
    assert desk_client.get(f"/desk/visits/{visit.pk}/cancel/").status_code == 405
    assert not visit.sessions.filter(status=AppointmentStatus.CANCELLED).exists()


def test_only_the_desk_cancels_a_visit(
    client, desk, client_record, service, therapist, ben, tomorrow_at
):
    visit = couples(desk, client_record, service, tomorrow_at(10), therapist, ben)
    client.force_login(therapist)
    response = client.post(
        f"/desk/visits/{visit.pk}/cancel/", {"visit-reason": "x", "visit-confirm": "on"}
    )
    assert response.status_code == 403
    assert not visit.sessions.filter(status=AppointmentStatus.CANCELLED).exists()


# --- the therapist's page -------------------------------------------------------------------


def test_the_therapist_page_names_the_partner(
    desk, client_record, service, therapist, ben, car, tomorrow_at
):
    visit = couples(
        desk, client_record, service, tomorrow_at(10), therapist, ben, needs_transport=True
    )
    ana_s, ben_s = visit.sessions.order_by("id")
    for me, mine, partner in ((therapist, ana_s, "Ben Reyes"), (ben, ben_s, "Ana Cruz")):
        browser = Client()
        browser.force_login(me)
        page = browser.get("/therapist/").content.decode()
        card = page.split(f'id="appointment-{mine.pk}"')[1].split('<li class="appt card')[0]
        assert f"Couples session with {partner}" in card
        # The shared trips carry every therapist: each card shows both legs.
        assert "Drop-off" in card and "Pickup" in card


def test_therapist_page_queries_do_not_grow_with_sessions(
    desk, service, therapist, ben, cara, tomorrow_at
):
    dee = factories.therapist(service, username="dee", first_name="Dee")
    browser = Client()
    browser.force_login(therapist)
    couples(desk, factories.ClientFactory(), service, tomorrow_at(9), therapist, ben)
    few, _ = queries_of(browser, "/therapist/")
    couples(desk, factories.ClientFactory(), service, tomorrow_at(12), therapist, ben, cara, dee)
    couples(desk, factories.ClientFactory(), service, tomorrow_at(15), therapist, cara)
    many, page = queries_of(browser, "/therapist/")
    assert many == few
    assert "Group session of 4 with Ben Reyes, Cara Lim and Dee" in page
    assert "Couples session with Cara Lim" in page
