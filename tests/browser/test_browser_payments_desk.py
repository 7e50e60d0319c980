"""Cash collected at the visit, in headless Chromium against a real daphne (issue 15): the
therapist records it on the phone page once the session has started, sees it to hand
over, the desk's appointment page shows it live as not verified, the desk verifies it
and the page shows Paid."""

from __future__ import annotations

from scheduling.models import Payment
from scheduling.services.appointments import act_on_appointment
from tests.browser_support import booked_tomorrow, browser_marks

pytestmark = browser_marks


def test_a_therapist_records_cash_and_the_desk_verifies_it(site, chromium):
    booked = booked_tomorrow()
    desk_user, ana, appointment = booked.desk, booked.ana, booked.appointment
    for action in ("accept", "start"):
        act_on_appointment(actor=ana, appointment_id=appointment.pk, action=action)
    price = f"{appointment.price:,.2f}"

    desk = site.page(chromium, desk_user)
    desk.goto(site.url(f"/desk/appointments/{appointment.pk}/"))
    site.wait_live(desk)
    assert desk.locator("[data-payment-status]").first.get_attribute("data-payment-status") == (
        "unpaid"
    )

    phone = site.page(chromium, ana, phone=True)
    phone.goto(site.url("/therapist/"))
    card = phone.locator(f"#appointment-{appointment.pk}")
    card.get_by_text("Record payment").first.click()
    card.get_by_role("radio", name="Cash", exact=True).check()
    card.get_by_label("Amount").fill(str(appointment.price))
    card.get_by_role("button", name="Record payment").click()
    phone.get_by_text("the desk verifies it").first.wait_for()
    phone.locator("[data-figure='held']", has_text=price).wait_for()
    site.screenshots(phone, "therapist-cash-recorded")
    payment = Payment.objects.get(appointment=appointment)
    assert (payment.method, payment.status, payment.collected_by_id) == ("cash", "pending", ana.pk)

    # The desk's panel is redrawn from the stream: the collection, not verified yet.
    verify = desk.locator("#payments").get_by_role("button", name="Verify")
    verify.wait_for()
    verify.click()
    desk.wait_for_selector("[data-payment-status='paid']")
    desk.get_by_text(f"Verified: {price} PHP Cash.").wait_for()
    site.screenshots(desk, "desk-cash-verified")
    payment.refresh_from_db()
    assert (payment.status, payment.verified_by_id) == ("succeeded", desk_user.pk)

    # And the therapist's hand-over empties, live.
    phone.get_by_text("Nothing to hand over").wait_for()
