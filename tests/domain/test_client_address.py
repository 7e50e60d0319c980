"""One client address for every limit (scheduling/clientaddr.py): REMOTE_ADDR, or the
X-Forwarded-For entry written by the outermost of NUM_PROXIES trusted proxies."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from rest_framework.throttling import AnonRateThrottle

from scheduling.clientaddr import AddressIdentity, client_address


def request(remote: str = "10.0.0.2", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize("proxies", [None, 0])
def test_without_trusted_proxies_a_forwarded_header_is_not_believed(settings, proxies):
    settings.NUM_PROXIES = proxies
    assert client_address(request(forwarded="1.2.3.4")) == "10.0.0.2"


@pytest.mark.parametrize(
    "proxies, forwarded, client",
    [
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the left entry was the client's own
        (2, "6.6.6.6, 203.0.113.5, 10.0.0.9", "203.0.113.5"),
        (2, " 203.0.113.5 ", "203.0.113.5"),  # fewer hops than proxies: the leftmost
        (1, " , ", "10.0.0.2"),  # nothing usable: the peer
        (1, "<script>", "10.0.0.2"),  # not an address: the peer, never stored as one
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_with_n_trusted_proxies_the_nth_entry_from_the_right(settings, proxies, forwarded, client):
    settings.NUM_PROXIES = proxies
    assert client_address(request(forwarded=forwarded)) == client


def test_no_usable_peer_address_is_none(settings):
    settings.NUM_PROXIES = None
    assert client_address(request(remote="")) is None
    assert client_address(request(remote="garbage")) is None


def test_a_drf_throttle_counts_by_the_same_address(settings):
    settings.NUM_PROXIES = 1

    class ByAddress(AddressIdentity, AnonRateThrottle):
        rate = "5/min"

    assert ByAddress().get_ident(request(forwarded="6.6.6.6, 203.0.113.5")) == "203.0.113.5"


@pytest.mark.django_db
def test_the_token_routes_per_address_limit_sees_each_client_behind_the_proxy(settings):
    settings.NUM_PROXIES = 1
    settings.AXES_ENABLED = False  # this is about the rate limit, not sign-in lockouts
    limit = 3
    settings.API_RATE_LIMITS = {
        **settings.API_RATE_LIMITS,
        "token_ip": (limit, 3600),
        "token_username": (10_000, 3600),
    }

    def token(address: str) -> int:
        browser = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=address)
        body = {"username": f"nobody-{address}", "password": "x"}
        return browser.post("/api/auth/token/", body, content_type="application/json").status_code

    # Forty clients, each just under the limit: nobody is refused for the others' requests.
    for n in range(40):
        assert {token(f"203.0.113.{n}") for _ in range(limit)} == {400}
    assert token("203.0.113.0") == 429
