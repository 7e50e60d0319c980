"""The client's address, for every limit in the product: sign-in lockouts (axes'
AXES_CLIENT_IP_CALLABLE), scheduling/ratelimit.py's per-address counters and DRF's
throttles (`AddressIdentity`).

NUM_PROXIES has DRF's meaning: how many trusted proxies stand in front of the app. Unset
or 0, X-Forwarded-For is ignored (anyone can send one) and the address is REMOTE_ADDR.
With N, each proxy appended the address it saw, so the client is the Nth entry from the
right; entries further left were written by the client and are not believed.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR") or "unknown"
    proxies = settings.NUM_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if not hops:
        return remote
    return hops[-min(proxies, len(hops))]


class AddressIdentity:
    """Mix into a DRF throttle so it counts by the same address as everything else."""

    def get_ident(self, request) -> str:
        return client_address(request)
