"""static/js/live.js in headless Chromium against a real daphne: it connects, receives,
rides out the server going away mid-burst, and ends with every event exactly once, in
order; it stops on a refused login and replaces a stale socket."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from django.db import transaction
from django.test import Client as DjangoClient

from scheduling.models import StreamEvent
from scheduling.realtime.events import EventBatch
from tests.conftest import IN_CI
from tests.live_support import (
    Daphne,
    RedisServer,
    channel_layers_for,
    wait_for_quiet_database,
    wait_until,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    # In CI a missing browser is a failure (.ci/run installs it), never a skip.
    pytest.mark.skipif(
        not shutil.which(CHROMIUM) and not IN_CI,
        reason="needs Debian's chromium (apt-get install chromium)",
    ),
]
PAGE = """<!doctype html><html><body>
<script src="/static/js/live.js"></script>
<script>
  window.seqs = []; window.states = [];
  window.live = new LiveStream(%s);
  live.addEventListener("event", (e) => seqs.push(e.detail.seq));
  live.on("test.burst", (event) => { window.lastBurst = event.data.n; });
  live.addEventListener("state", (e) => states.push(e.detail.state));
  live.start();
</script></body></html>"""


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daphne(redis_server, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = Daphne(redis_server).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def same_layer(settings, redis_server):
    settings.CHANNEL_LAYERS = channel_layers_for(redis_server)
    yield
    # The tests close their pages; daphne may still be answering them (see the helper).
    wait_for_quiet_database()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread for the whole module; the
    # ORM calls here (and the database flush between tests) are plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def open_page(browser, daphne: Daphne, user=None, options: str = "{}"):
    context = browser.new_context()
    if user is not None:
        session = DjangoClient()
        session.force_login(user)
        cookie = session.cookies["sessionid"].value
        context.add_cookies([{"name": "sessionid", "value": cookie, "url": daphne.origin}])
    page = context.new_page()
    # A real page of daphne's first (so the document is daphne's own origin, a loopback
    # one, as a dashboard's would be), then the test page written into it; live.js, the
    # websocket and /api/events/ are the real ones.
    page.goto(f"{daphne.origin}/static/js/live.js")
    page.set_content(PAGE % options)
    return page


def wait_in_page(page, expression: str, *, timeout: float = 20) -> None:
    page.wait_for_function(expression, timeout=timeout * 1000)


def test_the_browser_client_gets_every_event_once_in_order_across_a_server_restart(
    browser, daphne, desk
):
    page = open_page(browser, daphne, desk, "{after: 0, minDelay: 100, maxDelay: 800}")
    wait_in_page(page, "states.includes('live')")

    def restart_daphne() -> None:
        daphne.stop()
        daphne.start()

    restarter = None
    for n in range(300):
        with transaction.atomic():
            batch = EventBatch()
            batch.add("test.burst", {"n": n})
            batch.flush()
        if n == 100:
            # The server goes away mid-burst (and takes a couple of seconds to return);
            # the burst goes on being committed meanwhile.
            restarter = threading.Thread(target=restart_daphne)
            restarter.start()
    restarter.join(timeout=60)
    wait_in_page(page, "seqs.length >= 300", timeout=30)
    seqs = page.evaluate("seqs")
    assert seqs == list(StreamEvent.objects.values_list("seq", flat=True))
    assert page.evaluate("lastBurst") == 299  # listeners by type get them too
    states = page.evaluate("states")
    assert states[:2] == ["connecting", "live"]
    assert "reconnecting" in states and states[-1] == "live"
    page.context.close()


def test_a_refused_login_stops_the_client(browser, daphne):
    page = open_page(browser, daphne, None, "{after: 0, minDelay: 50}")
    wait_in_page(page, "states.includes('unauthorized')")
    assert "live" not in page.evaluate("states")
    page.context.close()


def test_a_silent_socket_turns_stale_and_is_replaced(browser, daphne, therapist):
    # The server pings every 20 s; a client told to expect one every 0.5 s finds the
    # stream silent after a second, calls it stale and opens a new socket.
    page = open_page(browser, daphne, therapist, "{after: 0, pingSeconds: 0.5}")
    wait_in_page(page, "states.includes('stale') && states[states.length - 1] === 'live'")
    with transaction.atomic():
        batch = EventBatch()
        batch.add("test.burst", {"n": 0}, recipients=[therapist.pk])
        batch.flush()
    wait_until(lambda: page.evaluate("seqs.length") == 1, timeout=10, what="the event")
    page.context.close()
