"""Gateway links, the fake gateway, reconciliation and refunds (issue 15 items 3, 5, 6):
the services and their routes, with the fake gateway (the outside world's stand-in)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.errors import GatewayUnavailable, InvalidTransition, NotPermitted, ValidationFailed
from scheduling.gateways import fake
from scheduling.models import Notification, Payment, Refund, StreamEvent, Transition, WebhookEvent
from scheduling.services import gateway_payments
from scheduling.services.appointments import act_on_appointment
from scheduling.services.payments import balance_of, record_collection, verify_payment
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def appointment(book, tomorrow_at):
    """Maria's 10:00 tomorrow with Ana (1200.00), pending acceptance."""
    return book(tomorrow_at(10))


@pytest.fixture
def fake_mode(settings):
    def use(mode: str) -> None:
        settings.PAYMENTS = {**settings.PAYMENTS, "FAKE_MODE": mode}

    return use


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def token_of(payment: Payment) -> str:
    return payment.gateway_link_id.removeprefix("plink_")


def pay(client, payment: Payment):
    return client.post(f"/pay/fake/{token_of(payment)}/")


def test_a_link_is_for_what_is_due_and_is_sent_once(appointment, desk):
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    assert (link.method, link.status, link.gateway, link.amount) == (
        "gateway",
        "pending",
        "fake",
        Decimal("1200.00"),
    )
    assert link.link_url.endswith(f"/pay/fake/{token_of(link)}/")
    sent = Notification.objects.filter(kind="payment_link")
    assert sent.count() == 1 and link.link_url in sent.get().body
    # Asked again while it is open: the same link, no second message.
    again = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    assert again.pk == link.pk and sent.count() == 1
    assert Transition.objects.filter(action="payment_link").count() == 1
    assert StreamEvent.objects.filter(type="payment.updated").count() == 1


def test_only_the_desk_sends_links_and_not_for_a_closed_booking(appointment, desk, therapist):
    with pytest.raises(NotPermitted):
        gateway_payments.create_payment_link(actor=therapist, appointment_id=appointment.pk)
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel", reason="x")
    with pytest.raises(InvalidTransition):
        gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    assert not Payment.objects.exists()


def test_a_failing_gateway_writes_nothing(appointment, desk, fake_mode):
    for mode in ("fail", "timeout"):
        fake_mode(mode)
        with pytest.raises(GatewayUnavailable):
            gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    assert not Payment.objects.exists() and not Notification.objects.filter(kind="payment_link")


def test_paying_the_fake_page_settles_the_appointment(appointment, desk, client):
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    page = client.get(f"/pay/fake/{token_of(link)}/")
    assert page.status_code == 200 and b"1200.00 PHP" in page.content
    assert pay(client, link).status_code == 200
    link.refresh_from_db()
    appointment.refresh_from_db()
    assert link.status == "succeeded" and link.gateway_payment_id.startswith("pay_")
    assert appointment.payment_status == "paid"
    event = WebhookEvent.objects.get()
    assert (event.gateway, event.event_type, event.outcome, event.payment) == (
        "fake",
        "payment_link.paid",
        "applied",
        link,
    )
    assert json.loads(event.raw_body)["event"] == "payment_link.paid"
    # Paying again is the gateway saying "paid already": no second webhook.
    assert pay(client, link).status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_twice_and_out_of_order_change_nothing_more(appointment, desk, client, fake_mode):
    fake_mode("twice,expired_after")
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    assert pay(client, link).status_code == 200
    link.refresh_from_db()
    assert link.status == "succeeded"
    # paid, paid again (a replay: not stored twice), expired, expired again.
    assert list(WebhookEvent.objects.values_list("event_type", "outcome")) == [
        ("payment_link.paid", "applied"),
        ("payment_link.expired", "ignored"),
    ]
    assert balance_of(link.appointment).status == "paid"


def test_unknown_fake_pages_are_404(client):
    for token in ("nothing", "x" * 100, "../../etc", "%00"):
        assert client.get(f"/pay/fake/{token}/").status_code == 404
        assert client.post(f"/pay/fake/{token}/").status_code == 404


def test_the_sweep_settles_a_paid_link_whose_webhook_was_dropped(
    appointment, desk, client, fake_mode
):
    fake_mode("drop")
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    pay(client, link)
    link.refresh_from_db()
    assert link.status == "pending" and not WebhookEvent.objects.exists()
    now = timezone.now()
    # Too young for the sweep.
    assert gateway_payments.reconcile(now=now) == []
    later = now + timedelta(minutes=16)
    changes = gateway_payments.reconcile(now=later)
    assert len(changes) == 1 and "paid at the gateway, applied" in changes[0]
    link.refresh_from_db()
    assert link.status == "succeeded" and link.settled_at == later
    assert gateway_payments.reconcile(now=later) == []  # nothing left to ask about


def test_reconcile_command_prints_what_it_changed(appointment, desk, client, fake_mode, capsys):
    fake_mode("drop")
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    pay(client, link)
    call_command("reconcile_payments", "--since", (timezone.now() - timedelta(hours=1)).isoformat())
    out = capsys.readouterr().out
    assert f"payment {link.pk}" in out and "applied" in out
    call_command("reconcile_payments")
    assert "nothing to change" in capsys.readouterr().out


def test_the_reconcile_sweep_is_on_the_beat_schedule(settings):
    entries = {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "scheduling.sweep.reconcile_payments" in entries


def test_refunds_partial_then_the_rest(appointment, desk, manager, client):
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    pay(client, link)
    with pytest.raises(NotPermitted):
        gateway_payments.refund_payment(actor=desk, payment_id=link.pk, amount="100.00")
    part = gateway_payments.refund_payment(actor=manager, payment_id=link.pk, amount="200.00")
    link.refresh_from_db()
    assert (part.status, part.method, link.status, link.refunded_amount) == (
        "processed",
        "gateway",
        "partially_refunded",
        Decimal("200.00"),
    )
    assert balance_of(link.appointment).due == Decimal("200.00")
    with pytest.raises(ValidationFailed):
        gateway_payments.refund_payment(actor=manager, payment_id=link.pk, amount="1000.01")
    rest = gateway_payments.refund_payment(actor=manager, payment_id=link.pk)
    link.refresh_from_db()
    assert rest.amount == Decimal("1000.00") and link.status == "refunded"
    assert balance_of(link.appointment).status == "refunded"
    with pytest.raises(InvalidTransition):
        gateway_payments.refund_payment(actor=manager, payment_id=link.pk)
    assert Refund.objects.count() == 2


def test_a_cash_refund_is_recorded(started_with_cash, manager):
    payment = started_with_cash
    refund = gateway_payments.refund_payment(actor=manager, payment_id=payment.pk, amount="300")
    payment.refresh_from_db()
    assert (refund.method, refund.status, payment.status) == (
        "cash",
        "processed",
        "partially_refunded",
    )


def test_a_failed_gateway_refund_writes_nothing(appointment, desk, manager, client, fake_mode):
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    pay(client, link)
    fake_mode("fail")
    with pytest.raises(GatewayUnavailable):
        gateway_payments.refund_payment(actor=manager, payment_id=link.pk)
    link.refresh_from_db()
    assert link.status == "succeeded" and not Refund.objects.exists()


def test_a_cancelled_paid_appointment_is_on_the_to_refund_list(appointment, desk, manager, client):
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    pay(client, link)
    assert list(gateway_payments.to_refund()) == []
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel", reason="ill")
    assert list(gateway_payments.to_refund()) == [link]
    gateway_payments.refund_payment(actor=manager, payment_id=link.pk, amount="100.00")
    assert list(gateway_payments.to_refund()) == [link]  # still holds 1100.00
    gateway_payments.refund_payment(actor=manager, payment_id=link.pk)
    assert list(gateway_payments.to_refund()) == []


@pytest.fixture
def started_with_cash(appointment, therapist, desk):
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=action)
    payment = record_collection(
        actor=therapist, appointment_id=appointment.pk, method="cash", amount="1200.00"
    )
    return verify_payment(actor=desk, payment_id=payment.pk)


# --- over the API ----------------------------------------------------------------------------


def test_the_link_route(appointment, desk):
    response = api_as(desk).post(f"/api/appointments/{appointment.pk}/payment-link/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("gateway", "amount", "currency", "status")} == {
        "gateway": "fake",
        "amount": "1200.00",
        "currency": "PHP",
        "status": "pending",
    }
    assert body["url"].startswith("http") and body["id"] == Payment.objects.get().pk


def test_the_link_route_says_when_the_gateway_fails(appointment, desk, fake_mode):
    fake_mode("fail")
    response = api_as(desk).post(f"/api/appointments/{appointment.pk}/payment-link/")
    assert response.status_code == 502
    assert response.json()["code"] == "gateway_unavailable" and response["Retry-After"]
    assert not Payment.objects.exists()


def test_the_refund_route(started_with_cash, manager, desk):
    payment = started_with_cash
    url = f"/api/payments/{payment.pk}/refund/"
    assert api_as(desk).post(url, {}, format="json").status_code == 403
    for bad in ({"amount": "0"}, {"amount": "abc"}, {"amount": "1200.001"}, {"amount": "5000"}):
        response = api_as(manager).post(url, bad, format="json")
        assert response.status_code == 400, (bad, response.content)
    assert not Refund.objects.exists()
    response = api_as(manager).post(url, {"amount": "200.00"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["status"], body["payment_status"], body["balance_due"]) == (
        "200.00",
        "processed",
        "partially_refunded",
        "200.00",
    )


def test_the_desk_page_sends_a_link(appointment, desk, client):
    client.force_login(desk)
    page = client.get(f"/desk/appointments/{appointment.pk}/")
    assert b"Send payment link" in page.content
    response = client.post(f"/desk/appointments/{appointment.pk}/payment-link/")
    assert response.status_code == 302
    link = Payment.objects.get(method="gateway")
    page = client.get(f"/desk/appointments/{appointment.pk}/")
    assert link.link_url.encode() in page.content


def test_a_therapist_cannot_send_a_link_from_the_desk(appointment, therapist, client):
    client.force_login(therapist)
    response = client.post(f"/desk/appointments/{appointment.pk}/payment-link/")
    assert response.status_code == 403 and not Payment.objects.exists()


def test_factories_still_build(db):
    assert factories.ServiceFactory().price >= 0


def test_flagged_links_and_money_to_refund_are_on_the_needs_attention_page(
    appointment, desk, client
):
    link = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    state = {**fake.load(link.gateway_link_id), "amount": 100}  # paid 1.00, not 1200.00
    body, headers = fake.event(state, "payment_link.paid", now=timezone.now())
    assert gateway_payments.receive_webhook(gateway="fake", body=body, headers=headers).outcome == (
        "flagged"
    )
    client.force_login(desk)
    page = client.get("/desk/queues/").content.decode()
    assert f'id="flagged-{link.pk}"' in page and "but the link was for 1200.00" in page
    # Paid properly after all, then the booking is cancelled: a refund to make.
    state = fake.load(link.gateway_link_id)
    body, headers = fake.event(state, "payment_link.paid", now=timezone.now())
    gateway_payments.receive_webhook(gateway="fake", body=body, headers=headers)
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel", reason="x")
    page = client.get("/desk/queues/").content.decode()
    assert f'id="flagged-{link.pk}"' not in page and f'id="to-refund-{link.pk}"' in page
