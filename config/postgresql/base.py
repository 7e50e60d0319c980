"""Django's PostgreSQL backend, reading `timestamptz` values with psycopg's C parser,
checking a reused connection's health without a round trip, and preparing the few
hand-written statements that nearly every request runs (`prepared_cursor`).

Django registers its own loader for `timestamptz`: psycopg's pure-Python parser, then
`replace(tzinfo=...)`. That is about 4.6 µs a value against 0.3 µs for psycopg's C
parser, and a day page of 50 appointments with their trips reads some 230 of them (1 ms
of the request). `TimestamptzLoader` below parses with the C loader and then does what
Django's does, so every value read is the same datetime as before, with the same tzinfo.
Without psycopg's C extension it falls back to the Python parser (as fast as before).
"""

from __future__ import annotations

import select
from datetime import tzinfo
from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql import base, operations
from django.db.backends.postgresql.psycopg_any import BaseTzLoader, register_tzloader
from django.db.backends.utils import CursorWrapper
from django.utils.asyncio import async_unsafe
from psycopg import ClientCursor, adapt, adapters, errors
from psycopg.pq import Format

TIMESTAMPTZ_OID = adapters.types["timestamptz"].oid
# psycopg's own loader: the C one when psycopg[binary] or [c] is installed.
_LOADER = adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
if _LOADER is None:  # psycopg registers one for every built-in type
    raise ImproperlyConfigured("psycopg has no text loader for timestamptz")
_PARSER = _LOADER


@cache
def loader_for(zone: tzinfo | None) -> type[BaseTzLoader]:
    class TimestamptzLoader(BaseTzLoader):
        # Django's cursors compare this with the connection's zone (and register a
        # loader of their own per cursor when they differ).
        timezone = zone

        def __init__(self, oid: int, context=None):
            super().__init__(oid, context)
            self._parse = _PARSER(oid, context).load

        def load(self, data):
            # psycopg gives the session's zone; Django sets the session to UTC and asks
            # for datetime.UTC, the very object psycopg uses for it, so the value is
            # already what Django's loader returns. `replace` (2 us a value, more than
            # parsing it) only when the two differ.
            value = self._parse(data)
            zone = self.timezone
            return value if value.tzinfo is zone else value.replace(tzinfo=zone)

    return TimestamptzLoader


# Not cached: Django builds a fresh map for every connection, so a cache keyed on it would
# only grow (one entry per connection ever opened). A copy per connection is cheap.
def _adapters(template: adapt.AdaptersMap, zone: tzinfo | None) -> adapt.AdaptersMap:
    fast = adapt.AdaptersMap(template)
    fast.register_loader("timestamptz", loader_for(zone))
    return fast


def prepared_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """`connection.prepared_cursor()` where the connection is this backend's; a plain
    cursor on any other (SQLite, or Django's own PostgreSQL backend)."""
    make = getattr(connection, "prepared_cursor", None)
    return make() if make is not None else connection.cursor()


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        """What the query log shows (DEBUG, tests' captured queries). Django's reads the
        text psycopg sent, which for `prepared_cursor`'s statements holds `$1` and no
        values: those are written out with their values, as the others are."""
        if isinstance(cursor, ClientCursor):
            return super().last_executed_query(cursor, sql, params)
        try:
            return self.compose_sql(sql, params)
        except errors.DataError:
            return None


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        if "context" in params:  # psycopg 3 (psycopg2 has no adapter maps)
            params["context"] = _adapters(params["context"], self.timezone)
        # Django turns psycopg's prepared statements off (None) unless OPTIONS asks. Its
        # own cursors bind parameters on the client and are never prepared whatever this
        # says; only `prepared_cursor`'s are, at their first use. OPTIONS
        # {"prepare_threshold": None} (PG_PREPARED_STATEMENTS=false) turns that off, as a
        # pooler in transaction mode needs.
        if "prepare_threshold" not in self.settings_dict["OPTIONS"]:
            params["prepare_threshold"] = 0
        return params

    @async_unsafe
    def prepared_cursor(self) -> CursorWrapper:
        """A cursor that binds its parameters on the server, so that PostgreSQL parses and
        plans each statement it runs once per connection, not on every execution.

        For the hand-written statements of fixed shape that nearly every request runs
        (the token's user, a day's working time and busy ranges, a page's trips): their
        parsing and planning was most of what PostgreSQL spent on them, 0.2 ms of backend
        CPU for the token's alone (bench/results/2026-12-03-prepared-statements.md).
        Nothing else is prepared: the ORM's queries, whose shapes are many and whose
        best plan can depend on the values (a search's fragment), keep Django's
        client-side binding. Wrapped, logged and counted as Django's own cursors are."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            # Django defines it only under psycopg 3; django-stubs do not know it.
            cursor = base.ServerBindingCursor(self.connection)  # type: ignore[attr-defined]
            # As Django's create_cursor does: a zone of the cursor's own only when the
            # connection's differs.
            loader = self.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
            if self.timezone != getattr(loader, "timezone", None):
                register_tzloader(self.timezone, cursor)
            # Django's _prepare_cursor, which the stubs do not know either.
            self.validate_thread_sharing()
            if self.queries_logged:
                return self.make_debug_cursor(cursor)
            return self.make_cursor(cursor)

    def is_usable(self) -> bool:
        """Whether a kept connection still works, asked before a request's first query
        (CONN_HEALTH_CHECKS).

        Django asks with `SELECT 1`, a round trip on every request: a tenth of a cached
        page's cost. An idle session receives nothing, and a session the server has
        ended (restart, pg_terminate_backend, idle timeout) has its FATAL message and
        the end of the stream waiting on the socket; so a socket with nothing to read is
        a live session. Over SSL, where the socket may hold TLS records of its own, and
        when the poll fails, this asks with `SELECT 1` as Django does. Like `SELECT 1`,
        it cannot see a peer that vanished without a word (a host lost at once); that
        request fails and the connection is replaced for the next."""
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.pgconn.ssl_in_use:
            return super().is_usable()
        try:
            waiting, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return super().is_usable()
        return not waiting
