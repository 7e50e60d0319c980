"""Razorpay through its official SDK (`razorpay`): Payment Links, refunds, webhooks.

The SDK is pointed at RAZORPAY_API_URL (it appends the /v1/... paths), so the tests'
stand-in answers in its place. Webhooks: `X-Razorpay-Signature` is the hex HMAC-SHA256
of the raw body with RAZORPAY_WEBHOOK_SECRET; `X-Razorpay-Event-Id` names the event
(the same id on every retry of it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import razorpay
import requests
from razorpay.errors import BadRequestError, GatewayError, ServerError, SignatureVerificationError

from scheduling import gateways
from scheduling.gateways import BadSignature, BadWebhook, Link, Refunded, Webhook

STATUSES = {
    "created": gateways.LINK_PENDING,
    "partially_paid": gateways.LINK_PARTIALLY_PAID,
    "paid": gateways.LINK_PAID,
    "expired": gateways.LINK_EXPIRED,
    "cancelled": gateways.LINK_CANCELLED,
}
EVENTS = {
    "payment_link.paid": gateways.PAID,
    "payment_link.partially_paid": gateways.PARTIALLY_PAID,
    "payment_link.expired": gateways.EXPIRED,
    "payment_link.cancelled": gateways.CANCELLED,
    "refund.processed": gateways.REFUND_PROCESSED,
}
SIGNATURE = "X-Razorpay-Signature"
EVENT_ID = "X-Razorpay-Event-Id"


class RazorpayGateway:
    name = "razorpay"

    def __init__(
        self, *, key_id: str, key_secret: str, webhook_secret: str, api_url: str, timeout: float
    ) -> None:
        self.webhook_secret = webhook_secret
        self.timeout = timeout
        self.configured = bool(key_id and key_secret)
        self.client = razorpay.Client(auth=(key_id, key_secret), base_url=api_url.rstrip("/"))

    def create_link(
        self,
        *,
        reference: str,
        amount_minor: int,
        currency: str,
        description: str,
        expires_at: datetime,
        customer: Mapping[str, str],
    ) -> Link:
        body = {
            "amount": amount_minor,
            "currency": currency,
            # One link pays the balance; a part payment is for a person (docs/payments.md).
            "accept_partial": False,
            "expire_by": int(expires_at.timestamp()),
            "reference_id": reference[:40],
            "description": description[:2048],
            "customer": {k: v for k, v in customer.items() if v},
            # We send the link ourselves (the notification outbox), once.
            "notify": {"sms": False, "email": False},
            "reminder_enable": False,
        }
        return _link(self._call(self.client.payment_link.create, body))

    def fetch_link(self, link_id: str) -> Link:
        return _link(self._call(self.client.payment_link.fetch, link_id))

    def refund(self, *, payment_id: str, amount_minor: int, currency: str) -> Refunded:
        answer = self._call(self.client.payment.refund, payment_id, {"amount": amount_minor})
        try:
            status = "processed" if answer["status"] == "processed" else "pending"
            return Refunded(
                refund_id=_text(answer["id"]), status=status, amount_minor=_minor(answer["amount"])
            )
        except (KeyError, TypeError, BadWebhook) as exc:
            raise gateways.GatewayError(
                f"Razorpay's refund answer was unreadable ({exc})."
            ) from None

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str], now: datetime) -> Webhook:
        check_signature(body, headers.get(SIGNATURE, ""), self.webhook_secret)
        return parse_event(body, headers)

    def _call(self, method: Any, *args: Any) -> dict:
        if not self.configured:
            raise gateways.GatewayError("Razorpay is not configured (RAZORPAY_KEY_ID/SECRET).")
        try:
            answer = method(*args, timeout=self.timeout)
        except BadRequestError as exc:
            raise gateways.GatewayError(f"Razorpay refused: {exc or 'bad request'}.") from exc
        except (GatewayError, ServerError) as exc:
            raise gateways.GatewayError(f"Razorpay failed: {exc or 'server error'}.") from exc
        except requests.Timeout as exc:
            raise gateways.GatewayError("Razorpay did not answer in time.") from exc
        except (requests.RequestException, ValueError) as exc:
            raise gateways.GatewayError(f"Razorpay could not be reached ({exc}).") from exc
        if not isinstance(answer, dict):
            raise gateways.GatewayError("Razorpay's answer was not an object.")
        return answer


def check_signature(body: bytes, signature: str, secret: str) -> None:
    """Razorpay's scheme, through the SDK's own check (constant-time)."""
    if not secret:
        raise BadSignature("No webhook secret is configured, so no webhook can be trusted.")
    if not signature:
        raise BadSignature(f"The {SIGNATURE} header is missing.")
    try:
        text = body.decode("utf-8")
        razorpay.Utility(None).verify_webhook_signature(text, signature, secret)
    except (UnicodeDecodeError, SignatureVerificationError, TypeError):
        raise BadSignature("The webhook's signature does not match its body.") from None


def parse_event(body: bytes, headers: Mapping[str, str]) -> Webhook:
    """A Razorpay event (the fake gateway sends the same shape)."""
    event_id = headers.get(EVENT_ID, "").strip()
    if not event_id or len(event_id) > 100:
        raise BadWebhook(f"The {EVENT_ID} header is missing or too long.")
    try:
        event = json.loads(body)
    except ValueError:
        raise BadWebhook("The body is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise BadWebhook('The body has no "event".')
    kind = EVENTS.get(event["event"], gateways.OTHER)
    payload = event.get("payload")
    if kind == gateways.OTHER:
        return Webhook(event_id=event_id, event_type=event["event"][:64], kind=kind)
    if not isinstance(payload, dict):
        raise BadWebhook('The body has no "payload".')
    try:
        if kind == gateways.REFUND_PROCESSED:
            refund = payload["refund"]["entity"]
            return Webhook(
                event_id=event_id,
                event_type=event["event"],
                kind=kind,
                refund_id=_text(refund["id"]),
                payment_id=_text(refund["payment_id"]),
                amount_minor=_minor(refund["amount"]),
                currency=_text(refund["currency"]),
            )
        link = payload["payment_link"]["entity"]
        payment = (payload.get("payment") or {}).get("entity") or {}
        paid = kind in (gateways.PAID, gateways.PARTIALLY_PAID)
        return Webhook(
            event_id=event_id,
            event_type=event["event"],
            kind=kind,
            link_id=_text(link["id"]),
            payment_id=_text(payment["id"]) if paid and payment else "",
            amount_minor=_minor(payment["amount"] if paid and payment else link["amount"]),
            currency=_text(payment.get("currency") or link["currency"]),
        )
    except (KeyError, TypeError, AttributeError):
        raise BadWebhook(f"The {event['event']} event is missing its entities.") from None


def _link(answer: dict) -> Link:
    try:
        payments = [p for p in answer.get("payments") or [] if isinstance(p, dict)]
        captured = [p for p in payments if p.get("status") == "captured"]
        expire_by = answer.get("expire_by")
        return Link(
            link_id=_text(answer["id"]),
            url=_text(answer.get("short_url") or "", limit=500),
            amount_minor=_minor(answer["amount"]),
            currency=_text(answer["currency"]),
            status=STATUSES.get(answer["status"], gateways.LINK_PENDING),
            expires_at=datetime.fromtimestamp(expire_by, tz=UTC) if expire_by else None,
            payment_id=_text(captured[0]["payment_id"]) if captured else "",
            amount_paid_minor=_minor(answer.get("amount_paid") or 0),
        )
    except (KeyError, TypeError, ValueError, OverflowError, BadWebhook) as exc:
        raise gateways.GatewayError(f"Razorpay's link was unreadable ({exc}).") from None


def _text(value: object, limit: int = 64) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise BadWebhook(f"{value!r} is not an id.")
    return value


def _minor(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**12:
        raise BadWebhook(f"{value!r} is not an amount in minor units.")
    return value
