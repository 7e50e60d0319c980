"""Idempotency-Key on POST /api/appointments/ (API.md, "Creating an appointment").

The same key and body from the same user return the first response; a different body
is a 422; another user's key is theirs alone; a failed first attempt stores nothing; and
concurrent duplicates (real threads, real PostgreSQL) create exactly one appointment.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.models import Appointment, IdempotencyKey, StreamEvent, Transition
from tests import factories
from tests.races import run_together

pytestmark = pytest.mark.django_db

URL = "/api/appointments/"
REPLAYED = "Idempotent-Replayed"


def as_user(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    return client


def post(client: APIClient, body: dict, key: str | None = None, **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(URL, body, format="json", **extra)


@pytest.fixture
def booking(client_record, service, therapist, tomorrow_at):
    factories.ensure_driver()  # a visit with transport needs a driver who works then
    return {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "start": tomorrow_at(10).isoformat(),
        "address": "12 Mabini St, Makati",
        "needs_transport": True,
    }


def written() -> tuple[int, int, int, int]:
    return (
        Appointment.objects.count(),
        IdempotencyKey.objects.count(),
        Transition.objects.filter(appointment__isnull=False).count(),
        StreamEvent.objects.count(),
    )


def test_same_key_and_body_replays_the_first_response(desk, booking):
    client = as_user(desk)
    first = post(client, booking, "key-1")
    assert first.status_code == 201, first.content[:300]
    assert REPLAYED not in first
    after_first = written()

    again = post(client, booking, "key-1")
    assert again.status_code == 201
    assert again[REPLAYED] == "true"
    assert again.json() == first.json()
    assert again.json()["id"] == first.json()["id"]
    # One appointment, one key, one log entry, one event: the retry wrote nothing.
    assert written() == after_first == (1, 1, 1, 1)


def test_replay_is_the_first_response_even_after_the_appointment_changed(desk, therapist, booking):
    first = post(as_user(desk), booking, "key-1").json()
    accepted = as_user(therapist).post(f"/api/appointments/{first['id']}/accept/")
    assert accepted.json()["status"] == "confirmed"

    again = post(as_user(desk), booking, "key-1")
    assert again.status_code == 201 and again[REPLAYED] == "true"
    assert again.json() == first and again.json()["status"] == "pending"


def test_replay_does_not_depend_on_how_the_user_authenticated(desk, booking):
    first = post(as_user(desk), booking, "key-1")
    token = Token.objects.create(user=desk)
    with_token = APIClient(HTTP_AUTHORIZATION=f"Token {token.key}")
    again = post(with_token, booking, "key-1")
    assert again.status_code == 201 and again[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Appointment.objects.count() == 1


def test_the_same_body_spelled_differently_is_the_same_request(desk, booking):
    first = post(as_user(desk), booking, "key-1")
    reordered = {k: booking[k] for k in reversed(list(booking))}
    raw = json.dumps(reordered, indent=3).encode()
    again = as_user(desk).post(
        URL, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    assert again.status_code == 201 and again[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]


def test_a_huge_number_in_an_unknown_field_is_not_a_500(desk, booking):
    response = post(as_user(desk), {**booking, "extra": 10**30}, "key-1")
    assert response.status_code in (201, 400), response.content[:200]


def test_same_key_with_a_different_body_is_422_and_writes_nothing(desk, booking, tomorrow_at):
    client = as_user(desk)
    first = post(client, booking, "key-1").json()
    before = written()
    for change in (
        {"start": tomorrow_at(14).isoformat()},  # would book a second appointment
        {"notes": "a different note"},
        {"needs_transport": False},
    ):
        response = post(client, {**booking, **change}, "key-1")
        assert response.status_code == 422, response.content[:300]
        assert set(response.json()) == {"detail"} and response.json()["detail"]
        assert REPLAYED not in response
    assert written() == before
    stored = IdempotencyKey.objects.get()
    assert (stored.status_code, stored.response["id"]) == (201, first["id"])


def test_a_key_belongs_to_its_user(desk, manager, booking, tomorrow_at):
    first = post(as_user(desk), booking, "shared-key")
    assert first.status_code == 201

    # The same key and body from someone else is their own request: not a replay of the
    # desk's appointment, so the slot is taken.
    same_body = post(as_user(manager), booking, "shared-key")
    assert same_body.status_code == 409 and same_body.json()["code"] == "conflict"
    assert REPLAYED not in same_body

    # With another body it is not a 422 either: it books.
    other_body = {**booking, "start": tomorrow_at(14).isoformat()}
    second = post(as_user(manager), other_body, "shared-key")
    assert second.status_code == 201 and REPLAYED not in second
    assert second.json()["id"] != first.json()["id"]
    assert IdempotencyKey.objects.filter(key="shared-key").count() == 2
    assert Appointment.objects.count() == 2


def test_a_conflicting_first_attempt_stores_nothing_and_the_retry_runs_afresh(desk, booking):
    blocking = post(as_user(desk), booking).json()  # no key
    refused = post(as_user(desk), booking, "retry-me")
    assert refused.status_code == 409 and refused.json()["code"] == "conflict"
    assert not IdempotencyKey.objects.exists()

    cancelled = as_user(desk).post(f"/api/appointments/{blocking['id']}/cancel/")
    assert cancelled.status_code == 200

    retried = post(as_user(desk), booking, "retry-me")
    assert retried.status_code == 201, retried.content[:300]
    assert REPLAYED not in retried and retried.json()["id"] != blocking["id"]
    assert IdempotencyKey.objects.get().response["id"] == retried.json()["id"]


@pytest.mark.parametrize(
    "broken, field",
    [
        ({"start": None}, "start"),  # refused by the input serializer
        ({"client": 999_999}, "client"),  # refused by the booking service
        ({"start": "2020-01-01T10:00:00+08:00"}, "start"),  # the past: the service
    ],
)
def test_a_400_first_attempt_stores_nothing_and_the_fixed_retry_books(desk, booking, broken, field):
    refused = post(as_user(desk), {**booking, **broken}, "fix-and-retry")
    assert refused.status_code == 400 and field in refused.json()["errors"]
    assert written() == (0, 0, 0, 0)

    # The retry's body differs from the failed one; nothing was kept, so no 422.
    fixed = post(as_user(desk), booking, "fix-and-retry")
    assert fixed.status_code == 201, fixed.content[:300]
    assert REPLAYED not in fixed
    assert written() == (1, 1, 1, 1)


def test_forbidden_first_attempt_stores_nothing(therapist, desk, booking):
    refused = post(as_user(therapist), booking, "k")
    assert refused.status_code == 403
    assert not IdempotencyKey.objects.exists()


def test_key_longer_than_255_is_400_and_writes_nothing(desk, booking):
    response = post(as_user(desk), booking, "k" * 256)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] and "Idempotency-Key" in body["errors"]
    assert written() == (0, 0, 0, 0)

    exactly = post(as_user(desk), booking, "k" * 255)
    assert exactly.status_code == 201
    assert IdempotencyKey.objects.get().key == "k" * 255


def test_unusual_but_legal_keys(desk, booking, tomorrow_at):
    client = as_user(desk)
    keys = ["550e8400-e29b-41d4-a716-446655440000", "  spaced  ", "ключ-é", "a/b?c=d&e"]
    # Each visit holds the therapist 2 h 45 (travel there and back, the buffer).
    starts = [tomorrow_at(8, 45) + n * timedelta(minutes=165) for n in range(4)]
    for start, key in zip(starts, keys, strict=True):
        body = {**booking, "start": start.isoformat()}
        first = post(client, body, key)
        assert first.status_code == 201, (key, first.content[:200])
        again = post(client, body, key)
        assert again[REPLAYED] == "true" and again.json()["id"] == first.json()["id"]
    assert Appointment.objects.count() == len(keys)


def test_key_with_a_nul_byte_is_400(desk, booking):
    response = post(as_user(desk), booking, "a\x00b")
    assert response.status_code == 400
    assert not Appointment.objects.exists()


def test_a_missing_or_empty_key_is_an_ordinary_create(desk, booking, tomorrow_at):
    client = as_user(desk)
    assert post(client, booking, "").status_code == 201
    later = {**booking, "start": tomorrow_at(14).isoformat()}
    assert post(client, later).status_code == 201
    assert not IdempotencyKey.objects.exists()


def test_keys_are_kept_24_hours_then_pruned(desk, booking, settings):
    client = as_user(desk)
    first = post(client, booking, "day-old").json()
    stored = IdempotencyKey.objects.get()
    assert stored.user_id == desk.pk and stored.status_code == 201
    assert stored.response == first

    from config.celery import app
    from scheduling import tasks  # noqa: F401  (registers the tasks)

    def every_periodic_sweep() -> None:
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            app.tasks[entry["task"]].apply().get()

    # Nearly a day later, after every periodic sweep has run (retention's prune too), the
    # key is still there and still answers with the first response.
    IdempotencyKey.objects.filter(pk=stored.pk).update(
        created_at=timezone.now() - timedelta(hours=23, minutes=55)
    )
    every_periodic_sweep()
    again = post(client, booking, "day-old")
    assert again.status_code == 201 and again[REPLAYED] == "true"
    assert again.json()["id"] == first["id"]
    assert Appointment.objects.count() == 1

    # Past IDEMPOTENCY_RETENTION_HOURS (24) the prune deletes it (docs/api.md).
    IdempotencyKey.objects.filter(pk=stored.pk).update(
        created_at=timezone.now() - timedelta(hours=24, minutes=5)
    )
    every_periodic_sweep()
    assert not IdempotencyKey.objects.filter(pk=stored.pk).exists()


# --- concurrent duplicates ------------------------------------------------------------------

THREADS = 20
ROUNDS = 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_create_one_appointment(
    statement_timeout, generous_rate_limit, desk, booking, tomorrow_at
):
    token = Token.objects.create(user=desk).key
    # One client per thread, kept across rounds. Half authenticate by token, half are
    # forced: the key is the user's, however they signed in.
    clients = [APIClient(raise_request_exception=False) for _ in range(THREADS)]
    for i, client in enumerate(clients):
        if i % 2:
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        else:
            client.force_authenticate(desk)
    for r in range(ROUNDS):
        start = tomorrow_at(8, 45) + r * timedelta(minutes=165)  # 2 h 45 held per visit
        body = {**booking, "start": start.isoformat()}
        key = f"dup-{r}"

        def send(i: int, body=body, key=key):
            response = post(clients[i], body, key)
            return response.status_code, response.content, response.get(REPLAYED)

        results = run_together([lambda i=i: send(i) for i in range(THREADS)])
        errors = [res for res in results if isinstance(res, BaseException)]
        assert not errors, errors
        statuses = [status for status, _, _ in results]
        assert statuses == [201] * THREADS, (r, [c[:200] for _, c, _ in results])
        ids = {json.loads(content)["id"] for _, content, _ in results}
        assert len(ids) == 1, (r, ids)
        replayed = [flag for _, _, flag in results]
        assert replayed.count("true") == THREADS - 1 and replayed.count(None) == 1

        assert Appointment.objects.filter(pk__in=ids).count() == 1
        assert IdempotencyKey.objects.filter(key=key).count() == 1

    assert Appointment.objects.count() == ROUNDS
    assert Transition.objects.filter(appointment__isnull=False).count() == ROUNDS
    assert StreamEvent.objects.filter(type="appointment.created").count() == ROUNDS


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_same_key_from_different_users_is_independent(
    statement_timeout, service, client_record, tomorrow_at
):
    """Each of several desk users sends the same key for a different therapist: each gets
    its own appointment, none a replay of another's."""
    users = [factories.UserFactory(role="receptionist") for _ in range(THREADS)]
    therapists = [factories.therapist(service) for _ in range(THREADS)]

    def send(i: int):
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(users[i])
        body = {
            "client": client_record.pk,
            "service": service.pk,
            "therapist": therapists[i].pk,
            "start": tomorrow_at(10).isoformat(),
        }
        response = post(client, body, "same-key")
        return response.status_code, response.get(REPLAYED)

    results = run_together([lambda i=i: send(i) for i in range(THREADS)])
    assert results == [(201, None)] * THREADS, results
    assert Appointment.objects.count() == THREADS
    assert IdempotencyKey.objects.filter(key="same-key").count() == THREADS
