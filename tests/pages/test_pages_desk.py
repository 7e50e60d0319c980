"""The receptionist's desk, through the Django test client on real PostgreSQL: every page
and fragment, its role gate, its query count, and the writes it makes through the
services (booking, reschedule, cancel, no-show, retry) with the ugly inputs too."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from html import unescape

import pytest
import time_machine
from django.db import connection
from django.test import Client as DjangoClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.models import (
    Appointment,
    Break,
    Client,
    DispatchDecision,
    DispatchOutcome,
    DriverProfile,
    Notification,
    ServiceArea,
    TimeOff,
    Transition,
    Trip,
)
from scheduling.services import dispatch
from scheduling.services.appointments import act_on_appointment, create_appointment
from tests import factories

pytestmark = pytest.mark.postgres


def tomorrow() -> date:
    return timezone.localdate() + timedelta(days=1)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def book(desk, client_record, service, therapist, start, **extra) -> Appointment:
    """Book through the service. With transport, some driver works then (Dan, all week,
    unless the test hired its own): capacity is checked at booking."""
    if extra.get("needs_transport"):
        factories.ensure_driver()
    return create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
        **extra,
    )


def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def desk_client(client, desk):
    return signed_in(client, desk)


def crowd(day: date, therapists: list, service, per_therapist: int, desk) -> list[Appointment]:
    """`per_therapist` appointments for each therapist on `day`, written directly (the
    page's reads are under test here, not booking), half of them with trips."""
    clients = [factories.ClientFactory() for _ in range(per_therapist)]
    rows = []
    statuses = ["pending", "confirmed", "in_progress", "completed", "cancelled"]
    for therapist in therapists:
        for i in range(per_therapist):
            start = local(day, 8) + timedelta(minutes=75 * i)
            rows.append(
                Appointment(
                    client=clients[i],
                    service=service,
                    therapist=therapist,
                    start=start,
                    end=start + timedelta(minutes=60),
                    blocked_until=start + timedelta(minutes=75),
                    busy_from=start,
                    busy_until=start + timedelta(minutes=75),
                    status=statuses[i % len(statuses)],
                    address="12 Acacia St",
                    needs_transport=i % 2 == 0,
                    price=Decimal("900.00"),
                    response_deadline=start,
                    created_by=desk,
                )
            )
    appointments = Appointment.objects.bulk_create(rows)
    driver = factories.driver()
    Trip.objects.bulk_create(
        Trip(
            appointment=a,
            leg=leg,
            window_start=a.start - timedelta(minutes=45) if leg == "dropoff" else a.end,
            window_end=a.start if leg == "dropoff" else a.end + timedelta(minutes=45),
            status="done" if leg == "dropoff" else "queued",
            driver=driver if leg == "dropoff" else None,
        )
        for a in appointments
        if a.needs_transport
        for leg in ("dropoff", "pickup")
    )
    return appointments


def around_the_clock_driver(**fields):
    """A driver who works all day every day (00:00-23:59), for bookings made for soon."""
    user = factories.UserFactory(role="driver", **fields)
    DriverProfile.objects.create(user=user, vehicle="motorcycle", seats=1)
    factories.add_hours(user, time(0), time(23, 59))
    return user


def soon_with_travel(service, travel: int = 45) -> datetime:
    """A start as soon as the therapist can leave for it (on the 15-minute grid, from
    now on), the whole busy range (travel both ways) on one day."""
    whole = timedelta(minutes=2 * travel) + service.duration + service.buffer
    leave = factories.soon(timedelta(minutes=15), whole)
    return leave + timedelta(minutes=travel)


def queries_of(client, url: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured.captured_queries), response


# --- roles ---------------------------------------------------------------------------------


def pages(appointment_id: int, notification_id: int) -> list[str]:
    return [
        "/desk/",
        "/desk/board/",
        "/desk/queues/",
        "/desk/queues/fragment/",
        "/desk/queues/summary/",
        "/desk/drivers/",
        "/desk/drivers/fragment/",
        "/desk/drivers/summary/",
        "/desk/appointments/new/",
        "/desk/appointments/new/times/",
        f"/desk/appointments/{appointment_id}/",
        f"/desk/appointments/{appointment_id}/fragment/",
        f"/desk/appointments/{appointment_id}/actions/",
        f"/desk/appointments/{appointment_id}/times/",
    ]


@pytest.fixture
def booked(desk, client_record, service, therapist):
    return book(desk, client_record, service, therapist, local(tomorrow(), 10), address="1 Main")


@pytest.fixture
def failed_notification(booked):
    row = Notification.objects.filter(appointment=booked).first()
    Notification.objects.filter(pk=row.pk).update(
        status="failed", attempts=6, last_error="provider said: number unreachable"
    )
    row.refresh_from_db()
    return row


@pytest.mark.parametrize("role", ["receptionist", "manager"])
def test_every_page_and_fragment_renders_for_the_desk(client, role, booked, failed_notification):
    signed_in(client, factories.UserFactory(role=role))
    for url in pages(booked.pk, failed_notification.pk):
        response = client.get(url)
        assert response.status_code == 200, url
    assert client.post("/desk/clients/search/", {"q": "mar"}).status_code == 200


@pytest.mark.parametrize("role", ["therapist", "driver"])
def test_other_roles_get_403_everywhere(client, role, booked, failed_notification):
    signed_in(client, factories.UserFactory(role=role))
    for url in pages(booked.pk, failed_notification.pk):
        response = client.get(url)
        assert response.status_code == 403, url
    posts = [
        "/desk/clients/search/",
        "/desk/appointments/new/",
        "/desk/clients/new/",
        f"/desk/appointments/{booked.pk}/cancel/",
        f"/desk/appointments/{booked.pk}/reschedule/",
        f"/desk/notifications/{failed_notification.pk}/retry/",
    ]
    for url in posts:
        assert client.post(url, {"cancel-reason": "x"}).status_code == 403, url
    booked.refresh_from_db()
    assert booked.status == "pending"


def test_anonymous_is_sent_to_sign_in(client, booked, failed_notification):
    for url in pages(booked.pk, failed_notification.pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/accounts/login/"), url
    response = client.post("/desk/clients/search/", {"q": "0917"})
    assert response.status_code == 302 and "0917" not in response.url


# --- the board -----------------------------------------------------------------------------


def test_board_shows_each_therapist_and_their_appointments(
    desk_client, desk, client_record, service, therapist
):
    day = tomorrow()
    other = factories.therapist(service, first_name="Ben", last_name="Reyes", username="ben")
    Break.objects.create(staff=therapist, weekday=day.weekday(), start=time(12), end=time(13))
    TimeOff.objects.create(staff=other, start=local(day, 15), end=local(day, 17), reason="dentist")
    appointment = book(
        desk, client_record, service, therapist, local(day, 10), needs_transport=True
    )

    response = desk_client.get(f"/desk/?date={day.isoformat()}")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Ana Cruz" in html and "Ben Reyes" in html
    assert "Maria Santos" in html and "Swedish massage" in html
    assert f'href="/desk/appointments/{appointment.pk}/"' in html
    assert "10:00–11:00" in html
    assert "Drop-off: trip queued" in html
    assert "Break 12:00–13:00" in html
    assert "Time off 15:00–17:00" in html
    # Positioned by time: 10:00 on a 08:00-20:00 span is 1/6 of the way.
    block = re.search(
        rf'id="block-{appointment.pk}"[^>]*style="left: ([\d.]+)%; width: ([\d.]+)%', html
    )
    assert block and float(block.group(1)) == pytest.approx(100 * 2 / 12, abs=0.01)
    assert float(block.group(2)) == pytest.approx(100 / 12, abs=0.01)
    # A live region on the board's events.
    assert 'data-live="appointment.created appointment.updated trip.assigned trip.updated"' in html
    assert "data-live-after=" in html


def test_board_transport_states(desk_client, desk, client_record, service, therapist):
    day = tomorrow()
    driver = factories.driver(first_name="Dan", last_name="Lim")
    # 09:00 holds Ana from 08:15 to 11:00, travel included; 12:00 leaves at 11:15.
    plain = book(desk, client_record, service, therapist, local(day, 9))
    moving = book(desk, client_record, service, therapist, local(day, 12), needs_transport=True)
    Trip.objects.filter(appointment=moving, leg="dropoff").update(
        status="en_route", driver=driver, assigned_at=timezone.now()
    )
    html = desk_client.get(f"/desk/board/?date={day.isoformat()}").content.decode()
    assert "No transport" in html
    assert "Drop-off: Dan Lim en route" in html
    assert plain.client.name in html


def test_board_hides_what_will_not_happen_unless_asked(
    desk_client, desk, client_record, service, therapist
):
    day = tomorrow()
    appointment = book(desk, client_record, service, therapist, local(day, 9))
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel", reason="ill")
    html = desk_client.get(f"/desk/board/?date={day.isoformat()}").content.decode()
    assert f"block-{appointment.pk}" not in html
    assert "show 1 cancelled, rejected or expired" in html
    html = desk_client.get(f"/desk/board/?date={day.isoformat()}&all=1").content.decode()
    assert f"block-{appointment.pk}" in html


@pytest.mark.parametrize(
    "value", ["10000-01-01", "yesterday", "2030-13-01", "0001-01-01", "9999-12-31", "x" * 500]
)
def test_board_refuses_a_day_it_cannot_show_with_400(desk_client, value):
    for url in ("/desk/", "/desk/board/"):
        response = desk_client.get(url, {"date": value})
        assert response.status_code == 400
        assert b"not a day the board can show" in response.content


def test_board_day_navigation(desk_client):
    response = desk_client.get("/desk/?date=2030-03-01")
    html = response.content.decode()
    assert 'href="?date=2030-02-28"' in html
    assert 'href="?date=2030-03-02"' in html
    assert f'href="?date={timezone.localdate().isoformat()}"' in html


def test_board_queries_do_not_grow_with_therapists_or_appointments(
    desk_client, desk, service, django_assert_max_num_queries
):
    day = tomorrow()
    few = [factories.therapist(service) for _ in range(4)]
    crowd(day, few, service, 10, desk)
    few_count, _ = queries_of(desk_client, f"/desk/?date={day.isoformat()}")

    many = [factories.therapist(service) for _ in range(36)]
    crowd(day, many, service, 10, desk)
    assert Appointment.objects.on_day(day).count() == 400
    with django_assert_max_num_queries(24):
        many_count, response = queries_of(desk_client, f"/desk/?date={day.isoformat()}")
    assert many_count == few_count
    assert response.content.decode().count('class="tl-row"') == 40
    fragment_few = queries_of(desk_client, f"/desk/board/?date={day.isoformat()}")[0]
    assert fragment_few <= 10


def test_board_draws_the_travel_either_side_of_each_session(
    desk_client, desk, client_record, service, therapist
):
    day = tomorrow()
    appointment = book(
        desk, client_record, service, therapist, local(day, 10), needs_transport=True
    )
    html = desk_client.get(f"/desk/board/?date={day.isoformat()}").content.decode()

    def travel(kind: str, text: str) -> tuple[float, float]:
        found = re.search(
            rf'class="tl-travel tl-travel-{kind}" style="left: ([\d.]+)%; width: ([\d.]+)%; '
            rf'--lane: 0" aria-hidden="true" title="{text}">'
            r'<span class="tl-travel-label">travel</span>',
            html,
        )
        assert found, (kind, html)
        return float(found.group(1)), float(found.group(2))

    # On the 08:00-20:00 span: out from 09:15 (leaving base) to the 10:00 start, back from
    # 11:15 (the session and its 15 minutes' clean-up over) to 12:00, 45 minutes each.
    out_left, out_width = travel("out", "Travel 09:15–10:00")
    back_left, back_width = travel("back", "Travel 11:15–12:00")
    assert out_left == pytest.approx(100 * 1.25 / 12, abs=0.01)
    assert back_left == pytest.approx(100 * 3.25 / 12, abs=0.01)
    assert out_width == back_width == pytest.approx(100 * 0.75 / 12, abs=0.01)
    # The session itself is where it was; the clean-up between it and the travel back.
    block = re.search(rf'id="block-{appointment.pk}"[^>]*style="left: ([\d.]+)%', html)
    assert float(block.group(1)) == pytest.approx(100 * 2 / 12, abs=0.01)
    assert 'title="Clean-up"' in html
    # In words too, for screen readers and the tooltip; and in the legend.
    assert '<span class="sr-only">, away 09:15–12:00 with travel</span>' in html
    assert "Away 09:15–12:00, travel included." in html
    assert '<span class="swatch swatch-travel"></span>Travel' in html


def test_a_booking_made_before_travel_was_counted_has_no_travel_drawn(
    desk_client, desk, service, therapist
):
    day = tomorrow()
    [old] = crowd(day, [therapist], service, 1, desk)  # travel 0: busy = session + buffer
    assert (old.busy_from, old.busy_until, old.travel_minutes) == (
        old.start,
        old.blocked_until,
        0,
    )
    html = desk_client.get(f"/desk/board/?date={day.isoformat()}").content.decode()
    assert f'id="block-{old.pk}"' in html
    assert "tl-travel-out" not in html and "tl-travel-back" not in html
    assert "with travel</span>" not in html


def appointment_at(pk: int, start: datetime, travel: int, *, buffer: int = 15) -> Appointment:
    end = start + timedelta(minutes=60)
    blocked = end + timedelta(minutes=buffer)
    return Appointment(
        pk=pk,
        start=start,
        end=end,
        blocked_until=blocked,
        travel_minutes=travel,
        busy_from=start - timedelta(minutes=travel),
        busy_until=blocked + timedelta(minutes=travel),
        status="confirmed",
        needs_transport=False,
    )


def test_lanes_hold_a_block_from_leaving_base_to_being_back():
    from scheduling.views.desk.board import lay_out
    from scheduling.views.desk.timeline import Span

    day = tomorrow()
    span = Span(local(day, 8), local(day, 20))
    first = appointment_at(1, local(day, 10), 45)  # away 09:15-12:00
    # Its session and clean-up are over at 11:15, but Ana is on the road until 12:00: a
    # booking that leaves at 11:30 cannot share the lane (it could by blocked_until).
    overlapping = appointment_at(2, local(day, 12, 15), 45)  # away 11:30-14:15
    after = appointment_at(3, local(day, 12, 45), 45)  # away 12:00-14:45: back in time
    old = appointment_at(4, local(day, 14, 45), 0)  # travel 0: away 14:45-16:00
    blocks = lay_out([old, after, overlapping, first], span, show_all=False)
    lanes = {b.appointment.pk: b.lane for b in blocks}
    assert lanes == {1: 0, 2: 1, 3: 0, 4: 0}
    by_pk = {b.appointment.pk: b for b in blocks}
    assert by_pk[1].travel_out.text == "Travel 09:15–10:00"
    assert by_pk[1].travel_back.text == "Travel 11:15–12:00"
    assert by_pk[4].travel_out is None and by_pk[4].travel_back is None
    # The pieces meet the session and the clean-up edge to edge.
    b = by_pk[1]
    assert float(b.travel_out.left) + float(b.travel_out.width) == pytest.approx(float(b.left))
    assert float(b.tail_left) + float(b.tail) == pytest.approx(float(b.travel_back.left))


# --- booking -------------------------------------------------------------------------------


def booking(client_record, service, therapist, when: datetime, /, **changes) -> dict:
    data = {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "date": timezone.localtime(when).date().isoformat(),
        "start": timezone.localtime(when).isoformat(),
        "address": "",
        "notes": "Ring twice",
        "needs_transport": "on",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_booking_through_the_form_creates_one_appointment(
    desk_client, desk, client_record, service, therapist
):
    factories.driver()  # the booking has transport: a driver works then
    start = local(tomorrow(), 10, 30)
    response = desk_client.post(
        "/desk/appointments/new/", booking(client_record, service, therapist, start)
    )
    appointment = Appointment.objects.get()
    assert response.status_code == 302
    assert response.url == f"/desk/appointments/{appointment.pk}/"
    assert (appointment.client, appointment.therapist, appointment.start) == (
        client_record,
        therapist,
        start,
    )
    assert appointment.address == client_record.address  # empty: the client's own
    assert appointment.notes == "Ring twice" and appointment.needs_transport
    assert appointment.created_by == desk and appointment.status == "pending"
    assert appointment.trips.count() == 2
    # No area given, the client has none: the default travel, 45 minutes each way.
    assert (appointment.area, appointment.travel_minutes) == (None, 45)
    assert (appointment.busy_from, appointment.busy_until) == (
        local(tomorrow(), 9, 45),
        local(tomorrow(), 12, 30),
    )
    page = desk_client.get(response.url)
    assert "Booked Maria Santos with Ana Cruz on" in page.content.decode()


def test_a_conflict_names_the_appointment_beside_the_start_and_writes_nothing(
    desk_client, desk, client_record, service, therapist
):
    first = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    other = factories.ClientFactory(name="Jose Rizal")
    factories.driver()
    response = desk_client.post(
        "/desk/appointments/new/",
        booking(other, service, therapist, local(tomorrow(), 10, 30)),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert Appointment.objects.count() == 1
    error = re.search(r'<p class="field-error" id="id_start_error">([^<]+)</p>', html)
    assert error, html
    text = error.group(1).replace("&#x27;", "'")
    assert "Ana Cruz is already booked then: Maria Santos" in text
    assert "10:00–11:00 (away 09:15–12:00 with travel and clean-up)" in text
    assert "Pick another time" in text
    assert f'href="/desk/appointments/{first.pk}/"' in html
    # What was typed comes back, and the client stays chosen.
    assert f'value="{other.pk}" form="appointment-form"' in html
    assert "Ring twice" in html


def day_after():
    return tomorrow() + timedelta(days=1)


BAD_BOOKINGS = {
    "unknown client": ({"client": "999999"}, "There is no client with id 999999."),
    "non-numeric client": ({"client": "abc"}, "Choose a client"),
    "missing client": ({"client": None}, "Choose a client"),
    "unknown service": ({"service": "999999"}, "There is no service with id 999999."),
    "non-numeric service": ({"service": "1 OR 1=1"}, "Choose a service."),
    "unknown therapist": ({"therapist": "999999"}, "There is no therapist with id 999999."),
    "non-numeric therapist": ({"therapist": "-3"}, "Choose a therapist."),
    "another day's start": (
        {"start": lambda: timezone.localtime(local(day_after(), 10)).isoformat()},
        "not on the day chosen",
    ),
    "a start outside working hours": (
        {"start": lambda: timezone.localtime(local(tomorrow(), 3)).isoformat()},
        "is outside working hours for Ana Cruz",
    ),
    "a start off the step": (
        {"start": lambda: timezone.localtime(local(tomorrow(), 10, 7)).isoformat()},
        "Start times are every 15 minutes",
    ),
    "a start without a zone": ({"start": "2030-01-01T10:00"}, "Pick a start time"),
    "a garbage start": ({"start": "tomorrow at ten"}, "Pick a start time"),
    "year 10000": ({"date": "10000-01-01"}, "Enter a date like 2030-05-01."),
    "year 9999": (
        {"date": "9999-12-31", "start": "9999-12-31T10:00:00+08:00"},
        "9999 is not a year the desk books in",
    ),
    "a word for a date": ({"date": "yesterday"}, "Enter a date like 2030-05-01."),
    "huge notes": ({"notes": "x" * 100_000}, "at most 2000 characters"),
}


@pytest.mark.parametrize("case", sorted(BAD_BOOKINGS))
def test_bad_bookings_are_answered_on_the_form_and_write_nothing(
    desk_client, client_record, service, therapist, case
):
    changes, message = BAD_BOOKINGS[case]
    changes = {k: v() if callable(v) else v for k, v in changes.items()}
    data = booking(client_record, service, therapist, local(tomorrow(), 10), **changes)
    response = desk_client.post("/desk/appointments/new/", data)
    assert response.status_code == 200
    html = response.content.decode().replace("&#x27;", "'")
    assert message in html
    assert 'id="form-problems"' in html
    assert Appointment.objects.count() == 0


def test_a_therapist_who_does_not_perform_the_service_is_refused(
    desk_client, client_record, service, therapist
):
    other_service = factories.ServiceFactory(name="Shiatsu")
    response = desk_client.post(
        "/desk/appointments/new/",
        booking(client_record, other_service, therapist, local(tomorrow(), 10)),
    )
    assert "Ana Cruz does not perform Shiatsu." in response.content.decode()
    assert Appointment.objects.count() == 0


def test_the_form_opens_prefilled_from_the_board_and_for_a_rebooking(
    desk_client, desk, client_record, service, therapist
):
    day = tomorrow().isoformat()
    html = desk_client.get(
        f"/desk/appointments/new/?date={day}&therapist={therapist.pk}&service={service.pk}"
    ).content.decode()
    assert f'value="{day}"' in html
    assert f'<option value="{therapist.pk}" selected>Ana Cruz' in html
    assert 'name="start" value="' in html  # the free times are there already

    rejected = book(
        desk,
        client_record,
        service,
        therapist,
        local(tomorrow(), 9),
        address="7 Palm Rd",
        notes="Bring oil",
    )
    act_on_appointment(actor=therapist, appointment_id=rejected.pk, action="reject")
    html = desk_client.get(f"/desk/appointments/new/?rebook={rejected.pk}").content.decode()
    assert f'value="{client_record.pk}" form="appointment-form"' in html
    assert "7 Palm Rd" in html and "Bring oil" in html
    assert f'<option value="{service.pk}" selected>' in html


@pytest.mark.parametrize(
    "query", ["therapist=abc&service=-1&date=10000-01-01", "rebook=abc&client=x", "rebook=999999"]
)
def test_garbage_in_the_form_link_is_ignored(desk_client, query):
    assert desk_client.get(f"/desk/appointments/new/?{query}").status_code == 200


def test_free_times_fragment(desk_client, desk, client_record, service, therapist):
    day = tomorrow()
    book(desk, client_record, service, therapist, local(day, 10))
    url = "/desk/appointments/new/times/"
    html = desk_client.get(
        url, {"service": service.pk, "date": day.isoformat(), "therapist": therapist.pk}
    ).content.decode()
    offered = re.findall(r'name="start" value="([^"]+)"', html)

    def at(hour, minute=0):
        return timezone.localtime(local(day, hour, minute)).isoformat()

    # Ana works 08:00-20:00 and the 10:00 booking holds her 09:15-12:00 (45 minutes'
    # travel each way). A start holds her from 45 minutes before it to 2 hours after.
    assert at(8) not in offered  # she would have to leave at 07:15
    assert at(8, 45) not in offered  # free to leave, but back at 10:45, inside 09:15-12:00
    assert at(12, 30) not in offered  # would leave at 11:45, before she is back
    assert at(12, 45) in offered and offered[0] == at(12, 45)
    assert at(18) in offered and at(18, 15) not in offered  # back by 20:00, not 20:15
    assert "Ana Cruz · " in html and "free times" in html
    assert "The times shown count the travel (45 min each way, default travel)." in html


@pytest.mark.parametrize(
    ("params", "note"),
    [
        ({}, "with any free therapist"),  # no therapist named: anyone free (issue 13)
        ({"service": "999999", "date": "2030-01-01"}, "Choose a service"),
        ({"service": "x"}, "Choose a service"),
        ({"date": "10000-01-01", "service": "S"}, "Choose a service"),
        ({"date": "10000-01-01"}, "Enter a date like 2030-05-01."),
        ({"date": "9999-12-31"}, "9999 is not a year"),
        ({"date": "2001-01-01"}, "That day has passed."),
        ({"date": "2999-01-01"}, "too far ahead to book"),
        ({"therapist": "999999"}, "does not perform"),
    ],
)
def test_free_times_fragment_explains_what_is_missing(
    desk_client, service, therapist, params, note
):
    query = {"service": service.pk, "date": tomorrow().isoformat(), **params}
    query = {k: v for k, v in query.items() if v != "S"}
    response = desk_client.get("/desk/appointments/new/times/", query)
    assert response.status_code == 200
    assert note in response.content.decode()


def driver_working(start: time, end: time, **fields):
    """A driver whose hours are `start`-`end` every day."""
    user = factories.UserFactory(role="driver", **fields)
    DriverProfile.objects.create(user=user, vehicle="motorcycle", seats=1)
    factories.add_hours(user, start, end)
    return user


def times_html(desk_client, service, therapist, day: date, **params) -> str:
    query = {"service": service.pk, "date": day.isoformat(), "therapist": therapist.pk, **params}
    response = desk_client.get("/desk/appointments/new/times/", query)
    assert response.status_code == 200
    return response.content.decode()


def free_starts(html: str, name: str = "start") -> list[str]:
    return re.findall(rf'name="{name}" value="([^"]+)" id="[^"]+"\s*>', html)


def no_driver_starts(html: str, name: str = "start") -> list[str]:
    return re.findall(rf'name="{name}" value="([^"]+)" id="[^"]+"\s*disabled', html)


def iso(instant: datetime) -> str:
    return timezone.localtime(instant).isoformat()


def test_the_form_asks_about_transport_and_the_area_before_the_times(
    desk_client, service, therapist
):
    ServiceArea.objects.create(name="Makati", travel_minutes=30)
    ServiceArea.objects.create(name="Quezon City", travel_minutes=60)
    ServiceArea.objects.create(name="Old Town", travel_minutes=20, active=False)
    html = desk_client.get(
        f"/desk/appointments/new/?date={tomorrow().isoformat()}&service={service.pk}"
        f"&therapist={therapist.pk}"
    ).content.decode()
    order = [
        html.index('id="id_needs_transport"'),
        html.index('id="id_area"'),
        html.index('id="id_therapist"'),
        html.index('name="start"'),
        html.index('id="id_address"'),
    ]
    assert order == sorted(order)
    assert html.count('name="needs_transport"') == 1
    assert '<label for="id_area">Area</label>' in html
    select = html[html.index('id="id_area"') :]
    select = select[: select.index("</select>")]
    labels = re.findall(r"<option [^>]*>([^<]+)</option>", select)
    assert labels == [
        "Default travel (45 min each way)",
        "Makati (30 min each way)",
        "Quezon City (60 min each way)",
    ]
    # Each of them asks for the times again, with everything they depend on.
    for control in ("id_needs_transport", "id_area"):
        tag = html[html.index(f'id="{control}"') :]
        tag = unescape(tag[: tag.index(">")])
        assert 'hx-get="/desk/appointments/new/times/"' in tag
        assert "#id_needs_transport, #id_area, [name='client']:checked" in tag
    # And so does choosing another client (their area sets the travel).
    assert 'hx-trigger="client-chosen from:body"' in html
    assert 'htmx.trigger(document.body, "client-chosen")' in html
    assert 'id="times" class="times" data-client-area=""' in html


def test_the_area_sets_the_travel_the_times_count(desk_client, service, therapist):
    day = tomorrow()
    near = ServiceArea.objects.create(name="Next door", travel_minutes=15)
    makati = ServiceArea.objects.create(name="Makati", travel_minutes=30)
    client = factories.ClientFactory(name="Lea Salonga", area=makati)

    # Ana starts work at 08:00: the first start is the travel after it.
    default = times_html(desk_client, service, therapist, day)
    assert free_starts(default)[0] == iso(local(day, 8, 45))
    assert "count the travel (45 min each way, default travel)" in default
    nearby = times_html(desk_client, service, therapist, day, area=near.pk)
    assert free_starts(nearby)[0] == iso(local(day, 8, 15))
    assert "count the travel (15 min each way, Next door)" in nearby
    # The client's own area, unless the desk names another; listed once.
    theirs = times_html(desk_client, service, therapist, day, client=client.pk)
    assert free_starts(theirs)[0] == iso(local(day, 8, 30))
    assert '<option value="" selected>Makati, the client\'s area (30 min each way)' in (
        theirs.replace("&#x27;", "'")
    )
    assert f'<option value="{makati.pk}"' not in theirs
    overridden = times_html(desk_client, service, therapist, day, client=client.pk, area=near.pk)
    assert free_starts(overridden)[0] == iso(local(day, 8, 15))
    assert f'<option value="{near.pk}" selected>Next door (15 min each way)' in overridden
    # An area that is not offered is said beside the select, not a server error.
    for gone in (
        "999999",
        str(ServiceArea.objects.create(name="X", travel_minutes=9, active=False).pk),
    ):
        html = times_html(desk_client, service, therapist, day, area=gone)
        assert f"There is no service area with id {gone}." in html
        assert 'id="id_area_error"' in html


def test_starts_no_driver_could_carry_are_marked_and_cannot_be_chosen(
    desk_client, service, therapist
):
    from scheduling.services.availability import availability

    day = tomorrow()
    driver_working(time(12), time(20), first_name="Noel", last_name="Day")
    html = times_html(desk_client, service, therapist, day, needs_transport="on")

    # The page shows what the availability service says, no more and no less.
    [ana] = availability(service=service, day=day, therapist_id=therapist.pk, needs_transport=True)
    assert free_starts(html) == [iso(s) for s in ana.starts]
    assert no_driver_starts(html) == [iso(s) for s in ana.no_driver]
    # The drive there of a 09:00 start (08:15-09:00) is before Noel's 12:00; 12:45 leaves
    # at 12:00, when he starts.
    assert iso(local(day, 9)) in no_driver_starts(html)
    assert free_starts(html)[0] == iso(local(day, 12, 45))
    slot = re.search(
        r'<label class="slot slot-no-driver">\s*<input[^>]*id="start-0900"[^>]*>'
        r"\s*<span>09:00 <small class=\"slot-why\">No driver</small></span>",
        html,
    )
    assert slot, html
    assert "Times marked “No driver” suit Ana Cruz, but no driver is free" in html
    assert f"{len(ana.starts)} free times, {len(ana.no_driver)} with no driver" in html
    assert "(45 min each way, default travel) and a driver free for both legs." in html

    # Without transport those are ordinary free times.
    walking = times_html(desk_client, service, therapist, day)
    assert iso(local(day, 9)) in free_starts(walking)
    assert not no_driver_starts(walking) and "No driver" not in walking


def test_with_no_driver_at_all_the_form_says_so(desk_client, service, therapist):
    html = times_html(desk_client, service, therapist, tomorrow(), needs_transport="on")
    assert not free_starts(html) and no_driver_starts(html)
    assert "No driver is free to take Ana Cruz to any of their free times that day." in html


def test_a_time_refused_for_want_of_a_driver_is_answered_beside_it(
    desk_client, desk, client_record, service, therapist
):
    day = tomorrow()
    factories.driver(first_name="Dan", last_name="Lim")  # the only driver, 08:00-20:00
    ben = factories.therapist(service, first_name="Ben", last_name="Reyes", username="ben")
    # Ben's trips take Dan 09:15-10:00 and 11:15-12:00; Ana is free at 10:00.
    book(desk, factories.ClientFactory(), service, ben, local(day, 10), needs_transport=True)

    response = desk_client.post(
        "/desk/appointments/new/", booking(client_record, service, therapist, local(day, 10))
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert Appointment.objects.filter(therapist=therapist).count() == 0
    reason = "No driver is free for the drop-off 09:15–10:00 and the pick-up 11:15–12:00."
    # Beside the time: in its own part of the day, right after its row of times ...
    morning = html[html.index('aria-label="Morning"') : html.index('aria-label="Afternoon"')]
    error = re.search(
        r'<p class="field-error slot-error" id="id_start_error">'
        r'<span class="slot-error-time">10:00:</span> ([^<]+)</p>',
        morning,
    )
    assert error and error.group(1) == reason
    # ... which is shown as one no driver can take, not chosen, pointing at the reason.
    slot = re.search(r'<label class="slot slot-no-driver slot-refused">\s*<input([^>]*)>', morning)
    assert slot and 'id="start-1000"' in slot.group(1)
    assert "disabled" in slot.group(1) and 'aria-describedby="id_start_error"' in slot.group(1)
    assert "checked" not in slot.group(1)
    # ... and in the summary at the top, as every refusal.
    assert f'<a href="#id_start">Start time: {reason}</a>' in html
    # Not the therapist's fault: no booking is named.
    assert "already booked" not in html and 'class="conflict-list"' not in html

    # Without transport the same time books.
    data = booking(client_record, service, therapist, local(day, 10), needs_transport=None)
    assert desk_client.post("/desk/appointments/new/", data).status_code == 302
    assert Appointment.objects.get(therapist=therapist).needs_transport is False


def test_booking_with_an_area_keeps_its_travel(desk_client, client_record, service, therapist):
    factories.driver()
    makati = ServiceArea.objects.create(name="Makati", travel_minutes=30)
    start = local(tomorrow(), 10)
    data = booking(client_record, service, therapist, start, area=str(makati.pk))
    response = desk_client.post("/desk/appointments/new/", data)
    assert response.status_code == 302
    appointment = Appointment.objects.get()
    assert (appointment.area, appointment.travel_minutes) == (makati, 30)
    assert appointment.busy_from == local(tomorrow(), 9, 30)


@pytest.mark.parametrize("area", ["999999", "inactive", "abc"])
def test_an_area_not_offered_is_answered_beside_the_area(
    desk_client, client_record, service, therapist, area
):
    factories.driver()
    if area == "inactive":
        area = str(ServiceArea.objects.create(name="Gone", travel_minutes=9, active=False).pk)
    data = booking(client_record, service, therapist, local(tomorrow(), 10), area=area)
    response = desk_client.post("/desk/appointments/new/", data)
    html = response.content.decode()
    assert response.status_code == 200
    message = (
        "Choose an area from the list."
        if area == "abc"
        else (f"There is no service area with id {area}.")
    )
    assert re.search(rf'<p class="field-error" id="id_area_error">{re.escape(message)}</p>', html)
    assert f'<a href="#id_area">Area: {message}</a>' in html
    assert Appointment.objects.count() == 0


def test_rebooking_keeps_the_area_chosen_for_the_booking(
    desk_client, desk, client_record, service, therapist
):
    far = ServiceArea.objects.create(name="Far away", travel_minutes=60)
    rejected = book(desk, client_record, service, therapist, local(tomorrow(), 10), area_id=far.pk)
    act_on_appointment(actor=therapist, appointment_id=rejected.pk, action="reject")
    html = desk_client.get(f"/desk/appointments/new/?rebook={rejected.pk}").content.decode()
    assert f'<option value="{far.pk}" selected>Far away (60 min each way)' in html


def test_client_search_by_name_and_phone_masks_the_number(desk_client, client_record):
    factories.ClientFactory(name="Pedro Penduko", phone="+639181112222")
    by_name = desk_client.post("/desk/clients/search/", {"q": "mar"}).content.decode()
    assert "Maria Santos" in by_name and "Pedro" not in by_name
    assert "0917 ••• 4567" in by_name and "1234567" not in by_name
    assert 'type="radio" name="client"' in by_name
    by_phone = desk_client.post("/desk/clients/search/", {"q": "0918 111"}).content.decode()
    assert "Pedro Penduko" in by_phone and "Maria" not in by_phone
    nothing = desk_client.post("/desk/clients/search/", {"q": "zzz"}).content.decode()
    assert "No client matches" in nothing
    assert desk_client.post("/desk/clients/search/", {"q": "x" * 5000}).status_code == 200
    # A phone fragment never travels in a URL.
    assert desk_client.get("/desk/clients/search/", {"q": "0917"}).status_code == 405


def test_client_search_is_bounded(desk_client, django_assert_max_num_queries):
    for _ in range(30):
        factories.ClientFactory(name="Maria Clara")
    with django_assert_max_num_queries(3):
        html = desk_client.post("/desk/clients/search/", {"q": "maria"}).content.decode()
    assert html.count('name="client"') == 8
    assert "More clients match" in html


def test_a_client_is_added_inline_and_comes_back_chosen(desk_client):
    response = desk_client.post(
        "/desk/clients/new/",
        {"new-name": "Lea Salonga", "new-phone": "0917 555 0101", "new-address": "1 Rizal Ave"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    created = Client.objects.get(name="Lea Salonga")
    assert created.phone == "+639175550101"
    assert f'value="{created.pk}" form="appointment-form"' in html and "checked" in html
    assert 'hx-swap-oob="true"' in html
    assert "Lea Salonga added and chosen." in html


def test_a_client_added_inline_may_be_given_an_area(desk_client):
    makati = ServiceArea.objects.create(name="Makati", travel_minutes=30)
    form = desk_client.get("/desk/appointments/new/").content.decode()
    assert '<label for="id_new-area">Area</label>' in form
    assert f'<option value="{makati.pk}">Makati (30 min each way)</option>' in form
    response = desk_client.post(
        "/desk/clients/new/",
        {"new-name": "Lea Salonga", "new-phone": "0917 555 0101", "new-area": str(makati.pk)},
        headers={"HX-Request": "true"},
    )
    created = Client.objects.get(name="Lea Salonga")
    assert created.area == makati
    # Chosen, with the area the form compares to the one its times were shown for.
    assert f'data-area="{makati.pk}" checked' in response.content.decode()
    refused = desk_client.post(
        "/desk/clients/new/",
        {"new-name": "Someone", "new-phone": "0917 555 0102", "new-area": "999999"},
        headers={"HX-Request": "true"},
    )
    assert "There is no service area with id 999999." in refused.content.decode()
    assert not Client.objects.filter(name="Someone").exists()


def test_a_duplicate_phone_is_answered_beside_the_phone_field(desk_client, client_record):
    response = desk_client.post(
        "/desk/clients/new/",
        {"new-name": "Someone Else", "new-phone": "0917 123 4567"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    error = re.search(r'id="id_new-phone_error">([^<]+)<', html)
    assert error and "already belongs to Maria Santos" in error.group(1)
    assert Client.objects.count() == 1


def test_adding_a_client_without_htmx_returns_to_the_form(desk_client):
    response = desk_client.post(
        "/desk/clients/new/", {"new-name": "Lea Salonga", "new-phone": "0917 555 0101"}
    )
    created = Client.objects.get()
    assert response.status_code == 302
    assert response.url == f"/desk/appointments/new/?client={created.pk}"
    bad = desk_client.post("/desk/clients/new/", {"new-name": "", "new-phone": "12"})
    assert bad.status_code == 200
    assert "A name is required." in bad.content.decode()
    assert Client.objects.count() == 1


def test_csrf_is_enforced_on_the_desk_forms(desk, client_record, service, therapist, booked):
    factories.driver()  # the form books with transport
    strict = DjangoClient(enforce_csrf_checks=True)
    strict.force_login(desk)
    data = booking(client_record, service, therapist, local(tomorrow(), 14))
    assert strict.post("/desk/appointments/new/", data).status_code == 403
    assert (
        strict.post(f"/desk/appointments/{booked.pk}/cancel/", {"cancel-reason": "x"}).status_code
        == 403
    )
    assert Appointment.objects.count() == 1
    booked.refresh_from_db()
    assert booked.status == "pending"
    # With the token the page gives, the same post goes through.
    page = strict.get("/desk/appointments/new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert (
        strict.post("/desk/appointments/new/", {**data, "csrfmiddlewaretoken": token}).status_code
        == 302
    )


# --- an appointment ------------------------------------------------------------------------


def actions_of(html: str) -> set[str]:
    found = set()
    for action, marker in [
        ("reschedule", "Move the appointment"),
        ("cancel", "Cancel the appointment"),
        ("no_show", "Mark as no-show"),
    ]:
        if marker in html:
            found.add(action)
    return found


def test_detail_shows_the_whole_appointment(desk_client, desk, client_record, service, therapist):
    appointment = book(
        desk,
        client_record,
        service,
        therapist,
        local(tomorrow(), 10),
        needs_transport=True,
        notes="Bring oil",
        address="7 Palm Rd",
    )
    failed = Notification.objects.filter(appointment=appointment, audience="client").get()
    Notification.objects.filter(pk=failed.pk).update(status="failed", last_error="bad number")
    html = desk_client.get(f"/desk/appointments/{appointment.pk}/").content.decode()
    for text in [
        "Maria Santos",
        "Swedish massage",
        "Ana Cruz",
        "7 Palm Rd",
        "Bring oil",
        "1,200.00",
        "Unpaid",
        "Pending",
        "Drop-off",
        "Pick-up",
        "bad number",
        "Booking received",
        "The dispatcher has not looked at it yet.",
    ]:
        assert text in html, text
    # A live countdown to the response deadline while pending.
    deadline = timezone.localtime(appointment.response_deadline).isoformat()
    assert f'data-countdown datetime="{deadline}"' in html
    assert 'data-live="appointment.updated trip.assigned trip.updated' in html
    assert 'class="badge status-failed"' in html


def test_detail_shows_the_travel_and_the_area(desk_client, desk, client_record, service, therapist):
    makati = ServiceArea.objects.create(name="Makati", travel_minutes=30)
    in_area = book(
        desk, client_record, service, therapist, local(tomorrow(), 10), area_id=makati.pk
    )
    html = desk_client.get(f"/desk/appointments/{in_area.pk}/").content.decode()
    assert '<dt>Travel</dt><dd id="appointment-travel">30 min each way · Makati</dd>' in html
    assert "Ana Cruz leaves base at <time" in html
    assert ">09:30</time> and is back at <time" in html and ">11:45</time>." in html
    assert "60 min + 15 min clean-up" in html

    plain = book(desk, client_record, service, therapist, local(day_after(), 10))
    html = desk_client.get(f"/desk/appointments/{plain.pk}/fragment/").content.decode()
    assert '<dd id="appointment-travel">45 min each way · default travel</dd>' in html
    assert ">09:15</time> and is back at <time" in html and ">12:00</time>." in html

    [old] = crowd(tomorrow() + timedelta(days=3), [therapist], service, 1, desk)
    html = desk_client.get(f"/desk/appointments/{old.pk}/").content.decode()
    assert '<dd id="appointment-travel">0 min: booked before travel was counted</dd>' in html


def test_detail_names_the_dispatchers_reason_for_a_queued_trip(
    desk_client, desk, client_record, service, therapist
):
    appointment = book(
        desk, client_record, service, therapist, local(tomorrow(), 10), needs_transport=True
    )
    busy = factories.driver(first_name="Dan", last_name="Lim")
    trip = appointment.trips.get(leg="dropoff")
    DispatchDecision.objects.create(
        trip=trip,
        outcome=DispatchOutcome.NO_DRIVER,
        queue=[{"driver": busy.pk, "since": timezone.now().isoformat()}],
        queue_length=1,
        skipped=[{"driver": busy.pk, "reason": "busy"}],
    )
    html = desk_client.get(f"/desk/appointments/{appointment.pk}/").content.decode()
    assert "Every waiting driver was passed over: Dan Lim (busy)." in html


def test_detail_says_when_a_driver_was_kept_for_another_trip(
    desk_client, desk, client_record, service, therapist
):
    appointment = book(
        desk, client_record, service, therapist, local(tomorrow(), 10), needs_transport=True
    )
    late = factories.driver(first_name="Lea", last_name="Night")
    DispatchDecision.objects.create(
        trip=appointment.trips.get(leg="dropoff"),
        outcome=DispatchOutcome.NO_DRIVER,
        queue=[{"driver": late.pk, "since": timezone.now().isoformat()}],
        queue_length=1,
        skipped=[{"driver": late.pk, "reason": "needed_later"}],
    )
    html = desk_client.get(f"/desk/appointments/{appointment.pk}/").content.decode()
    assert (
        "Every waiting driver was passed over: Lea Night (kept for another booked trip no one "
        "else can take)." in html
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", {"reschedule", "cancel"}),
        ("confirmed", {"reschedule", "cancel", "no_show"}),
        ("in_progress", set()),
        ("completed", set()),
        ("cancelled", set()),
    ],
)
def test_detail_offers_what_the_rules_allow_the_desk(
    desk_client, desk, client_record, service, therapist, status, expected
):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    Appointment.objects.filter(pk=appointment.pk).update(status=status)
    html = desk_client.get(f"/desk/appointments/{appointment.pk}/").content.decode()
    assert actions_of(html) == expected


def test_unknown_appointments_are_404(desk_client):
    assert desk_client.get("/desk/appointments/999999/").status_code == 404
    assert desk_client.get("/desk/appointments/999999/fragment/").status_code == 404
    assert (
        desk_client.post("/desk/appointments/999999/cancel/", {"cancel-reason": "x"}).status_code
        == 404
    )
    assert desk_client.get("/desk/appointments/abc/").status_code == 404


def test_detail_queries_do_not_grow_with_history(
    desk_client, desk, client_record, service, therapist, django_assert_max_num_queries
):
    appointment = book(
        desk, client_record, service, therapist, local(tomorrow(), 10), needs_transport=True
    )
    url = f"/desk/appointments/{appointment.pk}/"
    few, _ = queries_of(desk_client, url)
    trips = list(appointment.trips.all())
    Transition.objects.bulk_create(
        Transition(
            appointment=appointment if i % 2 else None,
            trip=None if i % 2 else trips[i % 4 // 2],
            action="note",
            from_status="pending",
            to_status="pending",
            actor=desk if i % 3 else None,
            reason=f"entry {i}",
        )
        for i in range(200)
    )
    for i in range(30):
        Notification.objects.create(
            key=f"k{i}",
            kind="booking_created",
            channel="sms",
            audience="client",
            client=client_record,
            to=client_record.phone,
            appointment=appointment,
            body="x",
        )
    # 16, 3 for the payments panel (its rows, and balance_of's two reads), and 2 for the
    # manual dispatch panel (the decisions taken by hand, the drivers on shift).
    with django_assert_max_num_queries(21):
        many, response = queries_of(desk_client, url)
    assert many == few
    assert response.content.decode().count("entry ") == 200
    assert queries_of(desk_client, url + "fragment/")[0] <= 10


def test_the_actions_panel_is_redrawn_only_when_the_status_changed(
    desk_client, desk, client_record, service, therapist
):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    url = f"/desk/appointments/{appointment.pk}/actions/"
    assert desk_client.get(url, {"drawn_for": "pending"}).status_code == 204
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="accept")
    response = desk_client.get(url, {"drawn_for": "pending"})
    assert response.status_code == 200
    assert actions_of(response.content.decode()) == {"reschedule", "cancel", "no_show"}
    assert "drawn_for=confirmed" in response.content.decode()


def test_reschedule_through_the_page(desk_client, desk, client_record, service, therapist):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="accept")
    new_start = local(day_after(), 15)
    times = desk_client.get(
        f"/desk/appointments/{appointment.pk}/times/", {"reschedule-date": day_after().isoformat()}
    ).content.decode()
    assert f'value="{timezone.localtime(new_start).isoformat()}"' in times
    response = desk_client.post(
        f"/desk/appointments/{appointment.pk}/reschedule/",
        {
            "reschedule-date": day_after().isoformat(),
            "reschedule-start": timezone.localtime(new_start).isoformat(),
            "reschedule-reason": "Client asked",
        },
    )
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert (appointment.start, appointment.status) == (new_start, "pending")
    log = appointment.transitions.get(action="reschedule")
    assert (log.actor, log.reason, log.from_status) == (desk, "Client asked", "confirmed")
    assert "Moved to" in desk_client.get(response.url).content.decode()


def test_a_reschedule_offers_times_overlapping_the_appointments_own(
    desk_client, desk, client_record, service, therapist
):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    half_hour_later = timezone.localtime(local(tomorrow(), 10, 30)).isoformat()
    times = desk_client.get(
        f"/desk/appointments/{appointment.pk}/times/", {"reschedule-date": tomorrow().isoformat()}
    ).content.decode()
    assert f'value="{half_hour_later}"' in times  # its own time does not block the move
    new_form = desk_client.get(
        "/desk/appointments/new/times/",
        {"service": service.pk, "therapist": therapist.pk, "date": tomorrow().isoformat()},
    ).content.decode()
    assert f'value="{half_hour_later}"' not in new_form  # for anyone else it is taken


def test_a_reschedule_into_a_conflict_names_it_and_moves_nothing(
    desk_client, desk, client_record, service, therapist
):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    other = book(
        desk, factories.ClientFactory(name="Jose Rizal"), service, therapist, local(tomorrow(), 14)
    )
    response = desk_client.post(
        f"/desk/appointments/{appointment.pk}/reschedule/",
        {
            "reschedule-date": tomorrow().isoformat(),
            "reschedule-start": timezone.localtime(local(tomorrow(), 14, 30)).isoformat(),
        },
    )
    html = response.content.decode().replace("&#x27;", "'")
    assert response.status_code == 200
    assert "Ana Cruz is already booked then: Jose Rizal" in html
    appointment.refresh_from_db()
    assert appointment.start == local(tomorrow(), 10)
    assert other.pk


def test_a_reschedule_counts_the_travel_and_the_driver_it_was_booked_with(
    desk_client, desk, client_record, service, therapist
):
    factories.driver(first_name="Dan", last_name="Lim")  # the only driver
    makati = ServiceArea.objects.create(name="Makati", travel_minutes=30)
    appointment = book(
        desk,
        client_record,
        service,
        therapist,
        local(tomorrow(), 10),
        needs_transport=True,
        area_id=makati.pk,
    )
    ben = factories.therapist(service, first_name="Ben", last_name="Reyes", username="ben")
    book(
        desk, factories.ClientFactory(), service, ben, local(day_after(), 10), needs_transport=True
    )
    times = desk_client.get(
        f"/desk/appointments/{appointment.pk}/times/", {"reschedule-date": day_after().isoformat()}
    ).content.decode()
    assert "Counting the travel (30 min each way, Makati) and a driver free for both legs." in times
    # Dan drives Ben's 10:00 there and back: Ana cannot be taken at 10:00 that day.
    refused = no_driver_starts(times, "reschedule-start")
    assert iso(local(day_after(), 10)) in refused
    assert 'id="reschedule-start-1000"' in times and "No driver" in times
    # 08:30 would bring Ana back (09:45-10:15) while Dan takes Ben there; 08:45 is free.
    assert iso(local(day_after(), 8, 30)) in refused
    assert free_starts(times, "reschedule-start")[0] == iso(local(day_after(), 8, 45))

    response = desk_client.post(
        f"/desk/appointments/{appointment.pk}/reschedule/",
        {
            "reschedule-date": day_after().isoformat(),
            "reschedule-start": iso(local(day_after(), 10)),
        },
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "No driver is free for the drop-off 09:30–10:00" in html
    assert 'id="reschedule-start-error"' in html
    appointment.refresh_from_db()
    assert appointment.start == local(tomorrow(), 10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reschedule-date": "10000-01-01"}, "Enter a date like 2030-05-01."),
        ({"reschedule-start": "noon"}, "Pick a start time"),
        (
            {"reschedule-start": "2001-01-01T10:00:00+08:00", "reschedule-date": "2001-01-01"},
            "That time has already passed.",
        ),
    ],
)
def test_bad_reschedules_are_answered_on_the_form(
    desk_client, desk, client_record, service, therapist, data, message
):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    form = {
        "reschedule-date": tomorrow().isoformat(),
        "reschedule-start": timezone.localtime(local(tomorrow(), 12)).isoformat(),
        **data,
    }
    response = desk_client.post(f"/desk/appointments/{appointment.pk}/reschedule/", form)
    assert response.status_code == 200
    assert message in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.start == local(tomorrow(), 10)


def test_cancel_needs_a_reason_and_then_cancels(
    desk_client, desk, client_record, service, therapist
):
    appointment = book(
        desk, client_record, service, therapist, local(tomorrow(), 10), needs_transport=True
    )
    url = f"/desk/appointments/{appointment.pk}/cancel/"
    refused = desk_client.post(url, {"cancel-reason": "  "})
    assert "Say why, for the appointment" in refused.content.decode()
    appointment.refresh_from_db()
    assert appointment.status == "pending"

    response = desk_client.post(url, {"cancel-reason": "Client is ill"})
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    assert appointment.transitions.get(action="cancel").reason == "Client is ill"
    assert set(appointment.trips.values_list("status", flat=True)) == {"cancelled"}
    # Once cancelled, doing it again is refused in the service's words.
    again = desk_client.post(url, {"cancel-reason": "again"})
    assert "Cannot cancel an appointment that is cancelled." in again.content.decode()


def test_no_show_through_the_page(desk_client, desk, client_record, service, therapist):
    appointment = book(desk, client_record, service, therapist, local(tomorrow(), 10))
    url = f"/desk/appointments/{appointment.pk}/no-show/"
    pending = desk_client.post(url, {"no_show-reason": ""})
    assert "Cannot no-show an appointment that is pending." in pending.content.decode()
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="accept")
    assert desk_client.post(url, {"no_show-reason": ""}).status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == "no_show"


# --- queues, retry, drivers ----------------------------------------------------------------


def test_queues_list_what_needs_a_person(desk_client, desk, client_record, service, therapist):
    # At ten in the morning, whatever the hour the test runs at: a trip for soon is then
    # within the dispatch horizon (90 minutes). Late in the evening a visit for soon
    # cannot end before midnight, so it starts after 00:15 (factories.soon), which from
    # about 21:00 to 22:50 is past the horizon, and the trip not yet on the queue.
    with time_machine.travel(local(timezone.localdate(), 10), tick=True):
        day = tomorrow()
        # Three hours apart: each holds Ana 45 minutes before to 2 hours after its start.
        pending = book(desk, client_record, service, therapist, local(day, 9))
        rejected = book(
            desk, factories.ClientFactory(name="Jose Rizal"), service, therapist, local(day, 12)
        )
        act_on_appointment(actor=therapist, appointment_id=rejected.pk, action="reject")
        rebooked = book(
            desk, factories.ClientFactory(name="Lito Cruz"), service, therapist, local(day, 15)
        )
        act_on_appointment(actor=therapist, appointment_id=rebooked.pk, action="reject")
        book(desk, rebooked.client, service, therapist, local(day, 18))  # already booked again
        late = factories.therapist(service, hours=(time(0), time(23, 59)))
        around_the_clock_driver()
        soon = soon_with_travel(service)
        with_trip = book(desk, client_record, service, late, soon, needs_transport=True)
        failed = Notification.objects.filter(appointment=pending, audience="client").get()
        Notification.objects.filter(pk=failed.pk).update(
            status="failed", last_error="no such number"
        )
        dispatch.run_pass()  # on commit in life; this test's transaction never commits

        html = desk_client.get("/desk/queues/").content.decode()
        deadline = timezone.localtime(pending.response_deadline).isoformat()
        assert f'data-countdown datetime="{deadline}"' in html
        assert f'href="/desk/appointments/new/?rebook={rejected.pk}"' in html
        assert f"rebook={rebooked.pk}" not in html
        assert "Drop-off · Maria Santos" in html
        assert "No driver was waiting in the queue." in html
        assert with_trip.pk
        assert "no such number" in html and "(0917 ••• 4567)" in html
        assert f'action="/desk/notifications/{failed.pk}/retry/"' in html
        tiles = desk_client.get("/desk/queues/summary/").content.decode()
        assert 'id="attention"' in tiles and "to rebook" in tiles


def test_queues_queries_are_bounded(desk_client, desk, service, django_assert_max_num_queries):
    therapists = [factories.therapist(service) for _ in range(10)]
    appointments = crowd(tomorrow(), therapists, service, 10, desk)
    Appointment.objects.filter(pk__in=[a.pk for a in appointments[::3]]).update(status="rejected")
    Notification.objects.bulk_create(
        Notification(
            key=f"n{i}",
            kind="booking_created",
            channel="sms",
            audience="client",
            client=a.client,
            to=a.client.phone,
            appointment=a,
            body="x",
            status="failed",
            last_error="down",
        )
        for i, a in enumerate(appointments)
    )
    # 12, and 2 for the online payments to check (flagged links, money to refund).
    with django_assert_max_num_queries(14):
        _, response = queries_of(desk_client, "/desk/queues/")
    assert "Showing the 50 latest." in response.content.decode()
    with django_assert_max_num_queries(12):
        queries_of(desk_client, "/desk/queues/summary/")


def test_retry_of_a_failed_message(desk_client, failed_notification):
    response = desk_client.post(f"/desk/notifications/{failed_notification.pk}/retry/")
    assert response.status_code == 302 and response.url == "/desk/queues/"
    failed_notification.refresh_from_db()
    assert (failed_notification.status, failed_notification.attempts) == ("pending", 0)
    again = desk_client.post(
        f"/desk/notifications/{failed_notification.pk}/retry/", follow=True
    ).content.decode()
    assert "This message is pending now, not failed: nothing to retry." in again
    missing = desk_client.post("/desk/notifications/999999/retry/", follow=True)
    assert "There is no notification with id 999999." in missing.content.decode()


def test_retry_from_the_queues_with_htmx_redraws_them(desk_client, failed_notification):
    response = desk_client.post(
        f"/desk/notifications/{failed_notification.pk}/retry/", headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith("{#") is False and 'id="queues"' in html
    assert f'id="failed-{failed_notification.pk}"' not in html
    assert 'id="messages" class="messages" hx-swap-oob="true"' in html
    assert "will be sent again" in html


def test_retry_from_the_appointment_goes_back_to_it(desk_client, failed_notification):
    response = desk_client.post(
        f"/desk/notifications/{failed_notification.pk}/retry/", {"back": "appointment"}
    )
    assert response.url == f"/desk/appointments/{failed_notification.appointment_id}/"


def test_retry_is_a_post(desk_client, failed_notification):
    assert (
        desk_client.get(f"/desk/notifications/{failed_notification.pk}/retry/").status_code == 405
    )


def test_drivers_panel_shows_the_queue_in_order_and_each_drivers_trip(
    desk_client, desk, client_record, service, therapist
):
    from scheduling.services.trips import set_shift

    first = factories.driver(first_name="Dan", last_name="Lim")
    second = factories.driver(first_name="Eva", last_name="Go")
    factories.driver(first_name="Gil", last_name="Mendoza")
    set_shift(driver=first, on_shift=True)
    set_shift(driver=second, on_shift=True)
    DriverProfile.objects.filter(user=second).update(
        available_since=timezone.now() - timedelta(hours=1)
    )
    appointment = book(
        desk,
        client_record,
        service,
        therapist,
        local(tomorrow(), 10),
        needs_transport=True,
        address="7 Palm Rd",
    )
    Trip.objects.filter(appointment=appointment, leg="dropoff").update(
        status="en_route", driver=first
    )
    DriverProfile.objects.filter(user=first).update(available_since=None)
    html = desk_client.get("/desk/drivers/").content.decode()
    queue = html[html.index('class="driver-queue"') : html.index('id="d-shift"')]
    assert "Eva Go" in queue and "Dan Lim" not in queue
    assert "Drop-off · Maria Santos" in html and "7 Palm Rd" in html and "En route" in html
    assert "Off shift: Gil Mendoza" in html
    summary = desk_client.get("/desk/drivers/summary/").content.decode()
    assert "1 driving" in summary and "Eva Go" in summary


def test_drivers_queries_are_bounded(desk_client, django_assert_max_num_queries):
    from scheduling.services.trips import set_shift

    for _ in range(20):
        set_shift(driver=factories.driver(), on_shift=True)
    with django_assert_max_num_queries(9):
        _, response = queries_of(desk_client, "/desk/drivers/")
    assert response.content.decode().count('class="pos"') == 20
