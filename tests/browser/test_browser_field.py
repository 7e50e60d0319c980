"""The phone pages and the reports in headless Chromium against a real daphne: a booking
reaches the therapist's open page without a reload and is accepted there; a driver goes
on shift, is given a trip live and drives it with the buttons; the reports show a
month. Each leaves screenshots in var/screenshots/."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from scheduling.models import DriverProfile, Trip
from scheduling.selectors.reports import default_range
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.trips import act_on_trip, assign_trip
from tests import factories
from tests.browser_support import browser_marks
from tests.factories import Book

pytestmark = browser_marks


def day_at(days: int, hour: int, minute: int = 0) -> datetime:
    day = timezone.localdate() + timedelta(days=days)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def early_today() -> datetime:
    """'Now' for bookings made this morning: today's sessions, whatever the hour the test
    runs at."""
    return day_at(0, 6)


@pytest.fixture
def booker(desk, service):
    def book(therapist, start: datetime, client=None, **fields):
        client = client or factories.ClientFactory()
        return create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
            **fields,
        )

    return book


@pytest.fixture
def wide_horizon(settings):
    """Tomorrow's trips are within the dispatch horizon now, whatever the time of day: the
    booking's dispatch pass runs on its commit in this process (eager Celery)."""
    settings.SCHEDULING = {**settings.SCHEDULING, "DISPATCH_HORIZON_MINUTES": 3 * 24 * 60}


def test_a_booking_reaches_the_therapists_open_page_and_is_accepted(
    site, chromium, therapist, booker
):
    clients = {
        name: factories.ClientFactory(name=name, address=address, notes=notes)
        for name, address, notes in [
            ("Maria Santos", "12 Mabini St, Poblacion, Makati", "Lower back pain"),
            ("Jose Reyes", "Unit 8B, One Salcedo Place, Makati", ""),
            ("Liza Tan", "45 Jupiter St, Bel-Air, Makati", "Allergic to lavender"),
        ]
    }
    factories.driver()  # the bookings with transport need a driver who works then
    done = booker(therapist, day_at(0, 9), clients["Jose Reyes"], now=early_today())
    later = booker(
        therapist,
        day_at(0, 13),
        clients["Liza Tan"],
        needs_transport=True,
        notes="Gate code 2231",
        now=early_today(),
    )
    for action in ("accept", "start", "complete"):
        act_on_appointment(actor=therapist, appointment_id=done.pk, action=action)
    act_on_appointment(actor=therapist, appointment_id=later.pk, action="accept")

    page = site.page(chromium, therapist, phone=True)
    page.goto(site.url("/therapist/"))
    site.wait_live(page)
    assert page.locator(".appt").count() == 2

    booked = booker(
        therapist,
        day_at(1, 10),
        clients["Maria Santos"],
        needs_transport=True,
        notes="Prefers firm pressure",
    )

    card = page.locator(f"#appointment-{booked.pk}")
    card.wait_for()  # no reload: the stream said so and the region was fetched again
    assert card.locator("[data-status]").inner_text() == "Waiting for you"
    assert "Maria Santos" in card.inner_text()
    assert "Prefers firm pressure" in card.inner_text()
    page.wait_for_function(
        "document.querySelector('time[data-countdown]').textContent.endsWith('s left')"
    )
    site.screenshots(page, "therapist-day")

    card.get_by_role("button", name="Accept").click()

    page.locator(f"#appointment-{booked.pk} [data-status='confirmed']").wait_for()
    assert page.locator("#messages").inner_text().startswith("Accepted: Maria Santos")
    booked.refresh_from_db()
    assert booked.status == "confirmed"
    page.context.close()


def test_a_reason_being_typed_survives_a_live_update_and_rejects(site, chromium, therapist, booker):
    first = booker(therapist, day_at(1, 10))
    page = site.page(chromium, therapist, phone=True)
    page.goto(site.url("/therapist/"))
    site.wait_live(page)
    card = page.locator(f"#appointment-{first.pk}")
    card.get_by_text("Can't take this booking?").click()
    reason = card.get_by_label("Reason")
    reason.fill("Car broke down")

    second = booker(therapist, day_at(1, 14))  # an event arrives while the reason is typed
    page.wait_for_timeout(1000)

    assert page.locator(f"#appointment-{second.pk}").count() == 0  # the refresh waits
    assert reason.input_value() == "Car broke down"
    card.get_by_role("button", name="Reject booking").click()
    page.locator(f"#appointment-{first.pk} [data-status='rejected']").wait_for()
    page.locator(f"#appointment-{second.pk}").wait_for()  # and the list is up to date
    first.refresh_from_db()
    assert first.status == "rejected"
    page.context.close()


def test_a_driver_goes_on_shift_gets_a_trip_live_and_drives_it(
    site, chromium, service, desk, driver_with_history, booker, wide_horizon
):
    driver = driver_with_history
    ana = factories.therapist(service, first_name="Ana", last_name="Cruz")
    page = site.page(chromium, driver, phone=True)
    page.goto(site.url("/driver/"))
    site.wait_live(page)

    page.get_by_role("button", name="Go on shift").click()
    page.locator("[data-queue-position='1']").wait_for()
    assert DriverProfile.objects.get(user=driver).on_shift
    site.screenshots(page, "driver-queue")

    client = factories.ClientFactory(
        name="Maria Santos", address="12 Mabini St, Poblacion, Makati", notes="Dog in the yard"
    )
    booked = booker(ana, day_at(1, 10), client, needs_transport=True, notes="Ring twice")
    dropoff = booked.trips.get(leg="dropoff")

    card = page.locator(f"#trip-{dropoff.pk}")
    card.wait_for()  # assigned on the booking's commit, shown live
    assert card.locator("[data-status]").inner_text() == "Assigned to you"
    assert "12 Mabini St" in card.inner_text()
    page.get_by_text("Driving now").wait_for()  # out of the queue, live too
    html = page.content()
    assert "Dog in the yard" not in html and "Ring twice" not in html
    assert client.phone not in html

    # A second trip for later, given by the platform while the first is in hand.
    second = booker(ana, day_at(1, 14), needs_transport=True).trips.get(leg="dropoff")
    assign_trip(trip_id=second.pk, driver_id=driver.pk)
    page.locator(f"#trip-{second.pk}").wait_for()
    site.screenshots(page, "driver-shift")

    for button, status in [
        ("On my way", "en_route"),
        ("I've arrived", "arrived"),
        ("Trip done", "done"),
    ]:
        page.locator(f"#trip-{dropoff.pk}").get_by_role("button", name=button).click()
        if status == "done":  # off the list of trips in hand
            page.locator(f"#trip-{dropoff.pk}").wait_for(state="detached")
        else:
            page.locator(f"#trip-{dropoff.pk} [data-status='{status}']").wait_for()
        dropoff.refresh_from_db()
        assert dropoff.status == status
    # The later trip is now the one in hand.
    page.locator(f"#trip-{second.pk}.is-current").wait_for()
    page.context.close()


@pytest.fixture
def driver_with_history(desk, service, booker):
    """A driver who drove one trip this morning (the 'done today' list)."""
    driver = factories.driver(first_name="Ben", last_name="Reyes")
    early = booker(
        factories.therapist(service, first_name="Rosa", last_name="Lim"),
        day_at(0, 9),
        factories.ClientFactory(address="7 Paseo de Roxas, Makati"),
        needs_transport=True,
        now=early_today(),
    )
    for trip in early.trips.order_by("id"):
        if trip.leg == "dropoff":
            assign_trip(trip_id=trip.pk, driver_id=driver.pk)
            for action in ("depart", "arrive", "complete"):
                act_on_trip(actor=driver, trip_id=trip.pk, action=action)
        else:  # not to be dispatched to this driver when the shift starts
            act_on_trip(actor=desk, trip_id=trip.pk, action="cancel")
    assert not Trip.objects.filter(status="queued").exists()
    return driver


def test_the_reports_page_with_a_month_of_figures(site, chromium, manager, service):
    book = Book(service)
    first, last = default_range(timezone.localdate())
    team = [
        factories.therapist(service, first_name=first_name, last_name=last_name)
        for first_name, last_name in [
            ("Ana", "Cruz"),
            ("Bea", "Santos"),
            ("Carla", "Mendoza"),
            ("Dina", "Villanueva"),
        ]
    ]
    drivers = [
        factories.driver(first_name=first_name, last_name=last_name)
        for first_name, last_name in [("Ben", "Reyes"), ("Carlo", "Garcia"), ("Dante", "Lopez")]
    ]
    statuses = ["completed"] * 6 + ["confirmed", "pending", "cancelled", "no_show", "rejected"]
    days = (last - first).days + 1
    for n in range(60):
        therapist = team[n % len(team) if n % 7 else 0]
        day = first + timedelta(days=n % days)
        start = timezone.make_aware(datetime.combine(day, time(9 + (n // days) * 2)))
        status = statuses[(n * 5) % len(statuses)]
        price = ("1200.00", "1500.00", "2400.00")[n % 3]
        appointment = book.appointment(therapist, start, status, price)
        if status == "completed" and n % 2:
            driver = drivers[n % len(drivers)]
            book.trip(appointment, driver, start - timedelta(minutes=45), "done", "dropoff")
            book.trip(appointment, driver, start + timedelta(minutes=60), "done", "pickup")

    page = site.page(chromium, manager)
    page.goto(site.url("/reports/"))

    revenue = page.locator("[data-figure='revenue']").inner_text()
    assert Decimal(revenue.replace(",", "")) > 0
    assert page.locator("#per-therapist tbody tr").count() == 4
    assert page.locator("#per-driver tbody tr").count() == 3
    site.screenshots(page, "reports")

    # A range nobody meant is answered on the page.
    # By id: "To" alone also finds the revenue chart, whose accessible name says "… to …".
    page.locator("#id_from").fill(f"{last:%Y-%m-%d}")
    page.locator("#id_to").fill(f"{first:%Y-%m-%d}")
    page.get_by_role("button", name="Show figures").click()
    page.get_by_text("The end date is before the start date.").wait_for()
    page.context.close()
