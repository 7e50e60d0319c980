"""Every page and fragment, for the role it is for, fed garbage in its query string and
its ids: a page answers with a message, a 400 or a 404, never a server error."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver

from scheduling import urls as page_urls
from tests import factories

pytestmark = pytest.mark.django_db

GARBAGE = [
    "",
    "0",
    "-1",
    "99999999999999999999999",
    "10000-01-01",
    "0000-00-00",
    "2026-02-30",
    "yesterday",
    "x" * 5000,
    "\x00",
    "%",
    "'; drop table x; --",
    "１２３",
]
# Each of these is also sent in one GET parameter at a time.
ALONE = {"\x00", "99999999999999999999999", "10000-01-01", "x" * 5000}
KEYS = [
    "date",
    "from",
    "to",
    "service",
    "therapist",
    "q",
    "all",
    "rebook",
    "start",
    "after",
    "client",
    "area",
    "needs_transport",
]
# What the pages' forms post (prefixed forms included), all given the same garbage.
FORM_KEYS = [
    *KEYS,
    "name",
    "phone",
    "email",
    "address",
    "new-area",
    "notes",
    "reason",
    "on_shift",
    "reschedule-date",
    "reschedule-start",
    "reschedule-reason",
    "cancel-reason",
    "no_show-reason",
    # The client's page's edit form.
    *(f"client-{name}" for name in ("name", "phone", "email", "address", "area", "notes")),
    "client-therapist",
    "client-channel",
    "page",
]


def routes():
    """(area, route) of every page URL, with ids filled in by a number that names
    nothing and by the largest id."""
    found = []
    for include in page_urls.urlpatterns:
        if not isinstance(include, URLResolver):
            continue
        area = include.namespace
        for pattern in include.url_patterns:
            assert isinstance(pattern, URLPattern)
            route = str(pattern.pattern)
            found.append((area, route))
    return found


@pytest.fixture
def world(book, desk, therapist, tomorrow_at):
    """An appointment with transport whose drop-off a driver holds, and who may see it."""
    from scheduling.services.trips import assign_trip

    appointment = book(
        tomorrow_at(10),
        needs_transport=True,
    )
    driver = factories.driver()
    trip = appointment.trips.get(leg="dropoff")
    assign_trip(trip_id=trip.pk, driver_id=driver.pk)
    users = {
        "desk": desk,
        "therapist": therapist,
        "driver": driver,
        "reports": factories.UserFactory(role="manager"),
    }
    real_ids = {"desk": appointment.pk, "therapist": appointment.pk, "driver": trip.pk}
    # Routes whose id names something else than the area's usual object.
    real_ids["desk:clients/<int:pk>/"] = appointment.client_id
    return users, real_ids


@pytest.mark.parametrize(("area", "route"), routes())
def test_garbage_never_reaches_a_server_error(client, world, area, route):
    users, real_ids = world
    client.raise_request_exception = False
    client.force_login(users[area])
    # The id of something this user may see, one that names nothing, and the largest a
    # bigint holds.
    ids = ["999999", str(2**63 - 1)] if "<int:pk>" in route else [""]
    if "<int:pk>" in route and area in real_ids:
        ids.insert(0, str(real_ids.get(f"{area}:{route}", real_ids[area])))
    for pk in ids:
        path = f"/{area}/" + route.replace("<int:pk>", pk).replace("<slug:action>", "accept")
        for value in GARBAGE:
            response = client.get(path, {key: value for key in KEYS})
            assert response.status_code < 500, (path, "GET", value, response.status_code)
            # Each parameter alone too, where one bad value would hide the next.
            for key in KEYS if value in ALONE else ():
                response = client.get(path, {key: value})
                assert response.status_code < 500, (path, key, value, response.status_code)
            form = {key: value for key in FORM_KEYS}
            if pk:
                form[f"a{pk}-reason"] = value  # the therapist's per-card forms
            response = client.post(path, form)
            assert response.status_code < 500, (path, "POST", value, response.status_code)
