"""rows.iso remembers what it wrote for times in UTC (as the database gives them): the
same text as writing them afresh, and never one instant's text for another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rest_framework import serializers

from scheduling.api import rows
from scheduling.models import Appointment

NEW_YORK = ZoneInfo("America/New_York")
MANILA = ZoneInfo("Asia/Manila")


def drf(value: datetime, zone) -> str:
    """What DRF's DateTimeField writes with `zone` current."""
    return serializers.DateTimeField(default_timezone=zone).to_representation(value)


@pytest.mark.parametrize("zone", [UTC, MANILA, NEW_YORK])
def test_utc_times_read_the_same_first_and_again(zone):
    # Across New York's fall-back hour (2026-11-01 01:00-02:00 local comes twice).
    start = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    values = [start + timedelta(minutes=15 * n, microseconds=n % 3) for n in range(16)]
    first = [rows.iso(v, zone) for v in values]
    again = [rows.iso(v, zone) for v in values]
    assert first == again == [drf(v, zone) for v in values]
    assert len(set(first)) == len(values)  # the two 01:30s keep their own offsets


def test_times_in_other_zones_are_written_afresh():
    # Equal as datetimes (same tzinfo, fold ignored), yet an hour apart.
    early = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    late = early.replace(fold=1)
    assert early == late
    assert rows.iso(early, UTC) == "2026-11-01T05:30:00Z"
    assert rows.iso(late, UTC) == "2026-11-01T06:30:00Z"


def test_the_database_gives_times_in_utc(book, tomorrow_at):
    # So the day list's times take the remembered path.
    booked = book(tomorrow_at(10))
    (row,) = rows.appointment_rows(Appointment.objects.filter(pk=booked.pk))
    assert row["start"].tzinfo is UTC
    assert rows.iso(row["start"], MANILA) == drf(booked.start, MANILA)
