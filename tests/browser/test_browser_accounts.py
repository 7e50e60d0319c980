"""Signing in through the real login page in Chromium, and the live badge of a page."""

from __future__ import annotations

from tests import factories
from tests.browser_support import browser_marks

pytestmark = browser_marks


def test_a_receptionist_signs_in_and_the_desk_goes_live(site, chromium):
    factories.UserFactory(username="rita", role="receptionist", first_name="Rita")
    page = site.page(chromium)
    page.goto(site.url("/desk/"))
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("pw")
    page.keyboard.press("Enter")
    page.wait_for_url(site.url("/desk/"))
    site.wait_live(page)
    assert page.locator("[data-conn-text]").inner_text() == "Live"
    page.context.close()


def test_a_wrong_password_is_answered_on_the_page(site, chromium):
    factories.UserFactory(username="rita")
    page = site.page(chromium, phone=True)
    page.goto(site.url("/accounts/login/"))
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").wait_for()
    assert "correct username and password" in page.get_by_role("alert").inner_text()
    site.screenshots(page, "login")
    page.context.close()


def test_signing_out_in_one_tab_tells_the_other_tabs_live_stream(site, chromium, desk):
    board = site.page(chromium, desk)
    board.goto(site.url("/desk/"))
    site.wait_live(board)
    other_tab = board.context.new_page()
    other_tab.goto(site.url("/desk/"))
    other_tab.get_by_text(desk.get_full_name()).click()  # the user menu
    other_tab.get_by_role("button", name="Sign out").click()
    other_tab.wait_for_url("**/accounts/login/")
    # The server closed the first tab's socket with 4401; live.js stops and says so.
    board.wait_for_selector("body[data-live-state='unauthorized']")
    assert "Signed out" in board.locator("[data-conn-text]").inner_text()
    board.context.close()
