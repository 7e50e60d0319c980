"""The threaded-race scaffold: real threads, each with its own database connection,
released together, and the invariant queries the race tests assert on.

What a race test asserts is the outcome and the database invariant (no two overlapping
active rows), never timings: the exclusion constraints and locks, not the pre-checks, are
the guarantee (docs/design.md). Every call's result or raised exception is returned for
the test to judge; a thread still running after the deadline fails the test (a deadlock
or a lost wake-up) instead of hanging the suite.

The `statement_timeout` fixture (tests/conftest.py) gives every connection the test opens
the same bound as `limit_statement_time` gives a thread's own.
"""

from __future__ import annotations

import threading
import time as clock
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.backends.signals import connection_created

from scheduling.states import ACTIVE_APPOINTMENT_STATUSES, BUSY_TRIP_STATUSES

# Generous: a round takes well under a second. A deadlock or a lost wake-up fails the
# test after this long instead of hanging the suite.
WAIT_SECONDS = 60
# Per connection, so a statement stuck on a lock errors out (and fails the test) rather
# than outliving the test and blocking pytest-django's table flush.
STATEMENT_TIMEOUT = "30s"

OVERLAPPING_APPOINTMENTS = """
    SELECT a.id, b.id
    FROM scheduling_appointment a
    JOIN scheduling_appointment b ON a.therapist_id = b.therapist_id AND a.id < b.id
    WHERE a.status = ANY(%(active)s) AND b.status = ANY(%(active)s)
      AND tstzrange(a.busy_from, a.busy_until, '[)') && tstzrange(b.busy_from, b.busy_until, '[)')
"""
OVERLAPPING_TRIPS = """
    SELECT a.id, b.id
    FROM scheduling_trip a
    JOIN scheduling_trip b ON a.driver_id = b.driver_id AND a.id < b.id
    WHERE a.status = ANY(%(busy)s) AND b.status = ANY(%(busy)s)
      AND tstzrange(a.window_start, a.window_end, '[)')
          && tstzrange(b.window_start, b.window_end, '[)')
"""


# --- the invariants --------------------------------------------------------------------------


def overlapping_appointments() -> list[tuple[int, int]]:
    """Pairs of one therapist's active appointments whose held times overlap (want [])."""
    with connection.cursor() as cursor:
        cursor.execute(OVERLAPPING_APPOINTMENTS, {"active": list(ACTIVE_APPOINTMENT_STATUSES)})
        return cursor.fetchall()


def overlapping_trips() -> list[tuple[int, int]]:
    """Pairs of one driver's busy trips whose windows overlap (want [])."""
    with connection.cursor() as cursor:
        cursor.execute(OVERLAPPING_TRIPS, {"busy": list(BUSY_TRIP_STATUSES)})
        return cursor.fetchall()


# --- statement time ----------------------------------------------------------------------------


def limit_statement_time() -> None:
    """Bound this thread's connection (opening it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")


@contextmanager
def statement_time_limited() -> Iterator[None]:
    """Every connection opened meanwhile, by any thread, is bounded as it opens."""

    def limit(sender: Any, connection: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")

    connection_created.connect(limit, weak=False)
    try:
        yield
    finally:
        connection_created.disconnect(limit)


# --- running calls together ----------------------------------------------------------------------


def run_rounds(calls: list[list[Callable[[], object]]]) -> list[list[object]]:
    """Run calls[round][i] in thread i; every round's calls start together.

    Returns each call's result or the exception it raised. The threads persist across
    rounds (one connection each), and a round starts only when every thread is done with
    the previous one, so rounds do not overlap.
    """
    width = len(calls[0])
    barrier = threading.Barrier(width)
    outcomes: list[list[object]] = [[None] * width for _ in calls]
    harness_errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            limit_statement_time()
            for r, row in enumerate(calls):
                barrier.wait(timeout=WAIT_SECONDS)
                try:
                    outcomes[r][i] = row[i]()
                except Exception as exc:  # collected and asserted on by the caller
                    outcomes[r][i] = exc
        except BaseException as exc:  # a broken barrier or a failed SET: the harness failed
            harness_errors.append(exc)
            barrier.abort()
        finally:
            # Connections are per thread; an open one would outlive the test.
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(width)]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert not harness_errors, harness_errors
    return outcomes


def run_together(calls: list[Callable[[], object]]) -> list[object]:
    """calls[i]() in thread i, all released at once; each result or raised exception."""
    (outcomes,) = run_rounds([calls])
    return outcomes


def join_all(threads: list[threading.Thread]) -> None:
    deadline = clock.monotonic() + 2 * WAIT_SECONDS
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - clock.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running (deadlock?): {stuck}"


class Racer(threading.Thread):
    """One call in its own thread and connection; `outcome` is its result or exception."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.outcome: object = None

    def run(self) -> None:
        try:
            limit_statement_time()
            self.outcome = self.call()
        except Exception as exc:  # asserted on by the test
            self.outcome = exc
        finally:
            connection.close()


class Holder(Racer):
    """Runs its call in a transaction it keeps open until `release` is set, then commits
    (or rolls back): its rows stay invisible to other transactions' pre-checks meanwhile."""

    def __init__(self, call: Callable[[], object], *, commit: bool = True) -> None:
        super().__init__(call)
        self.commit = commit
        self.holding = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        try:
            limit_statement_time()
            with transaction.atomic():
                self.outcome = self.call()
                self.holding.set()
                self.release.wait(WAIT_SECONDS)
                if not self.commit:
                    transaction.set_rollback(True)
        except Exception as exc:
            self.outcome = exc
        finally:
            self.holding.set()
            connection.close()


def hold(call: Callable[[], object], kind: type, *, commit: bool = True) -> Holder:
    """Start a Holder and wait until its call has returned a `kind` (inside its open
    transaction)."""
    holder = Holder(call, commit=commit)
    holder.start()
    assert holder.holding.wait(WAIT_SECONDS)
    assert isinstance(holder.outcome, kind), holder.outcome
    return holder


def release_when_blocked(holder: Holder, rivals: list[Racer], statement: str = "") -> None:
    """Start the rivals; once all of them wait on a lock (inside `statement`, when given),
    let the holder finish, and wait for everyone."""
    for rival in rivals:
        rival.start()
    try:
        wait_until_blocked(statement, rivals)
    finally:
        holder.release.set()
    join_all([holder, *rivals])


def wait_until_blocked(statement: str, rivals: list[Racer]) -> None:
    deadline = clock.monotonic() + WAIT_SECONDS
    while clock.monotonic() < deadline and all(r.is_alive() for r in rivals):
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND wait_event_type = 'Lock' AND query LIKE %s""",
                [statement + "%"],
            )
            if cursor.fetchone()[0] == len(rivals):
                return
        clock.sleep(0.01)
    outcomes = [r.outcome for r in rivals]
    pytest.fail(f"rivals never all waited on a lock (in {statement!r}): {outcomes!r}")
