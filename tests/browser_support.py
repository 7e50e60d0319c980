"""Real pages in a real browser: one daphne serving the pages and the websocket (as the
embedded server does) on the test database, a Redis of its own, and Debian's headless
Chromium driven by Playwright. Registered as a plugin in conftest.py.

    pytestmark = browser_marks
    def test_x(site, chromium, desk):
        page = site.page(chromium, desk)          # signed in as `desk`
        page.goto(site.url("/desk/"))
        site.screenshots(page, "desk-board")      # var/screenshots/desk-board-{desktop,phone}.png
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client as DjangoClient
from django.utils import timezone

from tests.conftest import IN_CI
from tests.live_support import (
    BASE_DIR,
    Daphne,
    RedisServer,
    channel_layers_for,
    wait_for_quiet_database,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Where the browser tests leave a picture of every page (named in the README).
SCREENSHOTS = BASE_DIR / "var" / "screenshots"
# An appointment's own page, and not the booking form's /desk/appointments/new/, where a
# refused booking stays.
APPOINTMENT_PAGE = re.compile(r"/desk/appointments/\d+/$")
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}

browser_marks = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    # In CI a missing browser is a failure (.ci/run installs it), never a skip.
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not IN_CI,
        reason="needs Debian's chromium (apt-get install chromium)",
    ),
]


class Site:
    """The running product, seen from the test."""

    def __init__(self, daphne: Daphne) -> None:
        self.daphne = daphne
        self.contexts: list = []

    @property
    def origin(self) -> str:
        return self.daphne.origin

    def url(self, path: str) -> str:
        return self.origin + path

    def context(self, browser, user=None, *, phone: bool = False):
        """A fresh browser profile (its own cookies), signed in as `user` when given."""
        context = browser.new_context(viewport=VIEWPORTS["phone" if phone else "desktop"])
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        if user is not None:
            client = DjangoClient()
            client.force_login(user)
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": self.origin}]
            )
        return context

    def page(self, browser, user=None, *, phone: bool = False):
        return self.context(browser, user, phone=phone).new_page()

    def close(self) -> None:
        """Close every page the test opened (also when it failed half-way), then wait
        until daphne has finished what they asked of it, before the flush."""
        for context in self.contexts:
            context.close()  # a no-op for one the test closed itself
        wait_for_quiet_database()

    def wait_live(self, page) -> None:
        """Until the page's stream is open: what happens next reaches it live."""
        page.wait_for_selector("body[data-live-state='live']")

    def screenshots(self, page, name: str) -> list[Path]:
        """The page as it stands, at desktop and phone widths (full height)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        original = page.viewport_size
        paths = []
        for label, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            path = SCREENSHOTS / f"{name}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
        if original:
            page.set_viewport_size(original)
        return paths


@pytest.fixture(scope="session")
def browser_redis():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_daphne(browser_redis, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = Daphne(browser_redis).start()
    yield server
    server.stop()


@pytest.fixture
def site(browser_daphne, browser_redis, settings) -> Iterator[Site]:
    # What the test itself commits is published where daphne listens.
    settings.CHANNEL_LAYERS = channel_layers_for(browser_redis)
    site = Site(browser_daphne)
    yield site
    site.close()


@dataclass(frozen=True)
class Booked:
    """One pending booking for tomorrow at 10:00 and the people around it."""

    desk: Any
    ana: Any
    maria: Any
    appointment: Any


def booked_tomorrow() -> Booked:
    """Rita at the desk has booked Maria with Ana (Swedish massage) for tomorrow 10:00."""
    from scheduling.services.appointments import create_appointment
    from tests import factories

    desk = factories.UserFactory(role="receptionist", username="rita", first_name="Rita")
    massage = factories.ServiceFactory(name="Swedish massage", duration_minutes=60)
    ana = factories.therapist(massage, username="ana", first_name="Ana", last_name="Cruz")
    maria = factories.ClientFactory(name="Maria Santos", phone="+639171234567")
    day = timezone.localdate() + timedelta(days=1)
    appointment = create_appointment(
        actor=desk,
        client_id=maria.pk,
        service_id=massage.pk,
        therapist_id=ana.pk,
        start=timezone.make_aware(datetime.combine(day, time(10))),
    )
    return Booked(desk=desk, ana=ana, maria=maria, appointment=appointment)


# Per module: Playwright's sync API cannot run two at once in one thread, and
# tests/browser/test_live_browser.py starts its own.
@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the tests
    # (and the database flush between them) are plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
