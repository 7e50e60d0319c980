"""Accessibility as a standing check: axe-core (the npm package, `make axe` installs it)
runs in Chromium on every page, as the role that uses it, at desktop and phone widths,
and finds no violation of WCAG 2.1 A/AA or of axe's best practices.

Every page of the product's URLconf is either in PAGES or named in NOT_PAGES with the
reason (fragments, form posts): a page added later and left out fails the guard test."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.gateway_payments import create_payment_link
from scheduling.services.payments import record_collection
from tests import factories
from tests.browser.conftest import AXE, axe_violations
from tests.browser_support import VIEWPORTS, browser_marks
from tests.conftest import IN_CI

# URL name -> (who looks at it, path; "{appointment}" is the one booked below).
PAGES: dict[str, tuple[str, str]] = {
    "login": ("anonymous", "/accounts/login/"),
    "password_change": ("desk", "/accounts/password/"),
    "password_reset": ("anonymous", "/accounts/password/reset/"),
    "password_reset_done": ("anonymous", "/accounts/password/reset/sent/"),
    # A link that is not (or no longer) valid: the page says so and offers a new one.
    "password_reset_confirm": ("anonymous", "/accounts/password/reset/MQ/not-a-token/"),
    "password_reset_complete": ("anonymous", "/accounts/password/reset/done/"),
    "desk:board": ("desk", "/desk/"),
    "desk:queues": ("desk", "/desk/queues/"),
    "desk:drivers": ("desk", "/desk/drivers/"),
    "desk:new": ("desk", "/desk/appointments/new/"),
    "desk:appointment": ("desk", "/desk/appointments/{appointment}/"),
    "desk:client": ("desk", "/desk/clients/{client}/"),
    "therapist:day": ("therapist", "/therapist/"),
    "driver:shift": ("driver", "/driver/"),
    "reports:index": ("manager", "/reports/"),
    # The fake payment gateway's page, as the client opens it from their link (issue 15).
    "fake-pay": ("anonymous", "/pay/fake/{pay}/"),
}
# URL names that are not pages a person opens: fragments htmx swaps into a page, form
# posts that answer with a redirect or a fragment, and plain redirects.
NOT_PAGES = {
    "home": "redirects to the signed-in role's page",
    "logout": "form post",
    "password_change_done": "a one-line confirmation after a form post (same layout as the form)",
    "health": "JSON for the load balancer",
    "metrics": "Prometheus text for the scraper",
    "desk:reassign": "form post from the appointment page",
    "desk:reassign_choices": "region of the appointment page, fetched by htmx",
    "desk:new_client": "form post from the booking page (answers with a fragment)",
    "desk:rebook_any": "form post (redirects to the new appointment)",
    "desk:reschedule": "form post from the appointment page",
    "desk:trip_assign": "form post from the appointment page and the drivers panel",
    "desk:trip_unassign": "form post from the appointment page and the drivers panel",
    "desk:send_payment_link": "form post from the appointment page",
    "desk:appointment_payments": "region of the appointment page (payments), fetched by htmx",
    "desk:verify_payment": "form post from the appointment and queues pages",
    "desk:resolve_payment_flag": "form post from the queues page (a manager clears a flag)",
    "therapist:collect": "form post from the therapist's page",
    "driver:change_shift": "form post from the shift page",
    "driver:status": "region of the shift page, fetched by htmx",
    "driver:trips": "region of the shift page, fetched by htmx",
    "therapist:appointments": "region of the therapist's page, fetched by htmx",
    "therapist:request_pickup": "form post from the therapist's page",
    "reports:export_csv": "CSV download",
}
NOT_PAGE_WORDS = ("fragment", "summary", "times", "act", "retry", "search", "cancel", "no_show")


def page_names() -> set[str]:
    """Every named URL of the pages' URLconf (not the API, admin or static), namespaced."""
    found: set[str] = set()

    def walk(patterns, prefix: str, namespace: str) -> None:
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                if route.startswith(("api/", "admin/", "static/", "ws/")):
                    continue
                walk(entry.url_patterns, route, entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and entry.name:
                found.add(f"{namespace}:{entry.name}" if namespace else entry.name)

    walk(get_resolver().url_patterns, "", "")
    return found


def is_page(name: str) -> bool:
    leaf = name.rsplit(":", 1)[-1]
    if name in NOT_PAGES:
        return False
    return not any(word in leaf for word in NOT_PAGE_WORDS)


def test_every_page_is_checked():
    """The guard: a new page is in PAGES (checked below) or in NOT_PAGES with a reason."""
    unlisted = sorted(name for name in page_names() if is_page(name) and name not in PAGES)
    assert not unlisted, f"add these pages to PAGES (or NOT_PAGES, saying why): {unlisted}"
    assert set(PAGES) <= page_names(), "PAGES names a URL that no longer exists"


def tomorrow(hour: int) -> datetime:
    day = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


@pytest.fixture
def people(desk, manager, service, therapist, client_record):
    driver = factories.driver(first_name="Ben", last_name="Reyes")
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow(14),
        needs_transport=True,
    )
    link = create_payment_link(actor=desk, appointment_id=appointment.pk)
    # A session under way with cash recorded: the phone page's payment form and hand-over,
    # and the desk's Verify on the queues page, are checked too.
    started = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow(10),
    )
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=started.pk, action=action)
    record_collection(actor=therapist, appointment_id=started.pk, method="cash", amount="500.00")
    return {
        "anonymous": None,
        "desk": desk,
        "manager": manager,
        "therapist": therapist,
        "driver": driver,
        "appointment": appointment,
        "pay": link.gateway_link_id.removeprefix("plink_"),
    }


def marked(*marks):
    def apply(test):
        for mark in reversed(marks):
            test = mark(test)
        return test

    return apply


@pytest.mark.parametrize("width", sorted(VIEWPORTS))
@marked(*browser_marks)
@pytest.mark.skipif(
    not AXE.exists() and not IN_CI, reason="needs axe-core: make axe (npm install axe-core)"
)
def test_pages_have_no_accessibility_violations(site, chromium, people, width):
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: make axe")
    found = {}
    for name, (role, path) in PAGES.items():
        page = site.page(chromium, people[role], phone=width == "phone")
        appointment = people["appointment"]
        page.goto(
            site.url(
                path.format(
                    appointment=appointment.pk, client=appointment.client_id, pay=people["pay"]
                )
            )
        )
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        if violations:
            found[f"{name} as {role} at {width} ({path})"] = violations
        page.context.close()
    assert not found, json.dumps(found, indent=1)
