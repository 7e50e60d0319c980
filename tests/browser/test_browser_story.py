"""A morning of the business, end to end, in three browsers at once against a real daphne
and Redis: the receptionist books through the form; the therapist's open page shows the
booking without a reload and the therapist accepts; the desk's board follows live; a
driver goes on shift, is given the drop-off, departs and arrives while the desk watches.

Nothing here calls a service directly: every change is a click in a page."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from scheduling.models import Appointment, DriverProfile, Trip
from tests import factories
from tests.browser.conftest import settled
from tests.browser_support import APPOINTMENT_PAGE, browser_marks
from tests.live_support import Daphne

pytestmark = browser_marks


@pytest.fixture(scope="module")
def browser_daphne(browser_redis, django_db_setup, django_db_blocker):
    """This module's own daphne, with a dispatch horizon of three days: tomorrow's
    drop-off is dispatched as soon as a driver goes on shift, whatever the hour the test
    runs at (the dispatch pass runs inside daphne, on the shift change's commit)."""
    with django_db_blocker.unblock():
        server = Daphne(browser_redis, DISPATCH_HORIZON_MINUTES=str(3 * 24 * 60)).start()
    yield server
    server.stop()


def tomorrow_at(hour: int) -> datetime:
    day = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime.combine(day, time(hour)))


def test_a_booking_travels_from_the_desk_to_the_therapist_and_the_driver_live(site, chromium):
    massage = factories.ServiceFactory(
        name="Swedish massage", duration_minutes=60, buffer_minutes=15
    )
    ana = factories.therapist(massage, username="ana", first_name="Ana", last_name="Cruz")
    ben = factories.driver(username="ben", first_name="Ben", last_name="Reyes")
    rita = factories.UserFactory(
        role="receptionist", username="rita", first_name="Rita", last_name="Santos"
    )
    factories.ClientFactory(
        name="Maria Santos", phone="+639171234567", address="12 Acacia St, Makati"
    )
    start = tomorrow_at(10)

    # The therapist's and the driver's phones are open before anything is booked.
    therapist = site.page(chromium, ana, phone=True)
    therapist.goto(site.url("/therapist/"))
    site.wait_live(therapist)
    driver = site.page(chromium, ben, phone=True)
    driver.goto(site.url("/driver/"))
    site.wait_live(driver)

    # The desk books through the form.
    desk = site.page(chromium, rita)
    desk.goto(site.url(f"/desk/appointments/new/?date={start.date().isoformat()}"))
    desk.get_by_label("Search by name or phone").fill("Maria")
    desk.get_by_role("radio", name="Maria Santos").check()
    settled(desk)
    desk.locator("#id_service").select_option(value=str(massage.pk))
    desk.locator("#id_therapist option", has_text="Ana Cruz").wait_for(state="attached")
    settled(desk)
    # Getting there comes before the times: each of these asks for the times again, and a
    # time chosen before the last answer arrived would be swapped away with the old list.
    desk.get_by_label("Needs transport").check()
    settled(desk)
    desk.locator("#id_therapist").select_option(value=str(ana.pk))
    settled(desk)
    desk.locator(f"#start-{timezone.localtime(start):%H%M}").check()
    desk.get_by_role("button", name="Book appointment").click()
    desk.wait_for_url(APPOINTMENT_PAGE)
    appointment = Appointment.objects.get()
    assert appointment.needs_transport and appointment.status == "pending"

    # The therapist's page shows it without a reload.
    card = therapist.locator(f"#appointment-{appointment.pk}")
    card.wait_for()
    assert "Maria Santos" in card.inner_text()

    # The desk watches tomorrow's board while the therapist accepts.
    desk.goto(site.url(f"/desk/?date={start.date().isoformat()}"))
    site.wait_live(desk)
    block = f"#block-{appointment.pk}"
    desk.locator(f"{block}.block-pending").wait_for()
    card.get_by_role("button", name="Accept").click()
    desk.locator(f"{block}.block-confirmed").wait_for()

    # A driver goes on shift and is given the drop-off at once; the desk sees who.
    driver.get_by_role("button", name="Go on shift").click()
    dropoff = Trip.objects.get(appointment=appointment, leg="dropoff")
    trip_card = driver.locator(f"#trip-{dropoff.pk}")
    trip_card.wait_for()
    desk.locator(f"{block}:has-text('Ben Reyes')").wait_for()
    assert not DriverProfile.objects.get(user=ben).available_since  # out of the queue

    # Depart and arrive, each followed live on the desk's board.
    trip_card.get_by_role("button", name="On my way").click()
    desk.locator(f"{block}:has-text('En route')").wait_for()
    driver.locator(f"#trip-{dropoff.pk}").get_by_role("button", name="I've arrived").click()
    desk.locator(f"{block}:has-text('Arrived')").wait_for()
    dropoff.refresh_from_db()
    assert dropoff.status == "arrived" and dropoff.driver_id == ben.pk
    site.screenshots(desk, "story-desk-board")
    for page in (desk, therapist, driver):
        page.context.close()
