"""The client's page at the desk (issue 13 item 5): their details and the edit form
(through update_client), the appointments ahead and behind, no-shows and late
cancellations, the messages sent, payments and what is owed; bounded queries.

The clock is fixed with time_machine: the story runs on 2030-03-04 in Manila."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling.errors import ValidationFailed
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Audience,
    Channel,
    Client,
    Notification,
    NotificationStatus,
    Payment,
    PaymentMethod,
    PaymentState,
)
from scheduling.selectors import client_history
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.clients import update_client
from scheduling.services.payments import record_collection, verify_payment
from tests import factories

pytestmark = pytest.mark.django_db
MANILA = "+08:00"
# Well before the day booked; the therapist works 08:00-20:00 every day.
BOOKED_AT = datetime.fromisoformat(f"2030-03-01T09:00:00{MANILA}")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(f"2030-03-{day:02d}T{hour:02d}:{minute:02d}:00{MANILA}")


def text_of(response) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def page(client, pk: int, **params):
    return client.get(f"/desk/clients/{pk}/", params)


@pytest.fixture
def desk_client(client, desk):
    client.force_login(desk)
    return client


@pytest.fixture
def story(desk, manager, therapist, service, client_record):
    """Maria's month: one completed and paid in part, one no-show, one cancelled late
    (the therapist had left), one cancelled early, and one booked ahead."""

    def book(start):
        with time_machine.travel(BOOKED_AT, tick=False):
            return create_appointment(
                actor=desk,
                client_id=client_record.pk,
                service_id=service.pk,
                therapist_id=therapist.pk,
                start=start,
            )

    def act(appointment, actor, action, when, reason=""):
        with time_machine.travel(when, tick=False):
            return act_on_appointment(
                actor=actor, appointment_id=appointment.pk, action=action, reason=reason
            )

    done = book(at(2, 10))
    act(done, therapist, "accept", at(1, 9, 30))
    act(done, therapist, "start", at(2, 10))
    act(done, therapist, "complete", at(2, 11))
    with time_machine.travel(at(2, 11, 5), tick=False):
        cash = record_collection(
            actor=therapist, appointment_id=done.pk, method="cash", amount="500.00"
        )
        verify_payment(actor=desk, payment_id=cash.pk)
    absent = book(at(3, 10))
    act(absent, therapist, "accept", at(1, 9, 30))
    act(absent, therapist, "no_show", at(3, 10, 20), "Nobody at the door")
    late = book(at(3, 15))
    # The therapist leaves base at 14:15 (45 min travel): a cancel at 14:30 is late.
    act(late, desk, "cancel", at(3, 14, 30), "Client called: not today")
    early = book(at(4, 15))
    act(early, desk, "cancel", at(3, 9), "Client moved away for the week")
    ahead = book(at(9, 10))
    return {"done": done, "absent": absent, "late": late, "early": early, "ahead": ahead}


NOW = at(5, 12)


# --- who may open it ---------------------------------------------------------------------


def test_receptionists_and_managers_only(client, desk, manager, therapist, client_record):
    url = f"/desk/clients/{client_record.pk}/"
    assert client.get(url).status_code == 302  # to sign in
    for person, status in ((desk, 200), (manager, 200), (therapist, 403)):
        client.force_login(person)
        assert client.get(url).status_code == status, person.role
        assert client.post(url, {"client-name": "X"}).status_code in (status, 400)
    client.force_login(factories.driver())
    assert client.get(url).status_code == 403
    assert client.post(url, {"client-name": "Taken over"}).status_code == 403
    client_record.refresh_from_db()
    assert client_record.name == "Maria Santos"


def test_unknown_client_is_404(desk_client):
    assert page(desk_client, 999999).status_code == 404


# --- what it shows -----------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_history_counts_messages_and_money(desk_client, desk, story, client_record):
    desk_client.force_login(desk)  # a session of the travelled-to clock
    response = page(desk_client, client_record.pk)
    assert response.status_code == 200
    html = response.content.decode()
    text = text_of(response)
    # Each appointment links to its page; upcoming before past.
    for appointment in story.values():
        assert f'href="/desk/appointments/{appointment.pk}/"' in html
    upcoming, past = html.split('id="client-past"')
    assert f"/desk/appointments/{story['ahead'].pk}/" in upcoming
    assert f"/desk/appointments/{story['done'].pk}/" in past
    assert "Ana Cruz" in text and "Swedish massage" in text
    for label in ("Completed", "No-show", "Cancelled", "Pending"):
        assert label.lower() in text.lower()
    counts = client_history.counts(client_record)
    assert counts.no_shows == 1
    assert counts.cancelled == 2
    assert counts.late_cancellations == 1  # the 14:30 cancel, not the day-before one
    assert re.search(r"1 no-show\b", text)
    assert re.search(r"1 late cancellation\b.*of 2 cancelled", text)
    # Messages: the bookings', the confirmations', the cancellations' (to Maria only).
    sent = Notification.objects.filter(client=client_record)
    assert sent.exists()
    assert "Booking received" in text and "Booking cancelled" in text
    assert not Notification.objects.filter(client=client_record, body="").exists()
    assert sent.first().body not in text  # kinds and states, never the bodies
    # Money: 500 of the completed session's price received; the no-show owes nothing.
    price = story["done"].price
    owed = client_history.owed(client_record)
    assert owed.charged == price
    assert owed.paid == Decimal("500.00")
    assert owed.due == price - Decimal("500.00")
    assert f"{owed.due:,.2f} due" in text
    assert "500.00 PHP" in text and "Succeeded" in text


@time_machine.travel(NOW, tick=False)
def test_search_results_and_the_appointment_page_link_to_it(
    desk_client, desk, story, client_record
):
    desk_client.force_login(desk)
    found = desk_client.post("/desk/clients/search/", {"q": "Maria"})
    assert f'href="/desk/clients/{client_record.pk}/"' in found.content.decode()
    detail = desk_client.get(f"/desk/appointments/{story['done'].pk}/")
    assert f'href="/desk/clients/{client_record.pk}/"' in detail.content.decode()


def test_owed_never_counts_an_overpayment_against_another_session(desk, therapist, client_record):
    """Each session's due stops at zero, as balance_of has it."""
    first = paid_session(client_record, therapist, desk, at(2, 10), paid="1500.00")
    paid_session(client_record, therapist, desk, at(3, 10), paid=None)
    owed = client_history.owed(client_record)
    assert owed.paid == Decimal("1500.00")
    assert owed.due == first.price  # the second's price; the first's extra does not offset


def test_late_cancellation_is_from_the_time_the_therapist_leaves(desk, therapist, service):
    maria = factories.ClientFactory()
    with time_machine.travel(BOOKED_AT, tick=False):
        booked = create_appointment(
            actor=desk,
            client_id=maria.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=at(3, 15),
        )
    leaves = booked.busy_from
    assert leaves == at(3, 15) - timedelta(minutes=booked.travel_minutes)
    with time_machine.travel(leaves - timedelta(seconds=1), tick=False):
        act_on_appointment(actor=desk, appointment_id=booked.pk, action="cancel", reason="x")
    assert client_history.counts(maria).late_cancellations == 0
    with time_machine.travel(BOOKED_AT, tick=False):
        again = create_appointment(
            actor=desk,
            client_id=maria.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=at(3, 15),
        )
    with time_machine.travel(again.busy_from, tick=False):
        act_on_appointment(actor=desk, appointment_id=again.pk, action="cancel", reason="x")
    assert client_history.counts(maria).late_cancellations == 1


# --- bounded queries ---------------------------------------------------------------------


def paid_session(client, therapist, desk, start, *, paid: str | None, status="completed"):
    appointment = Appointment.objects.create(
        client=client,
        service=therapist.therapist_profile.services.first(),
        therapist=therapist,
        start=start,
        end=start + timedelta(hours=1),
        blocked_until=start + timedelta(hours=1),
        price=Decimal("1200.00"),
        status=status,
    )
    if paid:
        Payment.objects.create(
            appointment=appointment,
            amount=Decimal(paid),
            method=PaymentMethod.CASH,
            status=PaymentState.SUCCEEDED,
            collected_by=therapist,
            verified_by=desk,
            verified_at=start,
            settled_at=start,
        )
    return appointment


def history_of(client, therapist, desk, n: int) -> None:
    """n past sessions (paid, with a message each) and n ahead."""
    statuses = [AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW, AppointmentStatus.CANCELLED]
    for i in range(n):
        start = at(1, 8) - timedelta(days=i + 1)
        appointment = paid_session(
            client, therapist, desk, start, paid="600.00", status=statuses[i % 3]
        )
        Notification.objects.create(
            key=f"test:{client.pk}:{i}",
            kind="booking_created",
            channel=Channel.SMS,
            audience=Audience.CLIENT,
            client=client,
            to=client.phone,
            appointment=appointment,
            body="…",
            status=NotificationStatus.SENT,
        )
        Appointment.objects.create(
            client=client,
            service=appointment.service,
            therapist=factories.therapist(appointment.service),
            start=NOW + timedelta(days=i + 1),
            end=NOW + timedelta(days=i + 1, hours=1),
            blocked_until=NOW + timedelta(days=i + 1, hours=1),
            price=Decimal("1200.00"),
        )


@time_machine.travel(NOW, tick=False)
def test_queries_do_not_grow_with_the_history(desk_client, desk, therapist):
    desk_client.force_login(desk)
    small, large = factories.ClientFactory(), factories.ClientFactory()
    history_of(small, therapist, desk, 2)
    history_of(large, therapist, desk, 45)

    def queries(pk: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = page(desk_client, pk)
        assert response.status_code == 200
        return len(captured.captured_queries)

    few, many = queries(small.pk), queries(large.pk)
    assert few == many, (few, many)
    assert many <= 20
    # The past comes a page at a time; the last page holds the oldest.
    response = page(desk_client, large.pk, page="3")
    assert "Page 3 of 3" in text_of(response)
    assert page(desk_client, large.pk, page="x" * 500).status_code == 200


# --- the edit form -------------------------------------------------------------------------


def form_of(client: Client, **changes) -> dict:
    data = {
        "client-name": client.name,
        "client-phone": client.phone,
        "client-email": client.email,
        "client-address": client.address,
        "client-area": client.area_id or "",
        "client-notes": client.notes,
        "client-therapist": "",
        "client-channel": "",
    }
    return {**data, **{f"client-{k}": v for k, v in changes.items()}}


def test_edit_goes_through_the_client_service(desk_client, client_record, therapist):
    area = factories.ServiceAreaFactory(name="Makati", travel_minutes=30)
    client_record.preferences = {"note": "kept"}
    client_record.save()
    response = desk_client.post(
        f"/desk/clients/{client_record.pk}/",
        form_of(
            client_record,
            name="  Maria S. Reyes ",
            phone="0917 555 0101",
            email="maria@example.com",
            area=area.pk,
            notes="Gate code 1234",
            therapist=therapist.pk,
            channel="whatsapp",
        ),
    )
    assert response.status_code == 302
    client_record.refresh_from_db()
    assert client_record.name == "Maria S. Reyes"
    assert client_record.phone == "+639175550101"  # normalised by the service
    assert client_record.phone_digits == "639175550101"
    assert client_record.area == area
    assert client_record.preferences == {
        "note": "kept",
        "therapist": therapist.pk,
        "channel": "whatsapp",
    }
    shown = text_of(desk_client.get(f"/desk/clients/{client_record.pk}/"))
    assert "details are saved" in shown
    assert "Ana Cruz" in shown and "WhatsApp" in shown and "Makati" in shown
    # Clearing the preferences removes them.
    desk_client.post(f"/desk/clients/{client_record.pk}/", form_of(client_record))
    client_record.refresh_from_db()
    assert client_record.preferences == {"note": "kept"}


UGLY = [
    ({"name": "   "}, "A name is required"),
    ({"phone": "not a phone"}, "phone"),
    ({"phone": ""}, "phone"),
    ({"phone": "+63917" + "9" * 40}, "at most 32"),
    ({"email": "maria@"}, "Check the email address"),
    ({"area": "999999"}, "area"),
    ({"area": "-1"}, "Choose an area from the list"),
    ({"area": str(2**63)}, "area"),
    ({"therapist": "999999"}, "preferred therapist"),
    ({"therapist": "abc"}, "Choose a therapist from the list"),
    ({"channel": "pigeon"}, "Choose SMS, WhatsApp or email"),
    ({"notes": "x" * 5000}, "at most 2000"),
    ({"name": "\x00"}, "Null characters are not allowed"),
]


@pytest.mark.parametrize(("changes", "message"), UGLY)
def test_ugly_input_is_a_clear_form_error_and_nothing_is_written(
    desk_client, client_record, changes, message
):
    before = Client.objects.values().get(pk=client_record.pk)
    response = desk_client.post(
        f"/desk/clients/{client_record.pk}/",
        form_of(client_record, **{"name": "Changed", **changes}),
    )
    assert response.status_code == 400
    assert message.lower() in text_of(response).lower(), text_of(response)[:2000]
    assert Client.objects.values().get(pk=client_record.pk) == before


def test_a_phone_someone_else_has_is_refused_with_their_name(desk_client, client_record):
    other = factories.ClientFactory(name="Joy Lim", phone="+639178887777")
    response = desk_client.post(
        f"/desk/clients/{client_record.pk}/", form_of(client_record, phone="0917 888 7777")
    )
    assert response.status_code == 400
    assert f"already belongs to Joy Lim (client #{other.pk})" in text_of(response)
    client_record.refresh_from_db()
    assert client_record.phone == "+639171234567"


def test_the_preferred_therapist_must_be_a_therapist(client_record, desk, therapist):
    for bad in (desk.pk, 999999, "7", True, 2**70, -1):
        with pytest.raises(ValidationFailed) as refused:
            update_client(client=client_record, preferences={"therapist": bad})
        assert "preferred therapist" in refused.value.errors["preferences"][0]
    therapist.is_active = False
    therapist.save()
    with pytest.raises(ValidationFailed):
        update_client(client=client_record, preferences={"therapist": therapist.pk})
    client_record.refresh_from_db()
    assert client_record.preferences == {}
