"""A couples visit with transport booked from the desk's form in headless Chromium against
a real daphne, while both therapists have their own page open (two browser profiles, each
signed in as one of them): each page gets its session live, naming the partner, without
a reload (issue 14)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from scheduling.models import Visit
from tests import factories
from tests.browser.conftest import AXE, AXE_TAGS, at, settled, tomorrow
from tests.browser_support import APPOINTMENT_PAGE, browser_marks

pytestmark = browser_marks


@pytest.fixture
def world(rita, massage, ana, maria):
    ben = factories.therapist(massage, username="ben", first_name="Ben", last_name="Reyes")
    factories.driver(vehicle="car", seats=4, username="dan", first_name="Dan", last_name="Uy")
    return rita, massage, ana, ben


def test_a_couples_visit_with_transport_reaches_both_therapists_live(site, chromium, world):
    desk, massage, ana, ben = world
    start = at(tomorrow(), 10)

    # Ana and Ben each have their day open, live, before anything is booked.
    therapists = {}
    for therapist, partner in ((ana, "Ben Reyes"), (ben, "Ana Cruz")):
        page = site.page(chromium, therapist, phone=True)
        page.goto(site.url("/therapist/"))
        site.wait_live(page)
        page.evaluate("window.notReloaded = true")
        assert "Maria Santos" not in page.inner_text("main")
        therapists[therapist.pk] = (page, partner)

    desk_page = site.page(chromium, desk)
    desk_page.goto(
        site.url(
            f"/desk/appointments/new/?date={tomorrow().isoformat()}"
            f"&service={massage.pk}&therapist={ana.pk}"
        )
    )
    desk_page.get_by_label("Search by name or phone").fill("Maria")
    desk_page.get_by_role("radio", name="Maria Santos").check()
    settled(desk_page)
    desk_page.get_by_label("Needs transport").check()
    settled(desk_page)
    desk_page.locator(f"#start-{timezone.localtime(start):%H%M}").check()

    # "Add a therapist" (a plain submit: the form comes back with a second session's row,
    # what was chosen kept, and the cursor on the new row).
    desk_page.get_by_role("button", name="Add a therapist").click()
    desk_page.wait_for_load_state()
    assert desk_page.evaluate("document.activeElement.id") == "id_session-2-service"
    assert desk_page.get_by_label("Needs transport").is_checked()
    assert desk_page.locator(f"#start-{timezone.localtime(start):%H%M}").is_checked()
    desk_page.get_by_label("Session 2: service").select_option(value=str(massage.pk))
    desk_page.get_by_label("Session 2: therapist").select_option(label="Ben Reyes")
    if AXE.exists():  # the form with its visit rows
        desk_page.add_script_tag(path=str(AXE))
        found = desk_page.evaluate(
            "tags => axe.run('#visit-sessions', {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => v.id))",
            AXE_TAGS,
        )
        assert found == []
    desk_page.get_by_role("button", name="Book the couples visit").click()
    desk_page.wait_for_url(APPOINTMENT_PAGE)
    assert "Booked a couples visit for Maria Santos with Ana Cruz and Ben Reyes" in (
        desk_page.locator("#messages").inner_text()
    )

    visit = Visit.objects.get()
    sessions = {s.therapist_id: s for s in visit.sessions.all()}
    assert set(sessions) == {ana.pk, ben.pk}
    assert [t.passengers for t in visit.trips.order_by("window_start")] == [2, 2]
    card = desk_page.locator("#visit")
    assert "Couples visit" in card.inner_text() and "2: Ana Cruz, Ben Reyes" in card.inner_text()
    if AXE.exists():  # the visit's card, with its Cancel the whole visit
        desk_page.add_script_tag(path=str(AXE))
        found = desk_page.evaluate(
            "tags => axe.run('#visit', {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => v.id))",
            AXE_TAGS,
        )
        assert found == []

    # Both therapists' pages got their own session, live: no reload.
    for therapist_id, (page, partner) in therapists.items():
        mine = page.locator(f"#appointment-{sessions[therapist_id].pk}")
        mine.wait_for()
        assert f"Couples session with {partner}" in mine.inner_text()
        assert "Drop-off" in mine.inner_text()
        assert page.evaluate("window.notReloaded === true")
    site.screenshots(desk_page, "desk-visit")
    site.screenshots(therapists[ben.pk][0], "therapist-visit")
