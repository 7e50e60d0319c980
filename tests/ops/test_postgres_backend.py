"""config/postgresql: Django's backend with psycopg's C parser for timestamptz, health
checks of kept connections without a round trip, and prepared statements for the few
hand-written statements nearly every request runs (`prepared_cursor`).

Every value must come back exactly as Django's own loader returns it (the same instant,
the same tzinfo object), and Django's cursors must use it rather than register theirs.
A connection whose session the server ended must be replaced before a request uses it.
Only `prepared_cursor`'s statements are prepared, each once a session, and they are
counted as queries like any other.
"""

from __future__ import annotations

import time
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from django.test.utils import CaptureQueriesContext
from psycopg.pq import Format

from config.postgresql.base import TIMESTAMPTZ_OID, loader_for, prepared_cursor
from scheduling.models import Client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LITERALS = [
    "2026-01-01 10:00:00+08",
    "2026-01-01 10:00:00.123456+08",
    "2026-03-29 02:30:00+02",  # inside a European spring-forward gap, as an instant
    "2026-10-25 01:30:00-04",
    "2000-02-29 23:59:59.999999+00",
    "1970-01-01 00:00:00+00",
    "2999-12-31 23:59:59+14",
    "0001-01-01 00:00:00+00",
]


class DjangosLoader(BaseTzLoader):
    timezone = UTC


def test_connections_read_timestamptz_with_the_fast_loader():
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert loader.__module__ == "config.postgresql.base"
    assert loader.timezone is connection.timezone  # so Django keeps it for every cursor


def test_values_are_the_ones_djangos_loader_returns():
    sql = "SELECT " + ", ".join("%s::timestamptz" for _ in LITERALS) + ", NULL::timestamptz"
    with connection.cursor() as cursor:
        cursor.execute(sql, LITERALS)
        got = cursor.fetchone()
        cursor.execute("SELECT " + ", ".join("(%s::timestamptz)::text" for _ in LITERALS), LITERALS)
        texts = cursor.fetchone()
        djangos = DjangosLoader(TIMESTAMPTZ_OID, cursor.cursor)
        expected = [djangos.load(text.encode()) for text in texts]
    assert got[-1] is None
    assert list(got[:-1]) == expected
    for value, want in zip(got, expected, strict=False):
        assert value.tzinfo is want.tzinfo is UTC
        assert (value.isoformat(), value.microsecond) == (want.isoformat(), want.microsecond)


# --- health checks without a round trip ---------------------------------------------------


@pytest.fixture
def kept_connection():
    """A second connection to the test database, as a web worker keeps one between
    requests (CONN_MAX_AGE with CONN_HEALTH_CHECKS)."""
    kept = connections.create_connection(DEFAULT_DB_ALIAS)
    kept.settings_dict["CONN_HEALTH_CHECKS"] = True
    kept.connect()
    yield kept
    kept.close()


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def end_session(pid: int) -> None:
    """What a restart or an operator does to a session: the server ends it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(100):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} did not end")


def new_request(wrapper) -> None:
    """What Django does at the start of each request for a kept connection."""
    wrapper.health_check_done = False
    wrapper.close_if_health_check_failed()


def test_a_loader_for_another_zone_gives_what_djangos_gives():
    # The path where psycopg's zone is not the one asked for: Django's own `replace`.
    manila = ZoneInfo("Asia/Manila")

    class DjangosManila(BaseTzLoader):
        timezone = manila

    with connection.cursor() as cursor:
        ours, djangos = (
            loader_for(manila)(TIMESTAMPTZ_OID, cursor.cursor),
            DjangosManila(TIMESTAMPTZ_OID, cursor.cursor),
        )
        for text in ("2026-01-01 10:00:00+00", "2026-01-01 10:00:00.5+00"):
            value, want = ours.load(text.encode()), djangos.load(text.encode())
            assert value == want
            assert value.tzinfo is want.tzinfo is manila


def test_a_live_kept_connection_is_used_again(kept_connection):
    pid = backend_pid(kept_connection)
    assert kept_connection.is_usable()
    new_request(kept_connection)
    assert backend_pid(kept_connection) == pid


def test_a_connection_the_server_ended_is_replaced_before_the_next_query(kept_connection):
    pid = backend_pid(kept_connection)
    end_session(pid)

    assert not kept_connection.is_usable()
    new_request(kept_connection)
    assert backend_pid(kept_connection) != pid  # a new session, and no error on the way


def test_a_closed_connection_is_not_usable(kept_connection):
    kept_connection.connection.close()
    assert not kept_connection.is_usable()


# --- prepared statements --------------------------------------------------------------------

PROBE = "SELECT count(*) FROM scheduling_client WHERE id = ANY(%s) AND name <> %s"


def prepared_statements(wrapper) -> list[str]:
    """The statements the wrapper's session holds prepared."""
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_prepared_cursors_statement_is_prepared_once_a_session(kept_connection):
    for ids in ([1, 2], [3], [10**12]):  # ids too large for smallint: another variant
        with prepared_cursor(kept_connection) as cursor:
            cursor.execute(PROBE, [ids, "x"])
            assert cursor.fetchone() == (0,)
    held = [s for s in prepared_statements(kept_connection) if "scheduling_client" in s]
    # Once per parameter types: the two small-id lists share one.
    assert held == [PROBE.replace("%s", "$1", 1).replace("%s", "$2")] * 2


def test_djangos_own_cursors_and_the_orm_are_never_prepared(kept_connection):
    for _ in range(10):
        with kept_connection.cursor() as cursor:
            cursor.execute(PROBE, [[1, 2], "x"])
        list(Client.objects.using(kept_connection.alias).filter(pk__in=[1, 2]))
    assert prepared_statements(kept_connection) == []


def test_prepared_statements_are_counted_and_logged_as_queries():
    with CaptureQueriesContext(connection) as seen, prepared_cursor(connection) as cursor:
        cursor.execute(PROBE, [[1], "x"])
    (query,) = seen.captured_queries
    assert "scheduling_client" in query["sql"] and "'x'" in query["sql"]


def test_no_statement_is_prepared_when_the_options_say_none():
    """OPTIONS {"prepare_threshold": None} (PG_PREPARED_STATEMENTS=false): for a pooler in
    transaction mode, which cannot keep a session's prepared statements."""
    wrapper = connections.create_connection(DEFAULT_DB_ALIAS)
    wrapper.settings_dict = {
        **wrapper.settings_dict,
        "OPTIONS": {**wrapper.settings_dict["OPTIONS"], "prepare_threshold": None},
    }
    try:
        for _ in range(3):
            with prepared_cursor(wrapper) as cursor:
                cursor.execute(PROBE, [[1], "x"])
                assert cursor.fetchone() == (0,)
        assert prepared_statements(wrapper) == []
    finally:
        wrapper.close()
