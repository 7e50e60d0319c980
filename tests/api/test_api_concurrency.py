"""Concurrent overlapping bookings over HTTP, against real PostgreSQL.

Real threads, each with its own APIClient and database connection, are released together
by a barrier and POST overlapping appointments for one therapist. Exactly one gets 201;
every other gets the contract's 409 naming the winner; and the database holds no two
overlapping active appointments. Outcomes and invariants are asserted, never timings.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from itertools import pairwise

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling.models import Appointment, StreamEvent, Transition, Trip
from tests import factories
from tests.races import overlapping_appointments, run_together

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("statement_timeout", "generous_rate_limit"),
]

THREADS = 20
ROUNDS = 5


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def future_day(offset: int) -> date:
    return timezone.localdate() + timedelta(days=2 + offset)


def poster(client: APIClient, body: dict):
    """A POST of `body`; each thread has its own client (clients are not thread-safe)."""

    def post() -> tuple[int, dict]:
        response = client.post("/api/appointments/", body, format="json")
        return response.status_code, json.loads(response.content)

    return post


def test_concurrent_overlapping_creates_one_201_rest_409(
    desk, manager, service, therapist, client_record
):
    # Starts 0/15/30/45 minutes after 10:00: with 60 minutes, a 15-minute buffer and 45
    # minutes' travel each way every pair overlaps, though no two bodies need be
    # identical. Desk and manager alternate. Each round on its own day, so rounds never
    # overlap each other. A driver works every day, so the bookings with transport race
    # for the therapist only.
    factories.driver()
    clients = [
        factories.api(desk if i % 2 else manager, raise_request_exception=False)
        for i in range(THREADS)
    ]
    for r in range(ROUNDS):
        day = future_day(r)
        calls = [
            poster(
                clients[i],
                {
                    "client": client_record.pk,
                    "service": service.pk,
                    "therapist": therapist.pk,
                    "start": local(day, 10, 15 * (i % 4)).isoformat(),
                    "needs_transport": i % 3 == 0,
                },
            )
            for i in range(THREADS)
        ]
        results = run_together(calls)

        errors = [res for res in results if isinstance(res, BaseException)]
        assert not errors, f"round {r}: {errors!r}"
        wins = [body for status, body in results if status == 201]
        refused = [body for status, body in results if status == 409]
        other = [(status, body) for status, body in results if status not in (201, 409)]
        assert not other, f"round {r}: {other!r}"
        assert len(wins) == 1, f"round {r}: {len(wins)} bookings succeeded"
        assert len(refused) == THREADS - 1
        winner = wins[0]
        for body in refused:
            assert set(body) == {"code", "detail", "reason", "conflicts"}, body
            assert body["code"] == "conflict" and body["detail"]
            assert body["reason"] == "therapist_busy", body
            # However they were refused, the desk is told which appointment is in the way.
            assert [c["appointment"] for c in body["conflicts"]] == [winner["id"]], body
            conflict = body["conflicts"][0]
            # The time it holds: from leaving base to being back.
            assert datetime.fromisoformat(conflict["start"]) == datetime.fromisoformat(
                winner["busy_from"]
            )
            assert datetime.fromisoformat(conflict["end"]) == datetime.fromisoformat(
                winner["busy_until"]
            )

    assert overlapping_appointments() == []
    # The losers left nothing behind: one row, one log entry, one event per round.
    assert Appointment.objects.count() == ROUNDS
    assert Transition.objects.filter(appointment__isnull=False).count() == ROUNDS
    assert StreamEvent.objects.filter(type="appointment.created").count() == ROUNDS
    with_transport = Appointment.objects.filter(needs_transport=True).count()
    assert Trip.objects.count() == 2 * with_transport


def test_concurrent_creates_for_different_therapists_all_succeed(desk, service, client_record):
    """The guard is per therapist: the same time for twenty therapists is twenty bookings,
    while a second wave at overlapping times for the same twenty is refused entirely."""
    therapists = [factories.therapist(service) for _ in range(THREADS)]
    clients = [factories.api(desk, raise_request_exception=False) for _ in range(THREADS)]
    day = future_day(0)

    def wave(minute: int) -> list:
        return run_together(
            [
                poster(
                    client,
                    {
                        "client": client_record.pk,
                        "service": service.pk,
                        "therapist": t.pk,
                        "start": local(day, 10, minute).isoformat(),
                    },
                )
                for client, t in zip(clients, therapists, strict=True)
            ]
        )

    first = wave(0)
    assert [status for status, _ in first] == [201] * THREADS, first
    second = wave(30)
    assert [status for status, _ in second] == [409] * THREADS, second
    for (_, won), (_, lost) in zip(first, second, strict=True):
        assert [c["appointment"] for c in lost["conflicts"]] == [won["id"]]
    assert overlapping_appointments() == []
    assert Appointment.objects.count() == THREADS


def test_bookings_for_free_therapists_racing_for_the_last_driver_one_wins(
    desk, service, client_record
):
    """Ten therapists, each free, and one driver: ten bookings with transport at the same
    time, released together, are one 201 and nine 409 no_driver (never a deadlock or a
    5xx), and the driver is asked to carry no two legs at once. Repeated on fresh days."""
    factories.driver()
    therapists = [factories.therapist(service) for _ in range(10)]
    clients = [factories.api(desk, raise_request_exception=False) for _ in therapists]
    for r in range(ROUNDS):
        day = future_day(r)
        results = run_together(
            [
                poster(
                    client,
                    {
                        "client": client_record.pk,
                        "service": service.pk,
                        "therapist": t.pk,
                        "start": local(day, 10, 15 * (n % 2)).isoformat(),
                        "needs_transport": True,
                    },
                )
                for n, (client, t) in enumerate(zip(clients, therapists, strict=True))
            ]
        )
        errors = [res for res in results if isinstance(res, BaseException)]
        assert not errors, f"round {r}: {errors!r}"
        statuses = sorted(status for status, _ in results)
        assert statuses == [201] + [409] * 9, (r, results)
        for status, body in results:
            if status == 409:
                assert (body["code"], body["reason"]) == ("conflict", "no_driver"), body
                assert body["detail"].startswith("No driver is free for the drop-off"), body
                assert {c["leg"] for c in body["conflicts"]} <= {"dropoff", "pickup"}
    assert Appointment.objects.count() == ROUNDS
    assert Trip.objects.count() == 2 * ROUNDS
    legs = sorted(Trip.objects.values_list("window_start", "window_end"))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(legs)), legs
