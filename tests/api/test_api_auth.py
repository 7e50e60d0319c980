"""Authentication (API.md, "Authentication"): the token endpoint, token and session
authentication, CSRF for sessions, and 401 on every /api/ route without credentials
except the token route, the schema and its docs. The routes are read from the URL conf,
so a route added later is covered without editing this file.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django.utils.crypto import get_random_string
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.api.auth import StrictTokenAuthentication
from scheduling.models import Client, User

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token/"
# Gateways call their webhooks without our credentials: the signature is their
# authentication (tests/services/test_payment_webhooks.py), so no token is asked for.
WEBHOOKS = {f"payments/webhooks/{gateway}/" for gateway in ("fake", "paymongo", "razorpay")}
PUBLIC = {"auth/token/", "schema/", "docs/", *WEBHOOKS}


def anonymous() -> APIClient:
    return APIClient(raise_request_exception=False)


def with_token(key: str) -> APIClient:
    return APIClient(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {key}")


def assert_detail(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


# --- the token endpoint ---------------------------------------------------------------------


def test_right_credentials_get_a_token_that_works(desk):
    response = anonymous().post(TOKEN_URL, {"username": "desk", "password": "pw"}, format="json")
    assert response.status_code == 200
    assert set(response.json()) == {"token"}
    key = response.json()["token"]
    assert Token.objects.get(key=key).user == desk

    client = with_token(key)
    assert client.get("/api/appointments/").status_code == 200
    # A token is not a session: no CSRF token needed for a write.
    created = client.post(
        "/api/clients/", {"name": "Juan", "phone": "+639171110000"}, format="json"
    )
    assert created.status_code == 201

    again = anonymous().post(TOKEN_URL, {"username": "desk", "password": "pw"}, format="json")
    assert again.json()["token"] == key  # one token per user, not one per login


def test_the_token_reads_the_user_the_orm_would(desk):
    desk.last_login = timezone.now()
    desk.save()
    token = Token.objects.create(user=desk)
    read = StrictTokenAuthentication().authenticate_credentials(token.key)[0]
    loaded = User.objects.get(pk=desk.pk)
    fields = [f.attname for f in User._meta.concrete_fields]
    assert [getattr(read, f) for f in fields] == [getattr(loaded, f) for f in fields]
    assert read._state.adding is False and read._state.db == loaded._state.db


@pytest.mark.parametrize(
    "body, fields",
    [
        ({"username": "desk", "password": "wrong"}, ["non_field_errors"]),
        ({"username": "nobody", "password": "pw"}, ["non_field_errors"]),
        ({"username": "DESK ", "password": "pw"}, ["non_field_errors"]),
        ({"username": "desk", "password": "pw "}, ["non_field_errors"]),  # not trimmed
        ({"username": "desk"}, ["password"]),
        ({"password": "pw"}, ["username"]),
        ({}, ["username", "password"]),
        ({"username": "", "password": ""}, ["username", "password"]),
        ({"username": ["desk"], "password": "pw"}, ["username"]),
        ({"username": "desk", "password": None}, ["password"]),
    ],
)
def test_wrong_or_missing_credentials_are_400(desk, body, fields):
    response = anonymous().post(TOKEN_URL, body, format="json")
    payload = assert_detail(response, 400)
    for field in fields:
        assert field in payload["errors"], payload
    assert "token" not in payload
    assert not Token.objects.exists()


def test_the_same_message_for_a_wrong_password_and_an_unknown_user(desk):
    """Whether a username exists is not told."""
    wrong = anonymous().post(TOKEN_URL, {"username": "desk", "password": "x"}, format="json")
    unknown = anonymous().post(TOKEN_URL, {"username": "zed", "password": "x"}, format="json")
    assert wrong.json() == unknown.json()


def test_inactive_user_gets_no_token(desk):
    desk.is_active = False
    desk.save()
    response = anonymous().post(TOKEN_URL, {"username": "desk", "password": "pw"}, format="json")
    assert_detail(response, 400)
    assert not Token.objects.exists()


def test_token_of_a_user_made_inactive_stops_working(desk):
    key = Token.objects.create(user=desk).key
    assert with_token(key).get("/api/appointments/").status_code == 200
    desk.is_active = False
    desk.save()
    assert_detail(with_token(key).get("/api/appointments/"), 401)


def test_token_route_ignores_a_session_and_its_csrf(desk):
    """The token route authenticates nobody, so a logged-in browser without a CSRF token
    can still exchange credentials (and is not refused with a CSRF 403)."""
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="desk", password="pw")
    response = client.post(TOKEN_URL, {"username": "desk", "password": "pw"}, format="json")
    assert response.status_code == 200 and response.json()["token"]


# --- bad tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Token nonexistent0000000000000000000000000",
        "Token " + "f" * 40,
        "Token",  # no key
        "Token ",
        "Token a b",  # a key with a space
        "Token " + "x" * 10_000,
        "token " + "f" * 40,  # DRF's keyword is case-sensitive: this is no credential
        "Bearer abc",
        "Basic ZGVzazpwdw==",  # desk:pw, but Basic is not accepted
        # Header bytes reach Django decoded as latin-1 (PEP 3333), as a server passes them:
        "Token " + "ключ".encode().decode("latin-1"),  # UTF-8 on the wire
        "Token " + b"\xff\xfe".decode("latin-1"),  # not UTF-8 at all
        "Token \t",
        "garbage",
    ],
)
def test_bad_or_malformed_token_is_401(desk, header):
    client = APIClient(raise_request_exception=False, HTTP_AUTHORIZATION=header)
    response = client.get("/api/appointments/")
    assert_detail(response, 401)
    assert response["WWW-Authenticate"] == "Token"


def test_token_with_a_nul_byte_is_401(desk):
    client = APIClient(raise_request_exception=False, HTTP_AUTHORIZATION="Token ab\x00cd")
    assert_detail(client.get("/api/appointments/"), 401)


def test_a_real_token_with_a_bad_one_after_it_is_refused(desk):
    key = Token.objects.create(user=desk).key
    client = APIClient(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {key} extra")
    assert_detail(client.get("/api/appointments/"), 401)


# --- no credentials: 401 on every /api/ route but the public ones ---------------------------


def api_routes() -> list[str]:
    """Every route under /api/ in the URL conf, as a pattern string ("clients/<pk>/")."""
    api = next(
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLResolver) and str(p.pattern) == "api/"
    )
    routes = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            text = prefix + str(p.pattern).lstrip("^").rstrip("$")
            if isinstance(p, URLResolver):
                walk(p.url_patterns, text)
            elif isinstance(p, URLPattern):
                routes.append(text)

    walk(api.url_patterns, "")
    return routes


def concrete(route: str) -> str:
    """A URL for a route pattern, with 1 for every parameter."""
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)  # router regexes
    route = re.sub(r"<(?:\w+:)?\w+>", "1", route)  # path() converters
    return "/api/" + route.replace("\\.", ".").replace("\\", "")


ROUTES = sorted({concrete(r) for r in api_routes() if "format" not in r})


def test_the_route_list_is_the_real_one():
    assert "/api/appointments/" in ROUTES
    assert "/api/appointments/1/cancel/" in ROUTES
    assert "/api/trips/1/depart/" in ROUTES
    assert "/api/drivers/me/shift/" in ROUTES
    assert "/api/events/" in ROUTES


@pytest.mark.parametrize("url", ROUTES)
def test_no_credentials_is_401_except_public_routes(db, url):
    client = anonymous()
    if url.removeprefix("/api/") in PUBLIC:
        # Reachable without credentials (the token route only takes POST).
        assert client.get(url).status_code in (200, 405)
        return
    for method in ("get", "post", "patch", "put", "delete"):
        response = getattr(client, method)(url, {}, format="json")
        body = assert_detail(response, 401)
        assert response["WWW-Authenticate"] == "Token", (method, url)
        assert set(body) == {"detail"}, (method, url, body)


def test_public_routes_answer_without_credentials(db):
    client = anonymous()
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    assert client.post(TOKEN_URL, {}, format="json").status_code == 400
    for webhook in sorted(WEBHOOKS):
        # Unsigned: refused for its signature, never for want of a login.
        assert client.post(f"/api/{webhook}", {}, format="json").status_code == 400, webhook


# --- sessions and CSRF ----------------------------------------------------------------------


def session_client(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True, raise_request_exception=False)
    assert client.login(username=user.username, password="pw")
    return client


def with_csrf(client: APIClient) -> dict:
    """Set a CSRF cookie on the client; the matching header for an unsafe request."""
    token = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    return {"HTTP_X_CSRFTOKEN": token}


def test_session_reads_without_csrf(desk):
    client = session_client(desk)
    assert client.get("/api/appointments/").status_code == 200
    assert client.get("/api/clients/").status_code == 200


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("post", "/api/clients/", {"name": "Juan", "phone": "+639171110000"}),
        ("patch", "/api/clients/{client}/", {"notes": "VIP"}),
        ("post", "/api/appointments/", {}),
        ("post", "/api/appointments/1/cancel/", {}),
    ],
)
def test_session_write_without_csrf_token_is_403_json(desk, client_record, method, url, body):
    client = session_client(desk)
    url = url.format(client=client_record.pk)
    response = getattr(client, method)(url, body, format="json")
    payload = assert_detail(response, 403)
    assert "CSRF" in payload["detail"]
    assert Client.objects.count() == 1
    client_record.refresh_from_db()
    assert client_record.notes == ""


def test_session_write_with_a_wrong_csrf_token_is_403(desk):
    client = session_client(desk)
    with_csrf(client)
    response = client.post(
        "/api/clients/",
        {"name": "Juan", "phone": "+639171110000"},
        format="json",
        HTTP_X_CSRFTOKEN=get_random_string(32),
    )
    assert "CSRF" in assert_detail(response, 403)["detail"]
    assert not Client.objects.exists()


def test_session_write_with_the_csrf_token_works(desk, client_record):
    client = session_client(desk)
    headers = with_csrf(client)
    created = client.post(
        "/api/clients/", {"name": "Juan", "phone": "+639171110000"}, format="json", **headers
    )
    assert created.status_code == 201, created.content[:300]
    patched = client.patch(
        f"/api/clients/{client_record.pk}/", {"notes": "VIP"}, format="json", **headers
    )
    assert patched.status_code == 200 and patched.json()["notes"] == "VIP"


def test_logged_out_session_is_401(desk):
    client = session_client(desk)
    client.logout()
    assert_detail(client.get("/api/appointments/"), 401)
