"""The fake gateway: the embedded default's and the tests' stand-in for a real one.

Its links are pages of the product itself (`/pay/fake/<token>/`); paying one makes the
gateway send a webhook signed as Razorpay signs them (FAKE_WEBHOOK_SECRET) to our own
webhook code. Its state (what each link is, whether it was paid) is the outside world's,
so it lives in the cache, not in our tables. `PAYMENTS["FAKE_MODE"]`, a comma-separated
set, makes it misbehave as gateways do:

- `fail`: creating a link or a refund is refused; `timeout`: they time out;
- `twice`: every webhook is delivered twice; `expired_after`: a paid link's `expired`
  event follows its `paid` one; `drop`: no webhook is sent (the reconcile sweep finds it).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache

from scheduling import gateways
from scheduling.gateways import Link, Refunded, Webhook, razorpay

KEY = "fakegw:{}"


def modes() -> set[str]:
    return {m.strip() for m in str(settings.PAYMENTS.get("FAKE_MODE", "")).split(",") if m.strip()}


class FakeGateway:
    name = "fake"

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
        self._misbehave()
        token = secrets.token_hex(12)
        link_id = f"plink_{token}"
        # The page's path is fixed (scheduling/urls.py "fake-pay"): the gateway is outside
        # our URLconf, which a test may replace.
        url = settings.PAYMENTS["PUBLIC_URL"].rstrip("/") + f"/pay/fake/{token}/"
        state = {
            "id": link_id,
            "url": url,
            "amount": amount_minor,
            "currency": currency,
            "description": description,
            "status": gateways.LINK_PENDING,
            "payment_id": "",
            "expires_at": expires_at.timestamp(),
        }
        _save(state)
        return _link(state)

    def fetch_link(self, link_id: str) -> Link:
        self._misbehave(creating=False)
        state = load(link_id)
        if state is None:
            raise gateways.GatewayError(f"The fake gateway has no link {link_id}.")
        return _link(state)

    def refund(self, *, payment_id: str, amount_minor: int, currency: str) -> Refunded:
        self._misbehave()
        return Refunded(
            refund_id=f"rfnd_{secrets.token_hex(8)}", status="processed", amount_minor=amount_minor
        )

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str], now: datetime) -> Webhook:
        razorpay.check_signature(
            body, headers.get(razorpay.SIGNATURE, ""), settings.PAYMENTS["FAKE_WEBHOOK_SECRET"]
        )
        return razorpay.parse_event(body, headers)

    @staticmethod
    def _misbehave(*, creating: bool = True) -> None:
        mode = modes()
        if "timeout" in mode:
            raise gateways.GatewayError("The fake gateway did not answer in time.")
        if "fail" in mode and creating:
            raise gateways.GatewayError("The fake gateway refused (FAKE_MODE=fail).")


def load(link_id: str) -> dict | None:
    return cache.get(KEY.format(link_id))


def _save(state: dict) -> None:
    cache.set(KEY.format(state["id"]), state, timeout=60 * 60 * 24 * 30)


def _link(state: dict) -> Link:
    from datetime import UTC

    return Link(
        link_id=state["id"],
        url=state["url"],
        amount_minor=state["amount"],
        currency=state["currency"],
        status=state["status"],
        expires_at=datetime.fromtimestamp(state["expires_at"], tz=UTC),
        payment_id=state["payment_id"],
        amount_paid_minor=state["amount"] if state["status"] == gateways.LINK_PAID else 0,
    )


def pay(token: str, *, now: datetime) -> tuple[dict, list[tuple[bytes, dict[str, str]]]]:
    """The client pays on the fake page: the link is paid at the gateway, and these are the
    webhooks (body, headers) the gateway sends about it, in the order it sends them."""
    state = load(f"plink_{token}")
    if state is None:
        raise gateways.GatewayError("This payment link does not exist.")
    if state["status"] == gateways.LINK_PAID:
        return state, []
    if state["status"] != gateways.LINK_PENDING or now.timestamp() > state["expires_at"]:
        raise gateways.GatewayError("This payment link has expired or was cancelled.")
    state["status"] = gateways.LINK_PAID
    state["payment_id"] = f"pay_{secrets.token_hex(8)}"
    _save(state)
    mode = modes()
    if "drop" in mode:
        return state, []
    events = [event(state, "payment_link.paid", now=now)]
    if "expired_after" in mode:
        events.append(event(state, "payment_link.expired", now=now + timedelta(seconds=1)))
    if "twice" in mode:
        events = [e for e in events for _ in (0, 1)]
    return state, events


def event(
    state: dict, name: str, *, now: datetime, secret: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A Razorpay-shaped event about a link, signed; (raw body, headers)."""
    link = {
        "id": state["id"],
        "entity": "payment_link",
        "amount": state["amount"],
        "amount_paid": state["amount"] if name == "payment_link.paid" else 0,
        "currency": state["currency"],
        "status": name.split(".", 1)[1],
    }
    payload: dict = {"payment_link": {"entity": link}}
    if name == "payment_link.paid":
        payload["payment"] = {
            "entity": {
                "id": state["payment_id"],
                "entity": "payment",
                "amount": state["amount"],
                "currency": state["currency"],
                "status": "captured",
            }
        }
    body = {
        "entity": "event",
        "account_id": "acc_fake",
        "event": name,
        "contains": list(payload),
        "payload": payload,
        "created_at": int(now.timestamp()),
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    key = secret if secret is not None else settings.PAYMENTS["FAKE_WEBHOOK_SECRET"]
    return raw, {
        razorpay.SIGNATURE: razorpay_signature(key, raw),
        razorpay.EVENT_ID: f"evt_{secrets.token_hex(8)}",
    }


def razorpay_signature(secret: str, body: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
