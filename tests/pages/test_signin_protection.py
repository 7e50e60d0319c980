"""Sign-in protection (django-axes, scheduling/signin.py): failed sign-ins on the pages,
the admin and the token route lock the username and the client address; the right
password is refused until the cool-off ends; the API says 429 in JSON."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client as DjangoClient
from django.utils import timezone

from tests import factories

NOW = timezone.make_aware(datetime(2026, 6, 1, 9, 0))
PASSWORD = "a-long-enough-passphrase"


@pytest.fixture(autouse=True)
def generous_token_rate_limits(settings):
    """The token route's own per-minute counters are not what these tests are about."""
    settings.API_RATE_LIMITS = {
        **settings.API_RATE_LIMITS,
        "token_ip": (10_000, 60),
        "token_username": (10_000, 60),
    }


@pytest.fixture
def ana(db):
    user = factories.UserFactory(role="receptionist", username="ana")
    user.set_password(PASSWORD)
    user.save()
    return user


def sign_in(browser: DjangoClient, password: str, path: str = "/accounts/login/", **extra):
    return browser.post(path, {"username": "ana", "password": password}, **extra)


def test_25_wrong_passwords_lock_the_username_and_the_right_one_waits_for_the_cool_off(
    ana, settings
):
    with time_machine.travel(NOW, tick=False) as clock:
        for n in range(25):
            # Each guess from another address: the username alone is what locks.
            answer = sign_in(DjangoClient(REMOTE_ADDR=f"198.51.100.{n}"), f"wrong-{n}")
            expected = 200 if n < settings.AXES_FAILURE_LIMIT - 1 else 429
            assert answer.status_code == expected, n
        locked = sign_in(DjangoClient(REMOTE_ADDR="192.0.2.7"), PASSWORD)
        assert locked.status_code == 429
        assert "Try again in 15 minutes." in locked.content.decode()
        assert locked["Retry-After"] == "900"
        assert "_auth_user_id" not in locked.wsgi_request.session

        clock.shift(timedelta(minutes=14))
        assert sign_in(DjangoClient(REMOTE_ADDR="192.0.2.7"), PASSWORD).status_code == 429
        clock.shift(timedelta(minutes=2))  # the 25 failures are 16 minutes old: expired
        browser = DjangoClient(REMOTE_ADDR="192.0.2.7")
        assert sign_in(browser, PASSWORD).status_code == 302
        assert browser.session["_auth_user_id"] == str(ana.pk)


def test_the_admin_login_is_locked_too_and_the_unlock_command_frees_it(ana, settings):
    ana.role, ana.is_staff = "manager", True
    ana.save()
    browser = DjangoClient(REMOTE_ADDR="192.0.2.8")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(browser, "wrong", path="/admin/login/")
    assert sign_in(browser, PASSWORD, path="/admin/login/").status_code == 429

    out = StringIO()
    call_command("axes_reset_username", "ana", stdout=out)
    call_command("axes_reset_ip", "192.0.2.8", stdout=out)
    assert sign_in(browser, PASSWORD, path="/admin/login/").status_code == 302


def test_the_token_route_answers_429_in_json_once_locked(ana, settings):
    api = DjangoClient(REMOTE_ADDR="192.0.2.9")

    def token(password: str):
        return api.post(
            "/api/auth/token/",
            {"username": "ana", "password": password},
            content_type="application/json",
        )

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert token("wrong").status_code == 400
    refused = token("wrong")  # the failure that locks is answered as locked, as on the pages
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Too many failed sign-ins. Try again in 15 minutes."}
    assert refused["Retry-After"] == "900"
    right = token(PASSWORD)
    assert right.status_code == 429 and "token" not in right.json()


def test_40_clients_behind_one_trusted_proxy_are_limited_separately(ana, settings):
    settings.NUM_PROXIES = 1
    clients = [
        DjangoClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        for n in range(40)
    ]
    for n, browser in enumerate(clients):
        for k in range(settings.AXES_FAILURE_LIMIT - 1):  # just under the limit, each
            browser.post("/accounts/login/", {"username": f"guess-{n}-{k}", "password": "x"})
    # 360 failures through one proxy, none over any one client's limit: all still sign in.
    assert [sign_in(b, PASSWORD).status_code for b in clients] == [302] * 40
    # One client more goes over: that one is locked, and only that one.
    noisy = clients[0]
    noisy.logout()
    for k in range(settings.AXES_FAILURE_LIMIT):
        noisy.post("/accounts/login/", {"username": f"again-{k}", "password": "x"})
    assert sign_in(noisy, PASSWORD).status_code == 429
    assert (
        sign_in(
            DjangoClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.1"), PASSWORD
        ).status_code
        == 302
    )


def test_without_num_proxies_the_proxy_is_one_client(ana, settings):
    settings.NUM_PROXIES = None
    for n in range(settings.AXES_FAILURE_LIMIT):
        DjangoClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").post(
            "/accounts/login/", {"username": f"guess-{n}", "password": "x"}
        )
    fresh = DjangoClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert sign_in(fresh, PASSWORD).status_code == 429
