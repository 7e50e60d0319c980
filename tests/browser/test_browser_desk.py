"""The receptionist's desk in headless Chromium against a real daphne: booking through the
form (with the mouse, and with the keyboard alone), the inline conflict, a time no driver
can take refused beside it, the board changing live when another session books and
shading each session's travel, retrying a failed message, and a picture of every desk
page at desktop and phone widths (var/screenshots/desk-*.png)."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from scheduling.models import (
    Appointment,
    Break,
    DriverProfile,
    Notification,
    TimeOff,
    Trip,
    WorkingHours,
)
from scheduling.services.appointments import act_on_appointment
from scheduling.services.trips import set_shift
from tests import factories
from tests.browser.conftest import at, book, open_new_form, settled, slot_id, tomorrow
from tests.browser_support import APPOINTMENT_PAGE, browser_marks
from tests.live_support import wait_until

pytestmark = browser_marks


@pytest.fixture
def desk_user(db):
    return factories.UserFactory(
        role="receptionist", username="rita", first_name="Rita", last_name="Santos"
    )


def all_day_driver(vehicle: str = "motorcycle", seats: int = 1, **fields):
    """A driver who works 00:00-23:59 every day: today's trips are theirs to carry, whatever
    the hour the test runs at."""
    user = factories.UserFactory(role="driver", **fields)
    DriverProfile.objects.create(user=user, vehicle=vehicle, seats=seats)
    factories.add_hours(user, time(0), time(23, 59))
    return user


# --- booking -------------------------------------------------------------------------------


def test_a_receptionist_books_through_the_form_and_sees_it_on_the_board(
    site, chromium, desk_user, massage, ana, maria
):
    page = open_new_form(site, chromium, desk_user)
    page.get_by_label("Search by name or phone").fill("Maria")
    page.get_by_role("radio", name="Maria Santos").check()
    settled(page)
    page.locator("#id_service").select_option(label=f"{massage.name} · 60 min · 1,200.00")
    page.locator("#id_therapist option", has_text="Ana Cruz").wait_for(state="attached")
    settled(page)
    page.locator("#id_therapist").select_option(value=str(ana.pk))
    settled(page)  # the times are fetched again for her ("Any therapist" came first)
    start = at(tomorrow(), 10)
    page.locator(slot_id(start)).check()
    assert page.locator("#id_address").input_value() == "12 Acacia St, Makati"
    page.get_by_label("Notes for the therapist").fill("Gate code 4321")
    page.get_by_role("button", name="Book appointment").click()

    page.wait_for_url(APPOINTMENT_PAGE)
    assert "Booked Maria Santos with Ana Cruz" in page.locator("#messages").inner_text()
    appointment = Appointment.objects.get()
    assert (appointment.start, appointment.therapist, appointment.notes) == (
        start,
        ana,
        "Gate code 4321",
    )
    page.get_by_role("link", name="Board for").click()
    block = page.locator(f"#block-{appointment.pk}")
    block.wait_for()
    assert "Maria Santos" in block.inner_text()
    page.context.close()


def test_a_conflicting_booking_is_refused_beside_the_start_time(
    site, chromium, desk_user, massage, ana, maria
):
    other = factories.ClientFactory(name="Jose Rizal")
    start = at(tomorrow(), 14)
    page = open_new_form(site, chromium, desk_user, service=massage.pk, therapist=ana.pk)
    page.get_by_label("Search by name or phone").fill("Jose")
    page.get_by_role("radio", name="Jose Rizal").check()
    settled(page)
    page.locator(slot_id(start)).check()
    # Meanwhile another receptionist books Maria at that very time.
    book(desk_user, maria, massage, ana, start)
    page.get_by_role("button", name="Book appointment").click()

    error = page.locator("#id_start_error")
    error.wait_for()
    assert "Ana Cruz is already booked then: Maria Santos" in error.inner_text()
    assert "14:00" in error.inner_text()
    assert page.locator("#form-problems").is_visible()
    assert Appointment.objects.filter(client=other).count() == 0
    site.screenshots(page, "desk-new-appointment-conflict")
    page.context.close()


def test_a_time_no_driver_can_take_is_refused_beside_it(
    site, chromium, desk_user, massage, ana, maria
):
    factories.driver(first_name="Dan", last_name="Lim")  # the only driver, 08:00-20:00
    ben = factories.therapist(massage, username="ben", first_name="Ben", last_name="Reyes")
    start = at(tomorrow(), 10)
    page = open_new_form(site, chromium, desk_user, service=massage.pk, therapist=ana.pk)
    page.get_by_label("Search by name or phone").fill("Maria")
    page.get_by_role("radio", name="Maria Santos").check()
    page.get_by_label("Needs transport").check()  # asked before the times, which follow
    settled(page)
    page.locator(slot_id(start)).check()
    # Meanwhile another receptionist books Ben with transport at that time: Dan drives him
    # there 09:15-10:00 and back 11:15-12:00. Ana is free; no driver is.
    book(desk_user, factories.ClientFactory(), massage, ben, start, needs_transport=True)
    page.get_by_role("button", name="Book appointment").click()

    error = page.locator("#id_start_error")
    error.wait_for()
    reason = "No driver is free for the drop-off 09:15–10:00 and the pick-up 11:15–12:00."
    assert error.inner_text() == f"10:00: {reason}"
    # The time itself says why, in words, and can no longer be chosen.
    slot = page.locator(slot_id(start))
    label = page.locator("label.slot", has=slot)
    assert slot.is_disabled() and not slot.is_checked()
    assert label.inner_text().split() == ["10:00", "No", "driver"]
    assert slot.get_attribute("aria-describedby") == "id_start_error"
    # Beside it: in the same part of the day, just under its row of times.
    assert page.evaluate(
        """() => document.getElementById("id_start_error").closest(".slot-group")
                 === document.getElementById("start-1000").closest(".slot-group")"""
    )
    slot_box, error_box = label.bounding_box(), error.bounding_box()
    below = error_box["y"] - (slot_box["y"] + slot_box["height"])
    assert 0 <= below < 3 * slot_box["height"]
    assert reason in page.locator("#form-problems").inner_text()
    assert "already booked" not in page.content()
    assert not Appointment.objects.filter(therapist=ana).exists()
    site.screenshots(page, "desk-new-appointment-no-driver")

    # Without transport the same time is Ana's to take.
    page.get_by_label("Needs transport").uncheck()
    settled(page)
    assert slot.is_enabled()
    slot.check()
    page.get_by_role("button", name="Book appointment").click()
    page.wait_for_url(APPOINTMENT_PAGE)
    booked = Appointment.objects.get(therapist=ana)
    assert booked.start == start and not booked.needs_transport
    page.context.close()


def test_booking_with_the_keyboard_alone(site, chromium, desk_user, massage, ana, maria):
    factories.driver(first_name="Dan", last_name="Lim")  # the booking has transport
    page = open_new_form(site, chromium, desk_user)
    keys = page.keyboard
    # The search box has the focus when the form opens.
    keys.type("Maria")
    page.get_by_role("radio", name="Maria Santos").wait_for()
    settled(page)
    keys.press("Tab")  # into the results: the first client
    keys.press("Space")
    assert page.get_by_role("radio", name="Maria Santos").is_checked()
    keys.press("Tab")  # the chosen client's page (their history), shown once chosen
    assert page.evaluate("document.activeElement.className").startswith("client-page-link")
    keys.press("Tab")  # "+ New client"
    keys.press("Tab")  # service
    assert page.evaluate("document.activeElement.id") == "id_service"
    keys.press("ArrowDown")
    page.locator("#id_therapist option", has_text="Ana Cruz").wait_for(state="attached")
    settled(page)
    # The day (already tomorrow): Chromium tabs through its month, day, year and picker.
    keys.press("Tab")
    for _ in range(6):
        keys.press("Tab")
        if page.evaluate("document.activeElement.id") != "id_date":
            break
    # Getting there is asked before the times: transport, then the area.
    assert page.evaluate("document.activeElement.id") == "id_needs_transport"
    keys.press("Space")
    settled(page)  # the times are asked for again; the focus stays on the checkbox
    assert page.evaluate("document.activeElement.id") == "id_needs_transport"
    assert page.locator("#id_needs_transport").is_checked()
    keys.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_area"
    keys.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_therapist"
    keys.press("ArrowDown")
    page.locator("input[name='start']").first.wait_for(state="attached")
    settled(page)
    keys.press("Tab")  # the first free start time
    keys.press("ArrowRight")  # the next one: arrows move and choose within the group
    chosen = page.locator("input[name='start']:checked")
    assert chosen.count() == 1
    keys.press("Tab")  # a couples or group visit: left as it is, one session
    assert page.evaluate("document.activeElement.innerText") == "Add a therapist"
    keys.press("Tab")  # address
    assert page.evaluate("document.activeElement.id") == "id_address"
    keys.press("Tab")  # notes
    keys.type("Keyboard booking")
    # Then the Repeat section (left as it is: one booking), then the submit button.
    stops = []
    for _ in range(15):
        keys.press("Tab")
        stops.append(page.evaluate("document.activeElement.id || document.activeElement.innerText"))
        if stops[-1] == "Book appointment":
            break
    assert stops[-1] == "Book appointment", stops
    assert {"id_every_weeks", "id_count", "id_skip_conflicts"} <= set(stops), stops
    keys.press("Enter")

    page.wait_for_url(APPOINTMENT_PAGE)
    appointment = Appointment.objects.get()
    assert appointment.client == maria and appointment.therapist == ana
    assert appointment.notes == "Keyboard booking" and appointment.needs_transport
    # The first start is 08:45 (Ana works from 08:00, 45 minutes' travel); then 09:00.
    assert appointment.start == at(tomorrow(), 9)
    page.context.close()


# --- live ----------------------------------------------------------------------------------


def test_an_appointment_booked_elsewhere_appears_on_the_open_board(
    site, chromium, desk_user, massage, ana, maria
):
    page = site.page(chromium, desk_user)
    page.goto(site.url(f"/desk/?date={tomorrow().isoformat()}"))
    site.wait_live(page)
    assert page.locator(".tl-block").count() == 0
    appointment = book(desk_user, maria, massage, ana, at(tomorrow(), 11))
    block = page.locator(f"#block-{appointment.pk}")
    block.wait_for()
    assert "Maria Santos" in block.inner_text() and "Pending" in block.inner_text()
    # The glance tiles follow: one booking waiting for Ana's answer.
    page.locator("#attention .tile-warn", has_text="Maria Santos").wait_for()
    # Announced politely to screen readers, by when it is rather than by row id.
    when = f"on {at(tomorrow(), 11):%a} at 11:00"
    assert page.locator("#announcer").inner_text() == f"New appointment {when}."
    act_on_appointment(actor=ana, appointment_id=appointment.pk, action="accept")
    page.locator(f"#block-{appointment.pk}.block-confirmed").wait_for()
    announcer = page.locator("#announcer", has_text=f"Appointment {when} is now confirmed.")
    announcer.wait_for(state="attached")
    page.context.close()


def test_the_board_shades_the_travel_either_side_of_a_session(
    site, chromium, desk_user, massage, ana, maria
):
    factories.driver()
    appointment = book(desk_user, maria, massage, ana, at(tomorrow(), 10), needs_transport=True)
    page = site.page(chromium, desk_user)
    page.goto(site.url(f"/desk/?date={tomorrow().isoformat()}"))
    block = page.locator(f"#block-{appointment.pk}")
    block.wait_for()
    row = page.locator(".tl-row", has=block)
    there, back = row.locator(".tl-travel-out"), row.locator(".tl-travel-back")
    for travel in (there, back):
        assert travel.is_visible()
        assert travel.inner_text().strip() == "travel"  # labelled, not colour alone
        assert "gradient" in travel.evaluate("e => getComputedStyle(e).backgroundImage")
    assert there.get_attribute("title") == "Travel 09:15–10:00"
    assert back.get_attribute("title") == "Travel 11:15–12:00"
    # Edge to edge in the session's lane: the travel there ends where the session starts,
    # the travel back starts where the clean-up after it ends.
    out_box, block_box, back_box = there.bounding_box(), block.bounding_box(), back.bounding_box()
    tail_box = row.locator(".tl-tail").bounding_box()
    assert abs(out_box["x"] + out_box["width"] - block_box["x"]) < 1.5
    assert abs(tail_box["x"] + tail_box["width"] - back_box["x"]) < 1.5
    assert abs(out_box["y"] - block_box["y"]) < 1 and abs(back_box["y"] - block_box["y"]) < 1
    # Half as wide as the hour-long session: 45 minutes.
    assert out_box["width"] == pytest.approx(block_box["width"] * 0.75, abs=1.5)
    assert page.locator(".legend li", has_text="Travel").is_visible()
    assert "away 09:15–12:00 with travel" in block.text_content()
    site.screenshots(page, "desk-board-travel")
    page.context.close()


def test_a_failed_message_is_sent_again_with_retry(site, chromium, desk_user, massage, ana, maria):
    appointment = book(desk_user, maria, massage, ana, at(tomorrow(), 9))
    failed = Notification.objects.filter(appointment=appointment, audience="client").get()
    Notification.objects.filter(pk=failed.pk).update(
        status="failed", attempts=6, last_error="provider: number unreachable"
    )
    page = site.page(chromium, desk_user)
    page.goto(site.url("/desk/queues/"))
    item = page.locator(f"#failed-{failed.pk}")
    assert "number unreachable" in item.inner_text()
    item.get_by_role("button", name="Retry").click()
    item.wait_for(state="detached")
    assert "will be sent again" in page.locator("#messages").inner_text()
    failed.refresh_from_db()
    assert failed.status in {"pending", "sending", "sent"}
    page.context.close()


# --- pictures ------------------------------------------------------------------------------


def a_busy_day(desk_user, massage):
    """Six therapists, a day of bookings in every state, drivers at work, and the things
    that need a person: what a desk sees on an ordinary afternoon."""
    day = tomorrow()
    stones = factories.ServiceFactory(name="Hot stone massage", duration_minutes=90)
    names = [
        ("Ana", "Cruz"),
        ("Ben", "Reyes"),
        ("Carla", "Diaz"),
        ("Dina", "Lopez"),
        ("Eli", "Ramos"),
        ("Faye", "Tan"),
    ]
    staff = [
        factories.therapist(
            massage,
            stones,
            username=first.lower(),
            first_name=first,
            last_name=last,
            hours=None if first == "Faye" else (time(8), time(20)),
        )
        for first, last in names
    ]
    for therapist in staff[:4]:
        Break.objects.create(staff=therapist, weekday=day.weekday(), start=time(12), end=time(13))
    TimeOff.objects.create(staff=staff[4], start=at(day, 14), end=at(day, 20), reason="Training")
    clients = [
        factories.ClientFactory(name=name)
        for name in [
            "Maria Santos",
            "Jose Rizal",
            "Liza Soberano",
            "Paolo Aquino",
            "Grace Lim",
            "Tony Uy",
            "Bea Alonzo",
            "Carlo Reyes",
            "Nina Ong",
            "Lito Cruz",
        ]
    ]
    # Dan and Eva take the first two trips of today; the third needs a car for two and
    # waits, Ferdie's motorcycle being too small; Ferdie waits too. They work all day, so
    # today's trips can be booked whatever the hour; Gil is off shift.
    drivers = [
        all_day_driver(first_name="Dan", last_name="Lim"),
        all_day_driver(vehicle="car", seats=3, first_name="Eva", last_name="Go"),
        all_day_driver(first_name="Ferdie", last_name="Sy"),
    ]
    factories.driver(first_name="Gil", last_name="Mendoza")
    # Each booking holds its therapist from 45 minutes before its start (travel there) to
    # 45 minutes after its clean-up (travel back), in working hours and outside breaks.
    plan = [
        (0, 0, massage, 9, 0, True, "accept"),
        (0, 1, stones, 13, 45, False, "accept"),
        (0, 2, massage, 17, 15, True, None),
        (1, 3, massage, 8, 45, False, "accept"),
        (1, 4, stones, 13, 45, True, "accept"),
        (1, 5, massage, 17, 0, False, "reject"),
        (1, 6, massage, 17, 15, False, None),
        (2, 7, stones, 9, 30, True, "accept"),
        (2, 8, massage, 13, 45, False, None),
        (3, 9, massage, 10, 0, False, "accept"),
        (3, 0, massage, 17, 0, True, "accept"),
        (4, 1, massage, 9, 0, False, "accept"),
    ]
    for who, whom, service, hour, minute, transport, action in plan:
        appointment = book(
            desk_user,
            clients[whom],
            service,
            staff[who],
            at(day, hour, minute),
            needs_transport=transport,
            notes="Prefers firm pressure" if whom == 0 else "",
        )
        if action:
            act_on_appointment(
                actor=staff[who],
                appointment_id=appointment.pk,
                action=action,
                reason="Double-booked with a private client" if action == "reject" else "",
            )
    # Today: trips within the dispatch horizon. Three bookings 15 minutes apart, the first
    # as soon as its therapist can leave, all of each one's busy range on one day.
    travel = timedelta(minutes=45)
    whole = 2 * travel + timedelta(minutes=30) + massage.duration + massage.buffer
    soon = factories.soon(timedelta(minutes=15), whole) + travel
    for driver in drivers[:2]:
        set_shift(driver=driver, on_shift=True)
    today = [
        factories.ClientFactory(name=n)
        for n in ("Rosa Dela Cruz", "Mark Villanueva", "Joy Bautista")
    ]
    for client in today:
        night = factories.therapist(massage, hours=None)
        WorkingHours.objects.create(
            staff=night, weekday=soon.weekday(), start=time(0), end=time(23, 59)
        )
        last = book(desk_user, client, massage, night, soon, needs_transport=True)
        soon += timedelta(minutes=15)
    Trip.objects.filter(appointment=last).update(passengers=2)
    set_shift(driver=drivers[2], on_shift=True)
    failed = Notification.objects.filter(audience="client").order_by("id")[:2]
    errors = ["Twilio 21211: 'To' number is not a valid phone number", "provider timed out"]
    for row, error in zip(failed, errors, strict=True):
        Notification.objects.filter(pk=row.pk).update(status="failed", attempts=6, last_error=error)
    return day


def test_pictures_of_every_desk_page(site, chromium, desk_user, massage):
    day = a_busy_day(desk_user, massage)
    page = site.page(chromium, desk_user)
    page.goto(site.url(f"/desk/?date={day.isoformat()}"))
    site.wait_live(page)
    site.screenshots(page, "desk-board")
    page.goto(site.url("/desk/queues/"))
    site.screenshots(page, "desk-queues")
    page.goto(site.url("/desk/drivers/"))
    site.screenshots(page, "desk-drivers")
    pending = Appointment.objects.filter(status="pending", needs_transport=True).first()
    page.goto(site.url(f"/desk/appointments/{pending.pk}/"))
    site.screenshots(page, "desk-appointment")
    confirmed = Appointment.objects.filter(status="confirmed").first()
    page.goto(site.url(f"/desk/appointments/{confirmed.pk}/"))
    site.screenshots(page, "desk-appointment-confirmed")
    page.goto(site.url(f"/desk/appointments/new/?date={day.isoformat()}"))
    page.get_by_label("Search by name or phone").fill("a")
    page.locator(".client-option").first.wait_for()
    site.screenshots(page, "desk-new-appointment")
    wait_until(lambda: True, timeout=1, what="nothing")
    page.context.close()
