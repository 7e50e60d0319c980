"""config/postgresql: Django's backend with psycopg's C parser for timestamptz.

Every value must come back exactly as Django's own loader returns it (the same instant,
the same tzinfo object), and Django's cursors must use it rather than register theirs.
"""

from __future__ import annotations

from datetime import UTC

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg.pq import Format

from config.postgresql.base import TIMESTAMPTZ_OID

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

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
