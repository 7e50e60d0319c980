"""The Razorpay and PayMongo adapters against local stand-ins that answer as their APIs
do (tests/gateway_standins.py): the requests' shapes, authentication, error bodies, 5xx,
an HTML error page, timeouts, an unreachable host; and the product end to end on each
(a link sent, paid at the gateway, its webhook dropped, settled by the sweep, refunded)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling import gateways
from scheduling.gateways import GatewayError, gateway_for
from scheduling.models import Notification, Payment, Refund
from scheduling.services import gateway_payments
from tests import gateway_standins
from tests.gateway_standins import PAYMONGO_KEY, RAZORPAY_KEY

T0 = datetime(2030, 3, 4, 2, 0, tzinfo=UTC)
KINDS = ("razorpay", "paymongo")


@pytest.fixture(params=KINDS)
def standin(request, settings):
    kind = request.param
    with gateway_standins.running(kind) as server:
        settings.PAYMENTS = {
            **settings.PAYMENTS,
            "TIMEOUT_SECONDS": 0.5,
            "RAZORPAY_KEY_ID": RAZORPAY_KEY[0],
            "RAZORPAY_KEY_SECRET": RAZORPAY_KEY[1],
            "RAZORPAY_API_URL": server.url,
            "PAYMONGO_SECRET_KEY": PAYMONGO_KEY,
            "PAYMONGO_API_URL": server.url,
        }
        yield server


def create(gateway, amount_minor: int = 120000):
    return gateway.create_link(
        reference="appt41-1",
        amount_minor=amount_minor,
        currency="PHP",
        description="Swedish, Tue 10:00",
        expires_at=T0 + timedelta(days=2),
        customer={"name": "Maria Santos", "contact": "+639171234567", "email": ""},
    )


def test_a_link_is_made_fetched_paid_and_refunded(standin):
    adapter = gateway_for(standin.kind)
    link = create(adapter)
    assert (link.status, link.amount_minor, link.currency) == ("pending", 120000, "PHP")
    assert link.url.startswith("https://") and link.link_id in standin.links
    sent = standin.requests[-1]
    assert sent["method"] == "POST"
    if standin.kind == "razorpay":
        user, secret = base64.b64decode(sent["auth"].split()[1]).decode().split(":")
        assert (user, secret) == RAZORPAY_KEY
        assert sent["path"] == "/v1/payment_links"
        body = sent["body"]
        assert (body["amount"], body["currency"], body["accept_partial"]) == (120000, "PHP", False)
        assert body["expire_by"] == int((T0 + timedelta(days=2)).timestamp())
        assert body["notify"] == {"sms": False, "email": False}
        assert link.expires_at == T0 + timedelta(days=2)
    else:
        assert base64.b64decode(sent["auth"].split()[1]).decode() == f"{PAYMONGO_KEY}:"
        assert sent["path"] == "/v1/links"
        assert sent["body"]["data"]["attributes"]["amount"] == 120000
    assert adapter.fetch_link(link.link_id).status == "pending"
    payment_id = standin.pay(link.link_id)
    paid = adapter.fetch_link(link.link_id)
    assert (paid.status, paid.payment_id, paid.amount_paid_minor) == ("paid", payment_id, 120000)
    refunded = adapter.refund(payment_id=payment_id, amount_minor=20000, currency="PHP")
    assert refunded.amount_minor == 20000 and refunded.refund_id in standin.refunds
    assert refunded.status == ("processed" if standin.kind == "razorpay" else "pending")


@pytest.mark.parametrize(
    "mode, words",
    [("500", "failed"), ("html", ""), ("timeout", "did not answer in time")],
)
def test_gateway_failures_are_gateway_errors(standin, mode, words):
    adapter = gateway_for(standin.kind)
    standin.mode = mode
    for call in (lambda: create(adapter), lambda: adapter.fetch_link("plink_x")):
        with pytest.raises(GatewayError) as caught:
            call()
        assert words in caught.value.message


def test_bad_keys_and_bad_requests_are_refusals_with_the_gateways_words(standin, settings):
    key = "RAZORPAY_KEY_SECRET" if standin.kind == "razorpay" else "PAYMONGO_SECRET_KEY"
    with pytest.raises(GatewayError) as caught:
        create(gateway_for(standin.kind), amount_minor=50)
    assert "atleast" in caught.value.message or "less than 10000" in caught.value.message
    with pytest.raises(GatewayError) as caught:
        gateway_for(standin.kind).fetch_link("plink_nothing")
    assert "not exist" in caught.value.message or "cannot be found" in caught.value.message
    settings.PAYMENTS = {**settings.PAYMENTS, key: "sk_test_wrong"}
    with pytest.raises(GatewayError) as caught:
        create(gateway_for(standin.kind))
    assert "refused" in caught.value.message
    assert "Authentication failed" in caught.value.message or "invalid" in caught.value.message


def test_unreachable_and_unconfigured(settings):
    settings.PAYMENTS = {
        **settings.PAYMENTS,
        "TIMEOUT_SECONDS": 0.5,
        "RAZORPAY_KEY_ID": "k",
        "RAZORPAY_KEY_SECRET": "s",
        "RAZORPAY_API_URL": "http://127.0.0.1:9",
        "PAYMONGO_SECRET_KEY": "sk_test_x",
        "PAYMONGO_API_URL": "http://127.0.0.1:9",
    }
    for kind in KINDS:
        with pytest.raises(GatewayError, match="could not be reached"):
            create(gateway_for(kind))
    settings.PAYMENTS = {**settings.PAYMENTS, "RAZORPAY_KEY_ID": "", "PAYMONGO_SECRET_KEY": ""}
    for kind in KINDS:
        with pytest.raises(GatewayError, match="not configured"):
            create(gateway_for(kind))
    with pytest.raises(ValueError):
        gateway_for("stripe")


def test_paymongo_takes_pesos_only(settings):
    settings.PAYMENTS = {**settings.PAYMENTS, "PAYMONGO_SECRET_KEY": PAYMONGO_KEY}
    with pytest.raises(GatewayError, match="PHP"):
        gateway_for("paymongo").create_link(
            reference="r",
            amount_minor=20000,
            currency="USD",
            description="d",
            expires_at=T0,
            customer={},
        )


def test_minor_units_never_go_through_floats():
    assert gateways.to_minor(Decimal("1200.10")) == 120010
    assert gateways.to_minor(Decimal("0.29")) == 29
    assert gateways.from_minor(120010) == Decimal("1200.10")


# --- the product end to end, on each gateway's stand-in ---------------------------------------


@pytest.mark.django_db
def test_send_pay_drop_reconcile_refund(standin, settings, book, tomorrow_at, desk, manager):
    settings.PAYMENT_GATEWAY = standin.kind
    appointment = book(tomorrow_at(10))
    token = Token.objects.create(user=desk).key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = api.post(f"/api/appointments/{appointment.pk}/payment-link/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["gateway"] == standin.kind and body["amount"] == "1200.00"
    payment = Payment.objects.get()
    assert body["url"] == standin.links[payment.gateway_link_id].get(
        "short_url",
        standin.links[payment.gateway_link_id].get("attributes", {}).get("checkout_url"),
    )
    assert Notification.objects.get(kind="payment_link").body.count(body["url"]) == 1
    # The client pays at the gateway; its webhook never arrives.
    standin.pay(payment.gateway_link_id)
    with time_machine.travel(payment.created_at + timedelta(minutes=16), tick=False):
        changes = gateway_payments.reconcile()
    assert len(changes) == 1 and "applied" in changes[0], changes
    payment.refresh_from_db()
    appointment.refresh_from_db()
    assert payment.status == "succeeded" and appointment.payment_status == "paid"
    # A manager refunds part through the gateway.
    manager_api = APIClient()
    manager_api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=manager).key}")
    response = manager_api.post(
        f"/api/payments/{payment.pk}/refund/", {"amount": "200.00"}, format="json"
    )
    assert response.status_code == 201, response.content
    refund = Refund.objects.get()
    assert refund.gateway_refund_id in standin.refunds
    assert standin.requests[-1]["method"] == "POST"
    # Then the gateway fails: 502, nothing written.
    standin.mode = "500"
    response = manager_api.post(f"/api/payments/{payment.pk}/refund/", {}, format="json")
    assert response.status_code == 502 and response.json()["code"] == "gateway_unavailable"
    assert Refund.objects.count() == 1


@pytest.mark.django_db
def test_a_link_the_gateway_refuses_is_502_and_writes_nothing(
    standin, settings, book, tomorrow_at, desk
):
    settings.PAYMENT_GATEWAY = standin.kind
    appointment = book(tomorrow_at(10))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=desk).key}")
    for mode in ("500", "html", "timeout"):
        standin.mode = mode
        response = api.post(f"/api/appointments/{appointment.pk}/payment-link/")
        assert response.status_code == 502, (mode, response.content)
        assert response.json()["detail"]
    assert not Payment.objects.exists() and not Notification.objects.filter(kind="payment_link")


@pytest.mark.django_db
def test_the_sweep_reports_a_gateway_it_cannot_ask(standin, settings, book, tomorrow_at, desk):
    settings.PAYMENT_GATEWAY = standin.kind
    appointment = book(tomorrow_at(10))
    payment = gateway_payments.create_payment_link(actor=desk, appointment_id=appointment.pk)
    standin.mode = "500"
    with time_machine.travel(payment.created_at + timedelta(minutes=16), tick=False):
        changes = gateway_payments.reconcile()
    assert len(changes) == 1 and "not asked" in changes[0]
    payment.refresh_from_db()
    assert payment.status == "pending"
