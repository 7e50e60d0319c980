"""What the browser tests share: the desk's people and service (Ana, Maria, the Swedish
massage), booking through the service, the day and time helpers, waiting for htmx to
settle, the new-booking form, and axe-core's check (AXE, AXE_TAGS, axe_violations). The
servers and Chromium themselves are tests/browser_support.py's fixtures."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.utils import timezone

from scheduling.models import Appointment
from scheduling.services.appointments import create_appointment
from tests import factories
from tests.live_support import BASE_DIR

AXE = BASE_DIR / "var" / "node" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.1 A and AA, and axe's best practices (landmarks, headings, labels and the like).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_violations(page) -> list[dict]:
    """Run axe-core on the page as it is: its violations, each with up to five nodes."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
        }
        for v in result["violations"]
    ]


def tomorrow() -> date:
    return timezone.localdate() + timedelta(days=1)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def book(actor, client, service, therapist, start, **extra) -> Appointment:
    return create_appointment(
        actor=actor,
        client_id=client.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
        **extra,
    )


def slot_id(start: datetime) -> str:
    return f"#start-{timezone.localtime(start):%H%M}"


def settled(page) -> None:
    """Until htmx has swapped and set up what it fetched: an event on an element htmx has
    not yet processed would be lost (no person is that fast; a test is)."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


def open_new_form(site, chromium, user, **query: Any):
    page = site.page(chromium, user)
    params = "&".join(f"{k}={v}" for k, v in {"date": tomorrow().isoformat(), **query}.items())
    page.goto(site.url(f"/desk/appointments/new/?{params}"))
    return page


@pytest.fixture
def rita(db):
    """The receptionist at the desk."""
    return factories.UserFactory(
        role="receptionist", username="rita", first_name="Rita", last_name="Santos"
    )


@pytest.fixture
def massage(db):
    return factories.ServiceFactory(name="Swedish massage", duration_minutes=60, buffer_minutes=15)


@pytest.fixture
def ana(massage):
    return factories.therapist(massage, username="ana", first_name="Ana", last_name="Cruz")


@pytest.fixture
def maria(db):
    return factories.ClientFactory(
        name="Maria Santos", phone="+639171234567", address="12 Acacia St, Makati"
    )
