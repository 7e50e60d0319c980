"""The receptionist's desk, through the Django test client on real PostgreSQL: every page
and fragment, its role gate, its query count, and the writes it makes through the
services (booking, reschedule, cancel, no-show, retry) with the ugly inputs too."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.models import (
    Appointment,
    Break,
    Notification,
    TimeOff,
    Trip,
)
from scheduling.services.appointments import act_on_appointment, create_appointment
from tests import factories

pytestmark = pytest.mark.postgres


def tomorrow() -> date:
    return timezone.localdate() + timedelta(days=1)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def book(desk, client_record, service, therapist, start, **extra) -> Appointment:
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
        "/desk/drivers/",
        "/desk/drivers/fragment/",
        "/desk/appointments/new/",
        "/desk/appointments/new/times/",
        "/desk/clients/search/?q=mar",
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


@pytest.mark.parametrize("role", ["therapist", "driver"])
def test_other_roles_get_403_everywhere(client, role, booked, failed_notification):
    signed_in(client, factories.UserFactory(role=role))
    for url in pages(booked.pk, failed_notification.pk):
        response = client.get(url)
        assert response.status_code == 403, url
    posts = [
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
    plain = book(desk, client_record, service, therapist, local(day, 9))
    moving = book(desk, client_record, service, therapist, local(day, 11), needs_transport=True)
    driver = factories.driver(first_name="Dan", last_name="Lim")
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
