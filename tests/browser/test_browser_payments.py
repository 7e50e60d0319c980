"""A gateway payment in headless Chromium against a real daphne (issue 15): the desk sends
a payment link from the appointment's page, the client pays the fake gateway's page in a
second browser context, and the desk's page shows Paid live, without a reload."""

from __future__ import annotations

from urllib.parse import urlsplit

from scheduling.models import Payment, WebhookEvent
from tests.browser_support import booked_tomorrow, browser_marks

pytestmark = browser_marks


def test_the_desk_sends_a_link_the_client_pays_and_the_desk_sees_paid_live(site, chromium):
    booked = booked_tomorrow()
    desk_user, appointment = booked.desk, booked.appointment
    desk = site.page(chromium, desk_user)
    desk.goto(site.url(f"/desk/appointments/{appointment.pk}/"))
    desk.get_by_role("button", name="Send payment link").click()
    link = desk.locator("[data-payment-link] a")
    link.wait_for()
    payment = Payment.objects.get(appointment=appointment, method="gateway")
    assert link.get_attribute("href") == payment.link_url
    site.wait_live(desk)
    assert desk.locator("[data-payment-status]").first.get_attribute("data-payment-status") != (
        "paid"
    )

    client = site.page(chromium)  # the client: no sign-in, another browser profile
    client.goto(site.url(urlsplit(payment.link_url).path))
    client.get_by_role("button", name=f"Pay {payment.amount} PHP").click()
    client.get_by_text("Thank you: your payment was received.").wait_for()
    site.screenshots(client, "pay-fake")

    # The desk's payments panel is redrawn from the stream: Paid, with no reload.
    desk.wait_for_selector("[data-payment-status='paid']")
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert WebhookEvent.objects.get().outcome == "applied"
    site.screenshots(desk, "desk-appointment-paid")
