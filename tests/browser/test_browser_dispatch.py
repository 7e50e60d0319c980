"""Manual dispatch in headless Chromium against a real daphne (issue 13 item 3): the desk
gives a trip to a driver by hand from the appointment page, and the driver's open phone
page shows it at once, without a reload; taken back, it leaves the phone at once too.
Screenshots in var/screenshots/."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from scheduling.models import DispatchDecision, Trip
from scheduling.services.appointments import create_appointment
from scheduling.services.trips import set_shift
from tests import factories
from tests.browser_support import browser_marks

pytestmark = browser_marks


def tomorrow_at(hour: int) -> datetime:
    day = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


@pytest.fixture
def booked(desk, service):
    """Ana's 10:00 tomorrow with transport: beyond the dispatch horizon, so its trips wait
    in the queue until someone gives them."""
    ana = factories.therapist(service, first_name="Ana", last_name="Cruz")
    client = factories.ClientFactory(name="Maria Santos", address="12 Mabini St, Makati")
    liza = factories.driver(first_name="Liza", last_name="Reyes")
    set_shift(driver=liza, on_shift=True)
    appointment = create_appointment(
        actor=desk,
        client_id=client.pk,
        service_id=service.pk,
        therapist_id=ana.pk,
        start=tomorrow_at(10),
        needs_transport=True,
    )
    return appointment, liza


def test_a_trip_given_by_hand_shows_on_the_drivers_phone_at_once(site, chromium, desk, booked):
    appointment, liza = booked
    dropoff = appointment.trips.get(leg="dropoff")
    assert dropoff.status == "queued"

    phone = site.page(chromium, liza, phone=True)
    phone.goto(site.url("/driver/"))
    site.wait_live(phone)
    phone.locator("[data-queue-position='1']").wait_for()

    desk_page = site.page(chromium, desk)
    desk_page.goto(site.url(f"/desk/appointments/{appointment.pk}/"))
    panel = desk_page.locator(f"#dispatch-trip-{dropoff.pk}")
    panel.get_by_label("Driver for the drop-off").select_option(str(liza.pk))
    panel.get_by_label("Why").fill("Her motorbike is nearest")
    panel.get_by_role("button", name="Assign").click()
    desk_page.get_by_text("Drop-off trip given to Liza Reyes").wait_for()
    site.screenshots(desk_page, "desk-dispatch-by-hand")

    # On her phone, without a reload: the trip, and out of the queue.
    card = phone.locator(f"#trip-{dropoff.pk}")
    card.wait_for()
    assert card.locator("[data-status]").inner_text() == "Assigned to you"
    assert "12 Mabini St" in card.inner_text()
    phone.get_by_text("Driving now").wait_for()
    site.screenshots(phone, "driver-given-by-hand")
    decision = DispatchDecision.objects.get(trip=dropoff)
    assert (decision.decided_by, decision.reason) == (desk, "Her motorbike is nearest")

    # Taken back: it leaves her phone at once, and she is first in the queue again.
    panel = desk_page.locator(f"#dispatch-trip-{dropoff.pk}")
    panel.get_by_label("Why take it back from Liza Reyes").fill("Flat tyre")
    panel.get_by_role("button", name="Take back into the queue").click()
    desk_page.get_by_text("Drop-off trip taken back from Liza Reyes").wait_for()
    card.wait_for(state="detached")
    phone.locator("[data-queue-position='1']").wait_for()
    assert Trip.objects.get(pk=dropoff.pk).status == "queued"
    phone.context.close()
    desk_page.context.close()
