"""The desk taking control (issue 13), in headless Chromium against a real daphne:
reassigning from the appointment page moves it between the two therapists' open pages
without a reload; the client's page lists their history and edits their details;
"any therapist" booked from the desk form shows its decision on the appointment page."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from scheduling.models import Appointment, AppointmentStatus, Client, TherapistChoice
from scheduling.services.appointments import act_on_appointment
from tests import factories
from tests.browser.conftest import at, book, open_new_form, settled, slot_id, tomorrow
from tests.browser_support import APPOINTMENT_PAGE, browser_marks

pytestmark = browser_marks


@pytest.fixture
def desk_user(db):
    return factories.UserFactory(
        role="receptionist", username="joy", first_name="Joy", last_name="Reyes"
    )


@pytest.fixture
def bea(massage):
    return factories.therapist(massage, username="bea", first_name="Bea", last_name="Lim")


def test_reassigning_moves_it_between_the_therapists_pages_live(
    site, chromium, desk_user, massage, ana, bea, maria
):
    appointment = book(desk_user, maria, massage, ana, at(tomorrow(), 10))
    # Both therapists' phones are open before the desk acts.
    phones = {}
    for person in (ana, bea):
        phones[person] = site.page(chromium, person, phone=True)
        phones[person].goto(site.url("/therapist/"))
        site.wait_live(phones[person])
    card = f"#appointment-{appointment.pk}"
    phones[ana].locator(card).wait_for()
    assert phones[bea].locator(card).count() == 0

    desk = site.page(chromium, desk_user)
    desk.goto(site.url(f"/desk/appointments/{appointment.pk}/"))
    choices = desk.locator("#id_reassign-therapist")
    choices.locator("option", has_text="Bea Lim").wait_for(state="attached")
    settled(desk)
    choices.select_option(label="Bea Lim")
    desk.locator("#id_reassign-reason").fill("Ana called in sick")
    desk.get_by_role("button", name="Reassign").click()
    desk.locator("#messages", has_text="Given to Bea Lim").wait_for()

    # Without a reload: Ana's page drops it, Bea's shows it, waiting for her answer.
    phones[ana].locator(card).wait_for(state="detached")
    phones[bea].locator(card).wait_for()
    assert "Maria Santos" not in phones[ana].locator("main").inner_text()
    assert "Maria Santos" in phones[bea].locator(card).inner_text()
    appointment.refresh_from_db()
    assert (appointment.therapist, appointment.status) == (bea, AppointmentStatus.PENDING)
    # The appointment page says who did it and why.
    assert "Ana called in sick" in desk.locator("#log-title + .table-scroll").inner_text()
    site.screenshots(desk, "desk-reassigned")


def test_the_clients_page_lists_the_history(site, chromium, desk_user, massage, ana, maria):
    ahead = book(desk_user, maria, massage, ana, at(tomorrow(), 10))
    called_off = book(desk_user, maria, massage, ana, at(tomorrow(), 15))
    act_on_appointment(
        actor=desk_user, appointment_id=called_off.pk, action="cancel", reason="Not today"
    )
    last_week = at(tomorrow() - timedelta(days=8), 10)
    done = Appointment.objects.create(
        client=maria,
        service=massage,
        therapist=ana,
        start=last_week,
        end=last_week + timedelta(hours=1),
        blocked_until=last_week + timedelta(hours=1, minutes=15),
        price=Decimal("1200.00"),
        status=AppointmentStatus.COMPLETED,
    )

    page = site.page(chromium, desk_user)
    # From the appointment page, by the client's name.
    page.goto(site.url(f"/desk/appointments/{ahead.pk}/"))
    page.get_by_role("link", name="Maria Santos").first.click()
    page.wait_for_url(f"**/desk/clients/{maria.pk}/")
    upcoming = page.locator("#client-upcoming").inner_text()
    assert "Pending" in upcoming and "Cancelled" in upcoming and "Ana Cruz" in upcoming
    past = page.locator("#client-past").inner_text()
    assert "Completed" in past and "Swedish massage" in past
    assert page.locator("#client-messages").inner_text().count("Booking received") == 2
    assert "1,200.00 due" in page.locator("#client-payments").inner_text()
    # Each row opens its appointment.
    page.locator("#client-past").get_by_role("link").first.click()
    page.wait_for_url(f"**/desk/appointments/{done.pk}/")
    page.go_back()

    # The details are edited on the page, through the client service.
    page.get_by_text("Edit details").click()
    page.get_by_label("Phone").fill("0917 000")
    page.get_by_role("button", name="Save details").click()
    page.locator("#client-details .field-error").wait_for()
    assert Client.objects.get(pk=maria.pk).phone == "+639171234567"
    page.get_by_label("Phone").fill("0917 765 4321")
    page.get_by_label("Preferred therapist").select_option(label="Ana Cruz")
    page.get_by_role("button", name="Save details").click()
    page.locator("#messages", has_text="details are saved").wait_for()
    assert "0917 765 4321" in page.locator("#client-details").inner_text()
    maria.refresh_from_db()
    assert (maria.phone, maria.preferences) == ("+639177654321", {"therapist": ana.pk})
    site.screenshots(page, "desk-client")


def test_any_therapist_from_the_desk_form_shows_the_decision(
    site, chromium, desk_user, massage, ana, bea, maria
):
    # Ana already has a session that week: the rule gives the new one to Bea.
    book(desk_user, factories.ClientFactory(), massage, ana, at(tomorrow(), 15))
    page = open_new_form(site, chromium, desk_user)
    page.get_by_label("Search by name or phone").fill("Maria")
    page.get_by_role("radio", name="Maria Santos").check()
    settled(page)
    page.locator("#id_service").select_option(label=f"{massage.name} · 60 min · 1,200.00")
    page.locator("#id_therapist option", has_text="Ana Cruz").wait_for(state="attached")
    settled(page)
    assert page.locator("#id_therapist option").first.inner_text().startswith("Any therapist")
    page.locator(slot_id(at(tomorrow(), 10))).check()
    page.get_by_role("button", name="Book appointment").click()

    page.wait_for_url(APPOINTMENT_PAGE)
    appointment = Appointment.objects.get(client=maria)
    assert appointment.therapist == bea
    assert TherapistChoice.objects.filter(appointment=appointment).exists()
    decision = page.locator("section[aria-labelledby='choice-title']")
    text = decision.inner_text()
    assert "How the therapist was chosen" in text
    assert "Bea Lim" in text and "Ana Cruz" in text
    chosen = decision.locator("tr.chosen").inner_text()
    assert "Bea Lim" in chosen
    site.screenshots(page, "desk-any-therapist")
