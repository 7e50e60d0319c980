"""PayMongo (GCash, Maya and cards in the Philippines): its Links API over plain HTTP.

PayMongo has no official Python SDK, so this is a small client of its JSON:API: HTTP
Basic with the secret key as the user name, `{"data": {"attributes": ...}}` bodies,
`{"errors": [{"code", "detail"}]}` on failure. Webhooks carry `Paymongo-Signature:
t=<unix time>,te=<test signature>,li=<live signature>`, each the hex HMAC-SHA256 of
"<t>.<raw body>" with PAYMONGO_WEBHOOK_SECRET; a live key's events are checked against
`li`, a test key's against `te`, and `t` must be within the tolerance of our clock."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests

from scheduling import gateways
from scheduling.gateways import BadSignature, BadWebhook, Link, Refunded, Webhook

SIGNATURE = "Paymongo-Signature"
EVENTS = {
    "link.payment.paid": gateways.PAID,
    "payment.refund.updated": gateways.REFUND_PROCESSED,
}


class PayMongoGateway:
    name = "paymongo"

    def __init__(
        self,
        *,
        secret_key: str,
        webhook_secret: str,
        api_url: str,
        timeout: float,
        tolerance_seconds: int,
    ) -> None:
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.tolerance = tolerance_seconds
        self.live = secret_key.startswith("sk_live_")

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
        if currency != "PHP":
            raise gateways.GatewayError(f"PayMongo links are in PHP, not {currency}.")
        attributes = {
            "amount": amount_minor,
            "description": description[:255],
            "remarks": reference,
        }
        return _link(self._call("POST", "/v1/links", {"data": {"attributes": attributes}}))

    def fetch_link(self, link_id: str) -> Link:
        return _link(self._call("GET", f"/v1/links/{link_id}"))

    def refund(self, *, payment_id: str, amount_minor: int, currency: str) -> Refunded:
        body = {
            "data": {
                "attributes": {
                    "amount": amount_minor,
                    "payment_id": payment_id,
                    "reason": "requested_by_customer",
                }
            }
        }
        data = self._call("POST", "/v1/refunds", body)
        try:
            attributes = data["attributes"]
            status = "processed" if attributes["status"] == "succeeded" else "pending"
            return Refunded(
                refund_id=_text(data["id"]),
                status=status,
                amount_minor=_minor(attributes["amount"]),
            )
        except (KeyError, TypeError, BadWebhook) as exc:
            raise gateways.GatewayError(
                f"PayMongo's refund answer was unreadable ({exc})."
            ) from None

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str], now: datetime) -> Webhook:
        self._check_signature(body, headers.get(SIGNATURE, ""), now)
        try:
            event = json.loads(body)["data"]
            attributes = event["attributes"]
            event_id, event_type = _text(event["id"], 100), _text(attributes["type"])
        except (ValueError, KeyError, TypeError, BadWebhook):
            raise BadWebhook("The body is not a PayMongo event.") from None
        kind = EVENTS.get(event_type, gateways.OTHER)
        if kind == gateways.OTHER:
            return Webhook(event_id=event_id, event_type=event_type, kind=kind)
        try:
            resource = attributes["data"]
            inner = resource["attributes"]
            if kind == gateways.REFUND_PROCESSED:
                if inner["status"] != "succeeded":
                    return Webhook(event_id=event_id, event_type=event_type, kind=gateways.OTHER)
                return Webhook(
                    event_id=event_id,
                    event_type=event_type,
                    kind=kind,
                    refund_id=_text(resource["id"]),
                    payment_id=_text(inner["payment_id"]),
                    amount_minor=_minor(inner["amount"]),
                    currency=_text(inner["currency"]),
                )
            payments = [p["data"] for p in inner.get("payments") or []]
            paid = [p for p in payments if p["attributes"]["status"] == "paid"]
            payment = paid[-1] if paid else None
            return Webhook(
                event_id=event_id,
                event_type=event_type,
                kind=kind,
                link_id=_text(resource["id"]),
                payment_id=_text(payment["id"]) if payment else "",
                amount_minor=_minor(
                    payment["attributes"]["amount"] if payment else inner["amount"]
                ),
                currency=_text(
                    payment["attributes"]["currency"] if payment else inner.get("currency", "PHP")
                ),
            )
        except (KeyError, TypeError, AttributeError, BadWebhook):
            raise BadWebhook(f"The {event_type} event is missing its resource.") from None

    def _check_signature(self, body: bytes, header: str, now: datetime) -> None:
        if not self.webhook_secret:
            raise BadSignature("No webhook secret is configured, so no webhook can be trusted.")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        stamp, signature = parts.get("t", ""), parts.get("li" if self.live else "te", "")
        if not stamp.isdigit() or not signature or len(stamp) > 12:
            raise BadSignature(f"The {SIGNATURE} header is missing or malformed.")
        if abs(now.timestamp() - int(stamp)) > self.tolerance:
            raise BadSignature("The webhook's timestamp is too far from now (a replay?).")
        expected = sign(self.webhook_secret, stamp, body)
        if not hmac.compare_digest(expected, signature):
            raise BadSignature("The webhook's signature does not match its body.")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        if not self.secret_key:
            raise gateways.GatewayError("PayMongo is not configured (PAYMONGO_SECRET_KEY).")
        try:
            response = requests.request(
                method,
                self.api_url + path,
                json=body,
                auth=(self.secret_key, ""),
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise gateways.GatewayError("PayMongo did not answer in time.") from exc
        except requests.RequestException as exc:
            raise gateways.GatewayError(f"PayMongo could not be reached ({exc}).") from exc
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 400 or not isinstance(answer, dict):
            raise gateways.GatewayError(_error(response.status_code, answer))
        data = answer.get("data")
        if not isinstance(data, dict):
            raise gateways.GatewayError("PayMongo's answer had no data.")
        return data


def sign(secret: str, stamp: str, body: bytes) -> str:
    message = stamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _error(status: int, answer: Any) -> str:
    detail = ""
    if isinstance(answer, dict) and isinstance(answer.get("errors"), list) and answer["errors"]:
        first = answer["errors"][0]
        if isinstance(first, dict):
            detail = str(first.get("detail") or first.get("code") or "")[:200]
    if status == 401:
        return f"PayMongo refused our key: {detail or 'unauthorized'}."
    if status >= 500:
        return f"PayMongo failed ({status}){': ' + detail if detail else ''}."
    return f"PayMongo refused ({status}): {detail or 'bad request'}."


def _link(data: dict) -> Link:
    try:
        attributes = data["attributes"]
        payments = [p["data"] for p in attributes.get("payments") or []]
        paid = [p for p in payments if p["attributes"]["status"] == "paid"]
        status = gateways.LINK_PAID if attributes["status"] == "paid" else gateways.LINK_PENDING
        if attributes.get("archived") and status == gateways.LINK_PENDING:
            status = gateways.LINK_CANCELLED
        return Link(
            link_id=_text(data["id"]),
            url=_text(attributes["checkout_url"], limit=500),
            amount_minor=_minor(attributes["amount"]),
            currency=_text(attributes.get("currency") or "PHP"),
            status=status,
            payment_id=_text(paid[-1]["id"]) if paid else "",
            amount_paid_minor=sum(_minor(p["attributes"]["amount"]) for p in paid),
        )
    except (KeyError, TypeError, BadWebhook) as exc:
        raise gateways.GatewayError(f"PayMongo's link was unreadable ({exc}).") from None


def _text(value: object, limit: int = 64) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadWebhook(f"{value!r} is not an id.")
    return value


def _minor(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**12:
        raise BadWebhook(f"{value!r} is not an amount in minor units.")
    return value
