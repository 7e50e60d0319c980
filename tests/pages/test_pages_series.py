"""Standing bookings on the pages: the booking form's Repeat preview and booking, the
appointment page's "weekly, 3 of 8", the therapist's page (issue 14)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling.models import Appointment, Series
from scheduling.services.series import Repeat, book_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk_client(client, desk):
    client.force_login(desk)
    return client


def form(client_record, service, therapist, when, /, **changes) -> dict:
    data = {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "date": timezone.localtime(when).date().isoformat(),
        "start": timezone.localtime(when).isoformat(),
        "address": "",
        "notes": "",
        "every_weeks": "1",
        "count": "4",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_form_offers_repeat(desk_client):
    page = desk_client.get("/desk/appointments/new/").content.decode()
    assert 'name="every_weeks"' in page and 'name="count"' in page and 'name="until"' in page
    assert 'id="repeat-preview"' in page


def test_the_preview_lists_every_date_and_the_clash(
    desk_client, book, client_record, service, therapist, tomorrow_at
):
    book(tomorrow_at(10) + timedelta(weeks=2))
    before = Appointment.objects.count()
    response = desk_client.get(
        "/desk/appointments/new/repeat/", form(client_record, service, therapist, tomorrow_at(10))
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("<li") == 4 and "1 clash" in page and page.count("Clashes") == 1
    assert Appointment.objects.count() == before and not Series.objects.exists()


def test_the_preview_asks_for_what_is_missing(desk_client, client_record, service, therapist):
    page = desk_client.get("/desk/appointments/new/repeat/", {"every_weeks": "2"}).content.decode()
    assert "Choose the client, the service and a start time first." in page


@pytest.mark.parametrize(
    "changes",
    [
        {"every_weeks": "3"},
        {"every_weeks": "x" * 5000},
        {"count": "-1"},
        {"count": "99999999999999999999"},
        {"count": "1"},
        {"until": "10000-01-01"},
        {"until": "garbage"},
        {"count": None, "until": None},
        {"count": "3", "until": "2030-01-01"},
        {"start": "nonsense"},
        {"client": "999999999"},
        {"therapist": "9223372036854775807"},
    ],
)
def test_ugly_repeat_input_is_never_a_5xx(
    desk_client, client_record, service, therapist, tomorrow_at, changes
):
    data = form(client_record, service, therapist, tomorrow_at(10), **changes)
    preview = desk_client.get("/desk/appointments/new/repeat/", data)
    assert preview.status_code == 200
    posted = desk_client.post("/desk/appointments/new/", data)
    assert posted.status_code == 200  # the form again, saying what is wrong
    assert not Appointment.objects.exists() and not Series.objects.exists()


def test_booking_a_series_from_the_form(
    desk_client, client_record, service, therapist, tomorrow_at
):
    response = desk_client.post(
        "/desk/appointments/new/", form(client_record, service, therapist, tomorrow_at(10))
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    series = Series.objects.get()
    first = Appointment.objects.filter(series=series).order_by("start").first()
    assert response.url == f"/desk/appointments/{first.pk}/"
    assert Appointment.objects.filter(series=series).count() == 4


def test_a_clash_books_nothing_and_shows_the_dates(
    desk_client, book, client_record, service, therapist, tomorrow_at
):
    book(tomorrow_at(10) + timedelta(weeks=3))
    response = desk_client.post(
        "/desk/appointments/new/", form(client_record, service, therapist, tomorrow_at(10))
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing was booked" in page and page.count("Clashes") == 1
    assert not Series.objects.exists() and Appointment.objects.count() == 1


def test_skip_books_the_free_dates(
    desk_client, book, client_record, service, therapist, tomorrow_at
):
    book(tomorrow_at(10) + timedelta(weeks=3))
    data = form(client_record, service, therapist, tomorrow_at(10), skip_conflicts="on")
    response = desk_client.post("/desk/appointments/new/", data, follow=True)
    assert "and 2 more dates (1 left out: they clash)" in response.content.decode()
    assert Appointment.objects.filter(series__isnull=False).count() == 3


@pytest.fixture
def series(desk, client_record, service, therapist, tomorrow_at):
    return book_series(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(10),
        repeat=Repeat(every_weeks=1, count=8),
    )


def test_the_appointment_page_shows_its_place_and_the_others(desk_client, series):
    third = series.appointments[2]
    page = desk_client.get(f"/desk/appointments/{third.pk}/").content.decode()
    assert "weekly, 3 of 8" in page
    for other in series.appointments:
        if other.pk != third.pk:
            assert f'href="/desk/appointments/{other.pk}/"' in page
    assert "answers this one too" in page  # no deadline of its own


def test_the_therapist_page_shows_weekly_3_of_8(client, therapist, series, time_machine):
    time_machine.move_to(series.appointments[2].start - timedelta(days=1), tick=False)
    client.force_login(therapist)
    page = client.get("/therapist/").content.decode()
    assert 'Standing booking: <span class="series-label">weekly, 3 of 8</span>' in page


def test_the_queues_list_the_series_first_occurrence_first(desk_client, series):
    page = desk_client.get("/desk/queues/").content.decode()
    assert page.count("answered with its series") >= 1
    first = series.appointments[0]
    assert page.index(f'href="/desk/appointments/{first.pk}/"') < page.index(
        "answered with its series"
    )


def test_the_desk_cancels_this_and_the_later_dates(desk_client, series):
    third = series.appointments[2]
    page = desk_client.get(f"/desk/appointments/{third.pk}/").content.decode()
    assert "Which dates of the standing booking" in page
    response = desk_client.post(
        f"/desk/appointments/{third.pk}/cancel/",
        {"cancel-reason": "Moving abroad", "cancel-scope": "following"},
        follow=True,
    )
    assert "Cancelled 6 dates" in response.content.decode()
    statuses = list(
        Appointment.objects.filter(series=series.series)
        .order_by("start")
        .values_list("status", flat=True)
    )
    assert statuses == ["pending"] * 2 + ["cancelled"] * 6


@pytest.mark.parametrize("scope", ["some", "x" * 3000, ""])
def test_a_bad_cancel_scope_is_said_on_the_form(desk_client, series, scope):
    first = series.appointments[0]
    response = desk_client.post(
        f"/desk/appointments/{first.pk}/cancel/",
        {"cancel-reason": "No", "cancel-scope": scope},
    )
    assert response.status_code in (200, 302)
    cancelled = Appointment.objects.filter(status="cancelled").count()
    assert cancelled == (1 if scope == "" else 0)


def test_a_single_booking_has_no_scope_choice(desk_client, book, tomorrow_at):
    single = book(tomorrow_at(9))
    page = desk_client.get(f"/desk/appointments/{single.pk}/").content.decode()
    assert "Which dates of the standing booking" not in page


def test_the_desk_moves_every_date_an_hour_later(desk_client, series, tomorrow_at):
    second = series.appointments[1]
    new = second.start + timedelta(hours=1)
    response = desk_client.post(
        f"/desk/appointments/{second.pk}/reschedule/",
        {
            "reschedule-date": timezone.localtime(new).date().isoformat(),
            "reschedule-start": timezone.localtime(new).isoformat(),
            "reschedule-scope": "all",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    starts = list(
        Appointment.objects.filter(series=series.series)
        .order_by("start")
        .values_list("start", flat=True)
    )
    assert starts == [tomorrow_at(11) + timedelta(weeks=w) for w in range(8)]


def test_a_move_that_clashes_once_moves_nothing_and_says_which(
    desk_client, series, book, tomorrow_at
):
    book(tomorrow_at(13) + timedelta(weeks=5))
    second = series.appointments[1]
    new = second.start + timedelta(hours=1)
    response = desk_client.post(
        f"/desk/appointments/{second.pk}/reschedule/",
        {
            "reschedule-date": timezone.localtime(new).date().isoformat(),
            "reschedule-start": timezone.localtime(new).isoformat(),
            "reschedule-scope": "following",
        },
    )
    assert response.status_code == 200
    assert "Nothing was moved" in response.content.decode()
    zone = timezone.get_current_timezone()
    hours = {
        a.start.astimezone(zone).hour for a in Appointment.objects.filter(series=series.series)
    }
    assert hours == {10}
