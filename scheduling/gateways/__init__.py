"""Payment gateways behind one interface (issue 15; docs/payments.md).

An adapter creates a hosted payment link, reads a link's status back, refunds a payment,
and verifies and parses a webhook. It speaks the gateway's language (minor units, its
ids, its statuses) and answers in ours (`Link`, `Refunded`, `Webhook`); it writes
nothing to the database. `services/gateway_payments.py` decides what the answers mean.

`gateway_for(name)` builds the adapter; `current()` is the one `PAYMENT_GATEWAY` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from django.conf import settings

NAMES = ("fake", "razorpay", "paymongo")

# What a link can be, in our words.
LINK_PENDING = "pending"
LINK_PAID = "paid"
LINK_PARTIALLY_PAID = "partially_paid"
LINK_EXPIRED = "expired"
LINK_CANCELLED = "cancelled"

# What a webhook says happened.
PAID = "paid"
PARTIALLY_PAID = "partially_paid"
EXPIRED = "expired"
CANCELLED = "cancelled"
REFUND_PROCESSED = "refund_processed"
OTHER = "other"  # a valid event we do not act on


class GatewayError(Exception):
    """The gateway refused, failed or did not answer; `message` is for the desk."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadSignature(Exception):
    """A webhook whose signature is missing or wrong: nothing it says is believed."""


class BadWebhook(Exception):
    """A signed webhook whose body is not an event we can read."""


@dataclass(frozen=True)
class Link:
    link_id: str
    url: str
    amount_minor: int
    currency: str
    status: str
    expires_at: datetime | None = None
    payment_id: str = ""  # the gateway's payment that paid it, once paid
    amount_paid_minor: int = 0


@dataclass(frozen=True)
class Refunded:
    refund_id: str
    status: str  # "processed" or "pending"
    amount_minor: int


@dataclass(frozen=True)
class Webhook:
    event_id: str
    event_type: str  # the gateway's own name for it
    kind: str  # PAID, EXPIRED, ... (ours)
    link_id: str = ""
    payment_id: str = ""
    refund_id: str = ""
    amount_minor: int | None = None
    currency: str = ""


class Gateway(Protocol):
    name: str

    def create_link(
        self,
        *,
        reference: str,
        amount_minor: int,
        currency: str,
        description: str,
        expires_at: datetime,
        customer: Mapping[str, str],
    ) -> Link: ...

    def fetch_link(self, link_id: str) -> Link: ...

    def refund(self, *, payment_id: str, amount_minor: int, currency: str) -> Refunded: ...

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str], now: datetime) -> Webhook:
        """Verify the signature over the raw body, then read the event.

        Raises BadSignature (missing, malformed or wrong) or BadWebhook (signed junk)."""
        ...


def to_minor(amount: Decimal) -> int:
    """1500.00 -> 150000: gateways count in centavos (paise), never in floats."""
    return int((amount * 100).to_integral_exact())


def from_minor(minor: int) -> Decimal:
    return (Decimal(minor) / 100).quantize(Decimal("0.01"))


def gateway_for(name: str) -> Gateway:
    config = settings.PAYMENTS
    if name == "razorpay":
        from scheduling.gateways.razorpay import RazorpayGateway

        return RazorpayGateway(
            key_id=config["RAZORPAY_KEY_ID"],
            key_secret=config["RAZORPAY_KEY_SECRET"],
            webhook_secret=config["RAZORPAY_WEBHOOK_SECRET"],
            api_url=config["RAZORPAY_API_URL"],
            timeout=float(config["TIMEOUT_SECONDS"]),
        )
    if name == "paymongo":
        from scheduling.gateways.paymongo import PayMongoGateway

        return PayMongoGateway(
            secret_key=config["PAYMONGO_SECRET_KEY"],
            webhook_secret=config["PAYMONGO_WEBHOOK_SECRET"],
            api_url=config["PAYMONGO_API_URL"],
            timeout=float(config["TIMEOUT_SECONDS"]),
            tolerance_seconds=int(config["WEBHOOK_TOLERANCE_SECONDS"]),
        )
    if name == "fake":
        from scheduling.gateways.fake import FakeGateway

        return FakeGateway()
    raise ValueError(f"unknown payment gateway {name!r}; one of {', '.join(NAMES)}")


def current() -> Gateway:
    return gateway_for(settings.PAYMENT_GATEWAY)
