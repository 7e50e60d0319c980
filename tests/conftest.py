from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from scheduling.api.pagecache import forget_pages
from scheduling.services.appointments import create_appointment
from tests import factories
from tests.races import statement_time_limited

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Fixtures of the browser tests: site (daphne serving pages and websocket), chromium.
pytest_plugins = ["tests.browser_support"]


# Fixtures that start processes or bind ports of their own (tests/browser_support.py).
# `make test` runs the tests using them after the parallel pass, serially, so they must
# carry the `browser` marker; the `worker` ones say so by their module's pytestmark.
BROWSER_FIXTURES = {"site", "chromium", "browser_daphne", "browser_redis"}


def pytest_addoption(parser):
    parser.addoption(
        "--clock",
        default=None,
        metavar="ISO",
        help="start every test's clock at this instant (ticking, by time-machine), e.g. "
        "2027-01-31T23:50+08:00: the CI step that shows no test depends on the hour or "
        "the date it runs at",
    )


def pytest_configure(config):
    """`--clock`: the whole session (module-wide fixtures too) runs as if started at that
    instant, the clock ticking on from there; tests that travel further still can, as
    time-machine nests. Each xdist worker starts its own."""
    when = config.getoption("--clock", default=None)
    if when:
        config._clock_travel = time_machine.travel(datetime.fromisoformat(when), tick=True)
        config._clock_travel.start()


def pytest_unconfigure(config):
    travel = getattr(config, "_clock_travel", None)
    if travel is not None:
        travel.stop()


def pytest_collection_modifyitems(config, items):
    """Tests of PostgreSQL or Redis skip loudly when the service is missing, and never in
    CI (the test settings refuse to start there without them)."""
    unmarked = [
        item.nodeid
        for item in items
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and "browser" not in item.keywords
    ]
    if unmarked:
        raise pytest.UsageError(
            "mark these @pytest.mark.browser (they start daphne and Chromium): "
            + ", ".join(unmarked)
        )
    if IN_CI:
        return
    missing = {}
    if connection.vendor != "postgresql":
        missing["postgres"] = "needs PostgreSQL (DATABASE_URL or 127.0.0.1:5432)"
    if not settings.REDIS_URL:
        missing["redis"] = "needs Redis (REDIS_URL or 127.0.0.1:6379)"
    for item in items:
        for marker, reason in missing.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def fresh_rate_limits_and_pages():
    """Each test starts with empty rate-limit windows and no kept API pages (they live in
    the shared cache; a flushed database counts its events from 0 again)."""
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("rl:*")
    else:
        cache.clear()
    forget_pages()


@pytest.fixture
def desk(db):
    return factories.UserFactory(role="receptionist", username="desk")


@pytest.fixture
def manager(db):
    return factories.UserFactory(role="manager", username="boss")


@pytest.fixture
def service(db):
    return factories.ServiceFactory(name="Swedish massage", duration_minutes=60, buffer_minutes=15)


@pytest.fixture
def therapist(service):
    return factories.therapist(service, username="ana", first_name="Ana", last_name="Cruz")


@pytest.fixture
def client_record(db):
    return factories.ClientFactory(name="Maria Santos", phone="+639171234567")


@pytest.fixture
def book(desk, therapist, service, client_record):
    """Book through the service: the desk, Ana, the service and Maria Santos unless told
    otherwise. A booking with transport needs a driver who works then (capacity is
    checked at booking): when there is none yet, Dan, on a motorcycle all week, is hired
    first. Tests of capacity itself set up their drivers and do not rely on him."""

    hired = False

    def book(start, **overrides):
        nonlocal hired
        fields = dict(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
        )
        if overrides.get("needs_transport") and not hired:
            factories.ensure_driver()  # once: a query-counting test books twice
            hired = True
        return create_appointment(**{**fields, **overrides})

    return book


@pytest.fixture
def tomorrow_at():
    """An aware datetime at HH:MM tomorrow in the business time zone."""

    def at(hour: int, minute: int = 0) -> datetime:
        day = timezone.localdate() + timedelta(days=1)
        return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))

    return at


@pytest.fixture
def statement_timeout():
    """Every connection the test opens, in any thread, gives up on a stuck statement (and
    fails the test) rather than holding locks past the test and blocking the table flush
    (the race tests: tests/races.py)."""
    with statement_time_limited():
        yield


@pytest.fixture
def may(service) -> factories.Book:
    """May 2030 as the reports count it (tests.factories.may_data): every edge that could
    be counted wrongly."""
    return factories.may_data(service)
