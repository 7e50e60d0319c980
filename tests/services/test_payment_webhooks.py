"""Webhooks are hostile input (issue 15 item 4): the battery, per gateway.

Valid, tampered by one byte, wrong secret, no signature, replayed, ten concurrent
duplicates (one settled payment, on real PostgreSQL), wrong amount, wrong currency,
unknown link, expired after paid, junk: the status every time, never a 5xx, and the rows
counted before and after."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test import Client as HttpClient

from scheduling.errors import InvalidTransition, NotPermitted, ValidationFailed
from scheduling.gateways import fake, paymongo
from scheduling.models import Payment, Refund, StreamEvent, Transition, WebhookEvent
from scheduling.services import gateway_payments

T0 = datetime(2030, 3, 4, 2, 0, tzinfo=UTC)
SECRETS = {"razorpay": "rzp-webhook-secret", "paymongo": "whsk_paymongo", "fake": "fake-secret"}
GATEWAYS = tuple(SECRETS)
URL = "/api/payments/webhooks/{}/"


@pytest.fixture
def secrets(settings):
    settings.PAYMENTS = {
        **settings.PAYMENTS,
        "RAZORPAY_WEBHOOK_SECRET": SECRETS["razorpay"],
        "PAYMONGO_WEBHOOK_SECRET": SECRETS["paymongo"],
        "PAYMONGO_SECRET_KEY": "sk_test_standin",
        "FAKE_WEBHOOK_SECRET": SECRETS["fake"],
    }


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False):
        yield T0


@pytest.fixture
def link(book, tomorrow_at, secrets, clock):
    """A pending link per gateway (written as the link service writes it: the gateway's
    side is the adapters' tests' business), on Maria's 1200.00 booking."""
    appointment = book(tomorrow_at(10))

    def make(gateway: str, link_id: str = "plink_A1") -> Payment:
        return Payment.objects.create(
            appointment=appointment,
            amount=Decimal("1200.00"),
            method="gateway",
            gateway=gateway,
            gateway_link_id=link_id,
            link_url="https://pay.example/x",
            link_expires_at=T0 + timedelta(days=2),
        )

    return make


def event(
    gateway: str,
    kind: str = "paid",
    *,
    link_id: str = "plink_A1",
    amount: int = 120000,
    currency: str = "PHP",
    payment_id: str = "pay_P1",
    event_id: str = "evt_1",
    secret: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) as the gateway sends them, signed with its secret."""
    key = SECRETS[gateway] if secret is None else secret
    if gateway == "paymongo":
        body = json.dumps(
            {
                "data": {
                    "id": event_id,
                    "type": "event",
                    "attributes": {
                        "type": "link.payment.paid",
                        "livemode": False,
                        "data": {
                            "id": link_id,
                            "type": "link",
                            "attributes": {
                                "amount": amount,
                                "currency": currency,
                                "status": "paid",
                                "payments": [
                                    {
                                        "data": {
                                            "id": payment_id,
                                            "type": "payment",
                                            "attributes": {
                                                "amount": amount,
                                                "currency": currency,
                                                "status": "paid",
                                            },
                                        }
                                    }
                                ],
                            },
                        },
                    },
                }
            }
        ).encode()
        stamp = str(int(T0.timestamp()))
        return body, {"Paymongo-Signature": f"t={stamp},te={paymongo.sign(key, stamp, body)},li="}
    state = {"id": link_id, "amount": amount, "currency": currency, "payment_id": payment_id}
    body, headers = fake.event(state, f"payment_link.{kind}", now=T0, secret=key)
    headers["X-Razorpay-Event-Id"] = event_id
    return body, headers


def post(gateway: str, body: bytes, headers: dict[str, str], client=None):
    client = client or HttpClient()
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    return client.post(URL.format(gateway), data=body, content_type="application/json", **extra)


def counts() -> tuple[int, ...]:
    return (
        WebhookEvent.objects.count(),
        Payment.objects.filter(status="succeeded").count(),
        Transition.objects.count(),
        StreamEvent.objects.count(),
        Refund.objects.count(),
    )


pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_valid_event_settles_the_link_once(link, gateway):
    payment = link(gateway)
    body, headers = event(gateway)
    response = post(gateway, body, headers)
    assert response.status_code == 200, response.content
    assert response.json() == {"outcome": "applied", "detail": "Done.", "replay": False}
    payment.refresh_from_db()
    assert (payment.status, payment.gateway_payment_id, payment.settled_at) == (
        "succeeded",
        "pay_P1",
        T0,
    )
    assert payment.appointment.payment_status == "paid"
    stored = WebhookEvent.objects.get()
    assert stored.raw_body.encode() == body and stored.payment == payment
    assert set(stored.headers) == set(headers)
    # Replayed: 200, and nothing changes.
    before = counts()
    again = post(gateway, body, headers)
    assert again.status_code == 200 and again.json()["replay"] is True
    assert counts() == before


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_tampered_unsigned_or_wrongly_signed_is_400_and_writes_nothing(link, gateway):
    payment = link(gateway)
    body, headers = event(gateway)
    before = counts()
    tampered = body.replace(b"120000", b"120001", 1)
    assert tampered != body
    header = next(iter(headers))  # the signature's header comes first
    cases = [
        (tampered, headers),
        (body, {**headers, header: ""}),
        (body, {k: v for k, v in headers.items() if k != header}),
        event(gateway, secret="not-the-secret"),
    ]
    for raw, sent in cases:
        response = post(gateway, raw, sent)
        assert response.status_code == 400, (raw[:40], sent, response.content)
        assert response.json()["detail"]
    assert counts() == before
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_a_paymongo_event_outside_the_tolerance_is_400(link):
    link("paymongo")
    body, headers = event("paymongo")
    before = counts()
    with time_machine.travel(T0 + timedelta(minutes=6), tick=False):
        assert post("paymongo", body, headers).status_code == 400
    with time_machine.travel(T0 + timedelta(minutes=4), tick=False):
        assert post("paymongo", body, headers).status_code == 200
    assert counts() != before


def test_no_secret_configured_trusts_nothing(link, settings):
    link("razorpay")
    settings.PAYMENTS = {**settings.PAYMENTS, "RAZORPAY_WEBHOOK_SECRET": ""}
    body, headers = event("razorpay", secret="")
    assert post("razorpay", body, headers).status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize(
    "change, reason",
    [
        ({"amount": 100000}, "but the link was for 1200.00"),
        ({"currency": "INR"}, "Paid in INR"),
        ({"link_id": "plink_nobody"}, "No payment link plink_nobody"),
    ],
)
def test_disagreeing_events_are_200_flagged_and_never_settle(link, gateway, change, reason):
    payment = link(gateway)
    body, headers = event(gateway, **change)
    response = post(gateway, body, headers)
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "flagged" and reason in response.json()["detail"]
    payment.refresh_from_db()
    assert payment.status == "pending" and payment.appointment.payment_status == "unpaid"
    stored = WebhookEvent.objects.get()
    assert stored.outcome == "flagged" and reason in stored.flagged_reason
    if "link_id" in change:
        assert stored.payment is None and payment.flagged_reason == ""
    else:
        assert reason in payment.flagged_reason
        assert list(Payment.objects.flagged()) == [payment]
    assert list(gateway_payments.flagged_webhooks()) == [stored]


@pytest.mark.parametrize("gateway", ["razorpay", "fake"])
def test_expired_after_paid_never_undoes_it(link, gateway):
    payment = link(gateway)
    post(gateway, *event(gateway, "paid", event_id="evt_paid"))
    response = post(gateway, *event(gateway, "expired", event_id="evt_late"))
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    payment.refresh_from_db()
    assert payment.status == "succeeded" and payment.appointment.payment_status == "paid"


@pytest.mark.parametrize("gateway", ["razorpay", "fake"])
def test_expired_closes_a_waiting_link_and_a_late_payment_still_counts(link, gateway):
    payment = link(gateway)
    assert post(gateway, *event(gateway, "expired", event_id="e1")).json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert payment.status == "cancelled"
    # Paid at the gateway all the same: the money is real.
    assert post(gateway, *event(gateway, "paid", event_id="e2")).json()["outcome"] == "applied"
    payment.refresh_from_db()
    assert payment.status == "succeeded"


def test_a_part_payment_is_flagged_not_settled(link):
    payment = link("razorpay")
    response = post("razorpay", *event("razorpay", "partially_paid", amount=50000))
    assert response.status_code == 200 and response.json()["outcome"] == "flagged"
    payment.refresh_from_db()
    assert payment.status == "pending" and "part payment of 500.00" in payment.flagged_reason


def test_a_refund_webhook_processes_our_pending_refund(link):
    payment = link("razorpay")
    post("razorpay", *event("razorpay"))
    payment.refresh_from_db()
    refund = Refund.objects.create(
        payment=payment,
        amount=Decimal("200.00"),
        method="gateway",
        gateway="razorpay",
        gateway_refund_id="rfnd_1",
        created_at=T0,
    )
    body = json.dumps(
        {
            "entity": "event",
            "event": "refund.processed",
            "payload": {
                "refund": {
                    "entity": {
                        "id": "rfnd_1",
                        "amount": 20000,
                        "currency": "PHP",
                        "payment_id": "pay_P1",
                        "status": "processed",
                    }
                }
            },
        }
    ).encode()
    headers = {
        "X-Razorpay-Signature": fake.razorpay_signature(SECRETS["razorpay"], body),
        "X-Razorpay-Event-Id": "evt_refund",
    }
    assert post("razorpay", body, headers).json()["outcome"] == "applied"
    refund.refresh_from_db()
    payment.refresh_from_db()
    assert (refund.status, payment.status, payment.refunded_amount) == (
        "processed",
        "partially_refunded",
        Decimal("200.00"),
    )
    # The same refund made again at the dashboard with a new event: recorded once only.
    headers["X-Razorpay-Event-Id"] = "evt_refund_again"
    assert post("razorpay", body, headers).json()["outcome"] == "ignored"
    assert Refund.objects.count() == 1


JUNK = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b'{"event": 5}',
    b'{"event": "payment_link.paid"}',
    b'{"event": "payment_link.paid", "payload": {}}',
    b'{"event": "payment_link.paid", "payload": {"payment_link": {"entity": {"id": 7}}}}',
    b'{"event": "payment_link.paid", "payload": {"payment_link": {"entity": '
    b'{"id": "plink_A1", "amount": "1200", "currency": "PHP"}}}}',
    b'{"event": "payment_link.paid", "payload": {"payment_link": {"entity": '
    b'{"id": "plink_A1", "amount": true, "currency": "PHP"}}}}',
    b'{"event": "payment_link.paid", "payload": {"payment_link": {"entity": '
    b'{"id": "plink_A1", "amount": 1e400, "currency": "PHP"}}}}',
    b'{"data": {"attributes": {}}}',
    b'{"data": {"id": "evt", "attributes": {"type": "link.payment.paid", "data": 5}}}',
    '{"event": "\u00e9"}'.encode("latin-1"),
    b"\x00\xff" * 50,
    b"{" * 5000,
]


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_junk_is_4xx_never_5xx_signed_or_not(link, gateway):
    payment = link(gateway)
    client = HttpClient(raise_request_exception=False)
    before = counts()
    for n, raw in enumerate(JUNK):
        if gateway == "paymongo":
            stamp = str(int(T0.timestamp()))
            signed = {
                "Paymongo-Signature": f"t={stamp},te={paymongo.sign(SECRETS[gateway], stamp, raw)}"
            }
        else:
            signed = {
                "X-Razorpay-Signature": fake.razorpay_signature(SECRETS[gateway], raw),
                "X-Razorpay-Event-Id": f"evt_junk{n}",
            }
        for headers in (signed, {}, {"X-Razorpay-Signature": "zz", "Paymongo-Signature": "t=x"}):
            response = post(gateway, raw, headers, client)
            assert 400 <= response.status_code < 500, (raw[:60], headers, response.status_code)
            assert response.json()["detail"]
    assert counts() == before
    payment.refresh_from_db()
    assert payment.status == "pending"


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_valid_event_we_do_not_act_on_is_stored_and_200(link, gateway):
    link(gateway)
    if gateway == "paymongo":
        raw = json.dumps(
            {"data": {"id": "evt_o", "attributes": {"type": "source.chargeable", "data": {}}}}
        ).encode()
        stamp = str(int(T0.timestamp()))
        headers = {
            "Paymongo-Signature": f"t={stamp},te={paymongo.sign(SECRETS[gateway], stamp, raw)}"
        }
    else:
        raw = b'{"event": "order.paid", "payload": {}}'
        headers = {
            "X-Razorpay-Signature": fake.razorpay_signature(SECRETS[gateway], raw),
            "X-Razorpay-Event-Id": "evt_o",
        }
    response = post(gateway, raw, headers)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert WebhookEvent.objects.get().outcome == "ignored"


def test_webhooks_ignore_logins_and_need_no_csrf(link, desk):
    link("razorpay")
    client = HttpClient(enforce_csrf_checks=True)
    client.force_login(desk)
    assert post("razorpay", *event("razorpay"), client=client).status_code == 200
    assert post("razorpay", b"{}", {"Authorization": "Token nothing"}).status_code == 400


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("gateway", ["razorpay", "paymongo"])
def test_ten_concurrent_deliveries_settle_one_payment(link, gateway):
    payment = link(gateway)
    body, headers = event(gateway)
    barrier = threading.Barrier(10)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def deliver() -> None:
        try:
            barrier.wait()
            response = post(gateway, body, headers, HttpClient(raise_request_exception=False))
            with lock:
                answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200] * 10, answers
    assert sum(1 for _, body in answers if body["outcome"] == "applied") == 1
    assert sum(1 for _, body in answers if body["replay"]) == 9
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert WebhookEvent.objects.count() == 1
    assert Transition.objects.filter(action="gateway_paid").count() == 1


# --- a person clears the flag -------------------------------------------------------------


def test_a_manager_clears_a_flag_saying_how_and_the_money_stays_as_it_was(link, manager, desk):
    payment = link("razorpay")
    post("razorpay", *event("razorpay", "paid", amount=99900))  # another amount: flagged
    payment.refresh_from_db()
    assert payment.flagged_reason and list(gateway_payments.flagged_webhooks())

    with pytest.raises(NotPermitted):
        gateway_payments.resolve_flag(actor=desk, payment_id=payment.pk, note="called")
    with pytest.raises(ValidationFailed) as blank:
        gateway_payments.resolve_flag(actor=manager, payment_id=payment.pk, note="  ")
    assert "note" in blank.value.errors
    payments_before = list(Payment.objects.values_list("pk", "status", "amount"))
    cleared = gateway_payments.resolve_flag(
        actor=manager, payment_id=payment.pk, note="Client paid the rest in cash"
    )
    assert cleared.flagged_reason == "" and cleared.status == "pending"
    assert not Payment.objects.flagged().exists()
    assert not list(gateway_payments.flagged_webhooks())
    assert WebhookEvent.objects.get().resolved_at == T0
    logged = Transition.objects.filter(action="payment_flag_resolved").get()
    assert logged.actor == manager and "Client paid the rest in cash" in logged.reason
    # No payment written, removed or settled: the money is as the gateway left it.
    assert list(Payment.objects.values_list("pk", "status", "amount")) == payments_before
    with pytest.raises(InvalidTransition):  # once only
        gateway_payments.resolve_flag(actor=manager, payment_id=payment.pk, note="again")


def test_the_queues_page_clears_a_flag_for_a_manager_only(link, client, manager, desk):
    payment = link("razorpay")
    post("razorpay", *event("razorpay", "paid", currency="USD"))
    url = f"/desk/payments/{payment.pk}/resolve/"
    client.force_login(desk)
    assert "How it was sorted out" not in client.get("/desk/queues/").content.decode()
    refused = client.post(url, {"note": "done"}, follow=True)
    assert "Only a manager clears a flagged payment." in refused.content.decode()
    client.force_login(manager)
    page = client.get("/desk/queues/").content.decode()
    assert f'id="resolve-note-{payment.pk}"' in page
    empty = client.post(url, {"note": ""}, follow=True)
    assert "Say how it was sorted out" in empty.content.decode()
    done = client.post(url, {"note": "Refunded at the gateway"}, follow=True)
    assert done.status_code == 200 and "Cleared: 1,200.00 PHP link." in done.content.decode()
    payment.refresh_from_db()
    assert payment.flagged_reason == ""
    assert client.post("/desk/payments/999999/resolve/", {"note": "x"}).status_code == 404
