"""Delivery backends: one interface, chosen per channel by `SCHEDULING["NOTIFY_BACKENDS"]`.

A backend hands one message to the outside world and says how it went:
- it returns the provider's id for the message: delivered (accepted by the provider);
- `TransientError`: nothing was delivered and trying later may work (timeout before the
  request left, rate limit, provider down);
- `PermanentError`: it will never work as addressed (invalid number, unsubscribed);
- `OutcomeUnknown`: the request may have reached the provider (a read timeout).

`dedupes_by_key` says whether the provider recognises a repeated `Message.key` and answers
with the first message instead of sending again. Only then may a send whose outcome is
unknown be repeated (see scheduling/services/notifications/sweeps.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Message:
    key: str
    channel: str
    to: str
    subject: str
    body: str


class DeliveryError(Exception):
    """The backend could not deliver; the message says why, for the desk."""


class TransientError(DeliveryError):
    """Nothing was delivered; a later attempt may succeed."""


class PermanentError(DeliveryError):
    """Nothing was delivered, and no later attempt will succeed."""


class OutcomeUnknown(DeliveryError):
    """The provider may or may not have taken the message."""


class Backend(Protocol):
    dedupes_by_key: bool

    def send(self, message: Message) -> str: ...


def backend_for(channel: str) -> Backend:
    """The configured backend for `channel`, built afresh so settings changes apply."""
    return import_string(settings.SCHEDULING["NOTIFY_BACKENDS"][channel])()


def masked(address: str) -> str:
    """An address as logs and consoles may show it: enough to tell two apart, no more."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{address[:4]}***{address[-3:]}" if len(address) > 7 else "***"
