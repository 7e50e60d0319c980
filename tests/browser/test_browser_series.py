"""A standing booking from the desk's form in headless Chromium against a real daphne:
the Repeat preview names the one clashing week before anything is booked, then the free
weeks are booked with "Book the free dates" (issue 14)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling.models import Appointment, Series
from scheduling.services.appointments import create_appointment
from tests import factories
from tests.browser.conftest import AXE, AXE_TAGS, at, axe_violations, settled, tomorrow
from tests.browser_support import APPOINTMENT_PAGE, browser_marks

pytestmark = browser_marks


@pytest.fixture
def world(rita, massage, ana, maria):
    jose = factories.ClientFactory(name="Jose Rizal", phone="+639171234568")
    return rita, massage, ana, maria, jose


def test_a_series_with_one_clashing_week_previews_it_then_books_the_free_ones(
    site, chromium, world
):
    desk, massage, ana, _maria, jose = world
    first = at(tomorrow(), 10)
    clash = first + timedelta(weeks=2)
    create_appointment(
        actor=desk,
        client_id=jose.pk,
        service_id=massage.pk,
        therapist_id=ana.pk,
        start=clash,
    )
    page = site.page(chromium, desk)
    page.goto(
        site.url(
            f"/desk/appointments/new/?date={tomorrow().isoformat()}"
            f"&service={massage.pk}&therapist={ana.pk}"
        )
    )
    page.get_by_label("Search by name or phone").fill("Maria")
    page.get_by_role("radio", name="Maria Santos").check()
    settled(page)
    page.locator(f"#start-{timezone.localtime(first):%H%M}").check()
    page.get_by_label("Repeat").select_option(label="Every week")
    settled(page)
    page.get_by_label("Number of dates").fill("4")
    page.get_by_role("button", name="Check the dates").click()
    settled(page)

    preview = page.locator("#repeat-preview")
    preview.locator("li").nth(3).wait_for()
    assert preview.locator("li").count() == 4
    assert "1 clash" in preview.inner_text()
    clashing = preview.locator("li.clash")
    assert clashing.count() == 1
    assert f"{timezone.localtime(clash):%a %-d %b %Y}" in clashing.inner_text()
    assert "Ana Cruz is already booked" in clashing.inner_text()
    assert not Series.objects.exists()  # the preview wrote nothing
    if AXE.exists():  # the form with its Repeat preview meets the accessibility target
        assert axe_violations(page) == []

    page.get_by_label("Book the free dates").check()
    page.get_by_role("button", name="Book appointment").click()
    page.wait_for_url(APPOINTMENT_PAGE)
    assert "and 2 more dates (1 left out: they clash)" in page.locator("#messages").inner_text()
    series = Series.objects.get()
    booked = list(Appointment.objects.filter(series=series).order_by("start"))
    assert [a.start for a in booked] == [first + timedelta(weeks=w) for w in (0, 1, 3)]
    assert "weekly, 1 of 3" in page.locator(".series-card").inner_text()
    if AXE.exists():  # the series' panel (the rest of the page is the page walk's)
        page.add_script_tag(path=str(AXE))
        found = page.evaluate(
            "tags => axe.run('.series-card', {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => v.id))",
            AXE_TAGS,
        )
        assert found == []
    site.screenshots(page, "desk-series")
    page.context.close()
