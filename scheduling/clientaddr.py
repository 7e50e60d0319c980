"""The client's address, for every limit in the product: sign-in lockouts (axes'
AXES_CLIENT_IP_CALLABLE), scheduling/ratelimit.py's per-address counters and DRF's
throttles (`AddressIdentity`).

NUM_PROXIES has DRF's meaning: how many trusted proxies stand in front of the app. Unset
or 0, X-Forwarded-For is ignored (anyone can send one) and the address is REMOTE_ADDR.
With N, each proxy appended the address it saw, so the client is the Nth entry from the
right; entries further left were written by the client and are not believed.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address; None when even the peer's is missing or not an address
    (a request built by a test client, say). A trusted proxy's entry that is not an
    address is not guessed at: the peer's address (the proxy) is used instead."""
    meta = getattr(request, "META", {})
    remote = _address(meta.get("REMOTE_ADDR"))
    proxies = settings.NUM_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if not hops:
        return remote
    return _address(hops[-min(proxies, len(hops))]) or remote


def _address(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None


class AddressIdentity:
    """Mix into a DRF throttle so it counts by the same address as everything else."""

    def get_ident(self, request) -> str:
        return client_address(request) or "unknown"
