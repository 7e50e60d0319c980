"""The managers' admin site (scheduling.admin.site), mounted here on /admin/."""

from __future__ import annotations

import html
import re
from datetime import time, timedelta

import pytest
from django.apps import apps
from django.core import checks
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from django.utils import timezone

from scheduling.admin import site
from scheduling.gateways import fake
from scheduling.models import (
    Appointment,
    Break,
    Client,
    DispatchDecision,
    IdempotencyKey,
    Notification,
    StreamEvent,
    TimeOff,
    Transition,
    Trip,
    User,
    WorkingHours,
)
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.choosing import book_any_therapist
from scheduling.services.clients import update_client
from scheduling.services.dispatch import run_pass
from scheduling.services.gateway_payments import (
    create_payment_link,
    receive_webhook,
    refund_payment,
)
from scheduling.services.operations import record_periodic_run
from scheduling.services.payments import record_collection
from scheduling.services.retention import prune
from scheduling.services.series import Repeat, book_series
from scheduling.services.trips import set_shift
from scheduling.services.visits import SessionAsk, book_visit
from tests import factories

# The test mounts the site itself, independent of config/urls.py.
urlpatterns = [path("admin/", site.urls)]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

MODELS = sorted(site._registry, key=lambda model: model._meta.label)
READ_ONLY = {
    "Transition",
    "StreamEvent",
    "StreamEventRecipient",
    "EventCounter",
    "StreamRetention",
    "Trip",
    "IdempotencyKey",
    "DispatchDecision",
    "TherapistChoice",
    "Notification",
    "Payment",
    "PeriodicRun",
    "Refund",
    "WebhookEvent",
    "Series",
    "Visit",
}


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def populated(desk, therapist, service, client_record, tomorrow_at):
    """At least one row of every model, written the way the product writes them."""
    driver = factories.driver(vehicle="car", seats=4, username="ramon")
    update_client(client=client_record, area=factories.ServiceAreaFactory(name="Makati").pk)
    Break.objects.create(staff=therapist, weekday=0, start=time(12), end=time(13))
    # A day none of the bookings below touch, whatever the hour the test runs at.
    start = tomorrow_at(9) + timedelta(days=4)
    TimeOff.objects.create(staff=therapist, start=start, end=start + timedelta(hours=4))
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(10),
        needs_transport=True,
    )
    # The booking wrote its notifications; the dispatcher assigns a trip and logs why.
    set_shift(driver=driver, on_shift=True)
    run_pass(now=appointment.start - timedelta(minutes=60))
    IdempotencyKey.objects.create(user=desk, key="retry-1", fingerprint="0" * 64)
    # "Any free therapist" records its decision (issue 13).
    other = book_any_therapist(
        actor=desk, client_id=client_record.pk, service_id=service.pk, start=tomorrow_at(15)
    )
    # A standing booking (issue 14).
    book_series(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(17) + timedelta(days=1),
        repeat=Repeat(every_weeks=2, count=2),
    )
    # A couples visit (issue 14): Ana and another therapist, with the car.
    partner = factories.therapist(service, username="partner-admin")
    book_visit(
        actor=desk,
        client_id=client_record.pk,
        start=tomorrow_at(10) + timedelta(days=2),
        sessions=[SessionAsk(service.pk, therapist.pk), SessionAsk(service.pk, partner.pk)],
        needs_transport=True,
    )
    prune(batch=10)  # nothing old yet: it only writes its stream mark
    # What every periodic task writes as it starts (the task_prerun hook), for /health/.
    record_periodic_run(task="scheduling.sweep.prune", now=timezone.now())
    # The therapist records cash once the session has started (issue 15).
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=action)
    record_collection(
        actor=therapist, appointment_id=appointment.pk, method="cash", amount="100.00"
    )
    # Another booking paid through the (fake) gateway's link and its webhook, then part
    # refunded by a manager (issue 15).
    link = create_payment_link(actor=desk, appointment_id=other.pk)
    _, events = fake.pay(link.gateway_link_id.removeprefix("plink_"), now=timezone.now())
    for body, headers in events:
        receive_webhook(gateway="fake", body=body, headers=headers)
    boss = factories.UserFactory(role="manager", username="boss-admin")
    refund_payment(actor=boss, payment_id=link.pk, amount="10.00")
    return appointment


def login(client, user: User) -> None:
    client.force_login(User.objects.get(pk=user.pk))


@pytest.fixture
def manager_client(client, manager):
    login(client, manager)
    return client


def test_every_scheduling_model_is_registered():
    assert set(apps.get_app_config("scheduling").get_models()) <= set(site._registry)


def test_admin_configuration_passes_django_checks():
    errors = [e for e in checks.run_checks(tags=[checks.Tags.admin]) if e.is_serious()]
    assert errors == []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_manager_opens_changelist_and_change_page_of_every_model(populated, manager_client, model):
    assert manager_client.get(url(model, "changelist")).status_code == 200

    obj = model.objects.first()
    assert obj is not None, f"the fixture should create a {model.__name__}"
    assert manager_client.get(url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize(
    "model", [m for m in MODELS if m.__name__ not in READ_ONLY], ids=lambda m: m.__name__
)
def test_manager_opens_add_page_where_adding_is_allowed(manager_client, model):
    expected = 403 if model is Appointment else 200  # bookings go through the desk's service
    assert manager_client.get(url(model, "add")).status_code == expected


@pytest.mark.parametrize(
    "model",
    [Transition, StreamEvent, Trip, DispatchDecision, Notification],
    ids=lambda m: m.__name__,
)
def test_logs_and_dispatch_are_read_only(populated, manager_client, model):
    obj = model.objects.first()
    assert manager_client.get(url(model, "add")).status_code == 403
    assert manager_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    page = manager_client.get(url(model, "change", obj.pk)).content.decode()
    assert 'name="_save"' not in page
    assert model.objects.filter(pk=obj.pk).exists()


def test_appointment_status_cannot_be_edited(populated, manager_client):
    page = manager_client.get(url(Appointment, "change", populated.pk)).content.decode()
    assert 'name="status"' not in page  # shown as text: the state machine changes it
    assert 'name="notes"' in page


def form_fields(page: str) -> dict[str, str]:
    """The values a browser would send back from an admin change page."""
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    fields.update(re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>([^<]*)</textarea>', page))
    for name, options in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', options)
        fields[name] = chosen.group(1) if chosen else ""
    return {k: html.unescape(v) for k, v in fields.items() if not k.startswith("_")}


def test_admin_edits_of_an_appointment_go_through_the_services(populated, manager_client):
    page = manager_client.get(url(Appointment, "change", populated.pk)).content.decode()
    fields = form_fields(page)
    events_before = StreamEvent.objects.count()
    # The payments are shown, read-only; the payment status is not a field to set.
    assert "Payments" in page and "100.00" in page
    assert 'name="payment_status"' not in page

    fields.update(address="2F, 14 Jupiter St., Makati", payment_status="paid")
    response = manager_client.post(url(Appointment, "change", populated.pk), fields)

    assert response.status_code == 302, response.content.decode()[:2000]
    populated.refresh_from_db()
    # A posted payment_status is ignored: it is derived from the payments.
    assert (populated.address, populated.payment_status) == ("2F, 14 Jupiter St., Makati", "unpaid")
    # Dashboards and the API's cached pages hear of the change.
    added = StreamEvent.objects.filter(seq__gt=0).order_by("-seq")[:1]
    assert StreamEvent.objects.count() == events_before + 1
    assert {e.type for e in added} == {"appointment.updated"}
    assert added[0].data["address"] == "2F, 14 Jupiter St., Makati"


def test_manager_without_is_staff_can_log_in(client, manager):
    manager.set_password("Sampaguita-2026!")
    manager.save()
    assert not manager.is_staff

    response = client.post(
        reverse("admin:login"),
        {"username": manager.username, "password": "Sampaguita-2026!", "next": "/admin/"},
    )

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("role", ["receptionist", "therapist", "driver"])
def test_other_roles_cannot_log_in_even_with_is_staff(client, role):
    user = factories.UserFactory(role=role, is_staff=True)
    user.set_password("Sampaguita-2026!")
    user.save()

    response = client.post(
        reverse("admin:login"), {"username": user.username, "password": "Sampaguita-2026!"}
    )

    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("role", ["receptionist", "therapist", "driver"])
def test_other_roles_are_sent_to_login(client, role):
    login(client, factories.UserFactory(role=role, is_staff=True))

    for target in ("/admin/", url(Client, "changelist"), url(User, "changelist")):
        response = client.get(target)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_anonymous_and_inactive_managers_are_sent_to_login(client):
    assert client.get(url(Client, "changelist")).status_code == 302
    login(client, factories.UserFactory(role="manager", is_active=False))
    assert client.get(url(Client, "changelist")).status_code == 302


def test_superuser_is_a_manager_whatever_the_stored_role(client):
    login(client, factories.UserFactory(role="receptionist", is_superuser=True))
    assert client.get(url(Client, "changelist")).status_code == 200


def test_client_search_by_name_and_phone_fragment(manager_client, client_record):
    other = factories.ClientFactory(name="Jose Reyes", phone="+639998887766")
    changelist = url(Client, "changelist")

    def found(term: str) -> set[int]:
        response = manager_client.get(changelist, {"q": term})
        assert response.status_code == 200
        return {c.pk for c in response.context["cl"].result_list}

    assert found("santos") == {client_record.pk}
    assert found("917 123") == {client_record.pk}  # digits, whatever the spacing
    assert found("8887766") == {other.pk}
    assert found("nobody") == set()


def test_admin_normalises_client_phone(manager_client):
    data = {"name": "Liza Garcia", "phone": "0917 765 4321", "preferences": "{}"}
    response = manager_client.post(url(Client, "add"), data)
    assert response.status_code == 302
    client = Client.objects.get(name="Liza Garcia")
    assert (client.phone, client.phone_digits) == ("+639177654321", "639177654321")

    response = manager_client.post(url(Client, "add"), {**data, "phone": "12"})
    assert response.status_code == 200
    assert Client.objects.count() == 1


def test_manager_can_change_a_staff_password(manager_client, therapist):
    page = reverse("admin:auth_user_password_change", args=[therapist.pk])
    assert manager_client.get(page).status_code == 200
    data = {"usable_password": "true", "password1": "Ilang-Ilang-77", "password2": "Ilang-Ilang-77"}
    assert manager_client.post(page, data).status_code == 302
    therapist.refresh_from_db()
    assert therapist.check_password("Ilang-Ilang-77")


def test_working_hours_are_added_by_weekday_name(manager_client, therapist):
    page = manager_client.get(url(WorkingHours, "add")).content.decode()
    assert ">Wednesday</option>" in page

    data = {"staff": therapist.pk, "weekday": "2", "start": "07:00", "end": "08:00"}
    assert manager_client.post(url(WorkingHours, "add"), data).status_code == 302
    assert therapist.working_hours.filter(weekday=2, start=time(7)).exists()

    bad = {**data, "start": "09:00", "end": "08:00"}
    assert manager_client.post(url(WorkingHours, "add"), bad).status_code == 200
    assert not therapist.working_hours.filter(weekday=2, start=time(9)).exists()


def test_therapist_added_in_admin_gets_profile_and_default_hours(manager_client, settings):
    settings.SCHEDULING = {**settings.SCHEDULING, "DEFAULT_WORKING_HOURS": "09:00-18:00"}
    response = manager_client.post(
        url(User, "add"),
        {
            "username": "kristine",
            "role": "therapist",
            "first_name": "Kristine",
            "last_name": "Mendoza",
            "phone": "0917 555 0114",
            "usable_password": "true",
            "password1": "Sampaguita-2026!",
            "password2": "Sampaguita-2026!",
        },
    )

    assert response.status_code == 302
    user = User.objects.get(username="kristine")
    assert user.phone == "+639175550114"
    assert user.therapist_profile is not None
    assert set(user.working_hours.values_list("weekday", "start", "end")) == {
        (day, time(9), time(18)) for day in range(7)
    }


@pytest.mark.parametrize("model", [Appointment, Trip, Transition], ids=lambda m: m.__name__)
def test_changelists_do_not_query_per_row(
    manager_client, desk, service, client_record, tomorrow_at, model
):
    """The same number of queries for one row as for several (list_select_related)."""
    therapists = [factories.therapist(service, username=f"t{n}") for n in range(4)]
    for n in range(4):  # the four visits' legs run at the same time
        factories.driver(username=f"d{n}")

    def book(therapist: User) -> None:
        create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=tomorrow_at(10),
            needs_transport=True,
        )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert manager_client.get(url(model, "changelist")).status_code == 200
        return len(captured)

    book(therapists[0])
    one = queries()
    for therapist in therapists[1:]:
        book(therapist)
    assert queries() == one
