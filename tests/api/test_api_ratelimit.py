"""Rate limits (issue 3): the token endpoint per IP and per username, appointment creation
per user. Over the limit: 429, a JSON `detail` and `Retry-After` in whole seconds; every
budget is its own; the window rolls over. With Redis behind the cache the counters are
shared by every process (atomic INCR with its TTL), which is shown on Redis itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from scheduling import ratelimit
from scheduling.models import Appointment
from tests import factories

pytestmark = pytest.mark.django_db

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TOKEN_URL = "/api/auth/token/"
LONG = 60  # seconds: a window no burst of a few requests straddles (see at_window_start)


def limits(**changes: tuple[int, int]):
    return override_settings(API_RATE_LIMITS={**settings.API_RATE_LIMITS, **changes})


def at_window_start(window: int, margin: float = 0.5) -> None:
    """Fixed windows are aligned on multiples of `window` seconds: if the current one
    ends within `margin`, wait for the next, so a burst counts in a single window."""
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.01)


def sleep_past_window(window: int) -> None:
    time.sleep(window - time.time() % window + 0.02)


_by_ip: dict[str, APIClient] = {}


@pytest.fixture(autouse=True)
def _fresh_clients():
    yield
    _by_ip.clear()


def from_ip(ip: str) -> APIClient:
    """One client per address and test (a client's first request builds the middleware
    chain, which is slow enough to matter inside a one-second window)."""
    if ip not in _by_ip:
        _by_ip[ip] = APIClient(REMOTE_ADDR=ip)
    return _by_ip[ip]


def login(username: str, password: str = "pw", ip: str = "10.0.0.1"):
    body = {"username": username, "password": password}
    return from_ip(ip).post(TOKEN_URL, body, format="json")


def assert_throttled(response, window: int) -> int:
    assert response.status_code == 429, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"} and body["detail"]
    retry_after = response["Retry-After"]
    assert retry_after.isdigit(), retry_after  # whole seconds, not a date
    assert 1 <= int(retry_after) <= window + 1
    return int(retry_after)


@pytest.fixture
def staff(db):
    return [factories.UserFactory(username=f"staff{i}", role="receptionist") for i in range(3)]


# --- token endpoint, per IP -----------------------------------------------------------------


def test_token_endpoint_is_limited_per_ip(staff):
    with limits(token_ip=(3, LONG), token_username=(100, LONG)):
        at_window_start(LONG)
        # Different usernames, one address: the address's budget is what runs out.
        for user in staff:
            assert login(user.username, ip="10.0.0.1").status_code == 200
        refused = login(staff[0].username, ip="10.0.0.1")
        assert_throttled(refused, LONG)
        # Refused before the password is even checked: wrong or right, still 429.
        assert login("nobody", "wrong", ip="10.0.0.1").status_code == 429
        # Another address has its own budget.
        assert login(staff[0].username, ip="10.0.0.2").status_code == 200


def test_bad_requests_count_against_the_ip_budget(staff):
    """Malformed attempts are not free: a scanner cannot probe without using up its
    budget."""
    with limits(token_ip=(3, LONG)):
        at_window_start(LONG)
        client = from_ip("10.0.0.3")
        for body in (b"{not json", b"[]", b'{"username": "x"}'):
            response = client.post(TOKEN_URL, body, content_type="application/json")
            assert response.status_code == 400
        assert_throttled(login(staff[0].username, ip="10.0.0.3"), LONG)


# --- token endpoint, per username -----------------------------------------------------------


def test_token_endpoint_is_limited_per_username_across_addresses(staff):
    with limits(token_ip=(100, LONG), token_username=(3, LONG)):
        at_window_start(LONG)
        target = staff[0].username
        for i in range(3):  # a password guessed from three addresses
            assert login(target, "guess", ip=f"10.1.0.{i}").status_code == 400
        # The right password from a fresh address is refused too: the username is locked.
        assert_throttled(login(target, "pw", ip="10.1.0.9"), LONG)
        # Spelled in other case it is the same account, the same budget.
        assert login(target.upper(), "pw", ip="10.1.0.10").status_code == 429
        # Another user is unaffected.
        assert login(staff[1].username, ip="10.1.0.9").status_code == 200


# --- appointment creation, per user ---------------------------------------------------------


@pytest.fixture
def booking(client_record, service, therapist, tomorrow_at):
    def at(slot: int) -> dict:
        """The slot-th visit of the day (from 08:45, each holding the therapist 2 h 45:
        travel there and back, the hour and its buffer)."""
        start = tomorrow_at(8, 45) + slot * timedelta(minutes=165)
        return {
            "client": client_record.pk,
            "service": service.pk,
            "therapist": therapist.pk,
            "start": start.isoformat(),
        }

    return at


def test_appointment_creation_is_limited_per_user(desk, manager, booking):
    with limits(appointment_create=(3, LONG)):
        at_window_start(LONG)
        client = APIClient()
        client.force_authenticate(desk)
        for slot in range(3):
            response = client.post("/api/appointments/", booking(slot), format="json")
            assert response.status_code == 201
        refused = client.post("/api/appointments/", booking(3), format="json")
        assert_throttled(refused, LONG)
        assert Appointment.objects.count() == 3  # the refused one wrote nothing

        other = APIClient()
        other.force_authenticate(manager)
        assert other.post("/api/appointments/", booking(3), format="json").status_code == 201


def test_the_window_rolls_over(desk, booking, staff):
    window = 1
    with limits(appointment_create=(2, window), token_username=(2, window)):
        client = APIClient()
        client.force_authenticate(desk)
        client.get("/api/appointments/")  # builds the client's middleware chain
        login("warm-up", ip="10.0.0.1")  # and this one's (an unknown user: a 400)
        at_window_start(window, margin=0.7)
        assert client.post("/api/appointments/", booking(0), format="json").status_code == 201
        assert client.post("/api/appointments/", booking(1), format="json").status_code == 201
        wait = assert_throttled(
            client.post("/api/appointments/", booking(2), format="json"), window
        )
        for _ in range(2):
            assert login(staff[0].username).status_code == 200
        assert login(staff[0].username).status_code == 429

        assert wait <= window + 1
        sleep_past_window(window)
        assert client.post("/api/appointments/", booking(2), format="json").status_code == 201
        assert login(staff[0].username).status_code == 200


def test_retry_after_is_the_rest_of_the_window_rounded_up():
    with limits(token_ip=(1, LONG)):
        at_window_start(LONG)
        assert ratelimit.retry_after("token_ip", "10.9.9.9") is None
        end = (time.time() // LONG + 1) * LONG
        before = time.time()
        wait = ratelimit.retry_after("token_ip", "10.9.9.9")
        after = time.time()
        assert wait is not None
        assert int(end - after) + 1 <= wait <= int(end - before) + 1


def test_any_username_makes_a_short_plain_key_of_its_own():
    """Usernames are whatever a client sends: a megabyte, control characters, a lone
    surrogate. Each still gets a counter of its own under a short ASCII key."""
    names = ["è,\x0b\U000c712f", "x" * 1_000_000, "\ud800", "x" * 999_999 + "y"]
    keys = {ratelimit.counter_key("token_username", name, 1) for name in names}
    assert len(keys) == len(names)
    assert all(key.isascii() and key.isprintable() and len(key) < 80 for key in keys)
    with limits(token_username=(1, LONG)):
        at_window_start(LONG)
        assert [ratelimit.retry_after("token_username", name) for name in names] == [None] * 4
        assert ratelimit.retry_after("token_username", names[1]) is not None


# --- Redis: one counter for every process ---------------------------------------------------


@pytest.fixture
def redis():
    """The cache's Redis connection; skips on the local-memory cache, fails in CI."""
    if "django_redis" not in settings.CACHES["default"]["BACKEND"]:
        if IN_CI:
            pytest.fail("CI=true but the cache is not Redis: rate limits must be tested on it")
        pytest.skip("needs Redis as the cache (REDIS_URL or 127.0.0.1:6379)")
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def counter_key(name: str, ident: str, window: int) -> str:
    return cache.make_key(ratelimit.counter_key(name, ident, int(time.time() // window)))


@pytest.mark.redis
def test_counter_lives_in_redis_with_a_ttl(redis, staff):
    with limits(token_ip=(5, LONG)):
        at_window_start(LONG)
        for _ in range(2):
            login(staff[0].username, ip="10.2.0.1")
        key = counter_key("token_ip", "10.2.0.1", LONG)

        # A separate connection (as another process would open) sees the same count.
        import redis as redis_lib

        other = redis_lib.Redis.from_url(settings.CACHES["default"]["LOCATION"])
        try:
            assert int(other.get(key)) == 2
            ttl = other.ttl(key)
            assert 0 < ttl <= LONG  # set with the first hit: the counter cannot outlive us
        finally:
            other.close()
        assert redis.exists(key)


@pytest.mark.redis
def test_hits_from_another_process_count(redis, staff):
    """A real second process bumps the counter; this process's next request is over."""
    with limits(token_ip=(5, LONG)):
        at_window_start(LONG, margin=5)
        assert login(staff[0].username, ip="10.3.0.1").status_code == 200
        key = counter_key("token_ip", "10.3.0.1", LONG)
        script = (
            "import sys, redis\n"
            "r = redis.Redis.from_url(sys.argv[1])\n"
            "for _ in range(4): r.incr(sys.argv[2])\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, settings.CACHES["default"]["LOCATION"], key],
            check=True,
            timeout=30,
        )
        assert int(redis.get(key)) == 5
        assert_throttled(login(staff[0].username, ip="10.3.0.1"), LONG)


@pytest.mark.redis
def test_concurrent_hits_are_counted_exactly(redis):
    """Twenty threads, each on its own connection from the pool, 25 hits each against a
    limit of 300: exactly 300 are let through (INCR is atomic; no lost updates)."""
    with limits(token_ip=(300, LONG)):
        at_window_start(LONG, margin=5)
        allowed = []
        barrier = threading.Barrier(20)

        def hammer() -> None:
            barrier.wait(timeout=30)
            allowed.append(
                sum(ratelimit.retry_after("token_ip", "10.4.0.1") is None for _ in range(25))
            )

        threads = [threading.Thread(target=hammer) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sum(allowed) == 300
        assert int(redis.get(counter_key("token_ip", "10.4.0.1", LONG))) == 500
