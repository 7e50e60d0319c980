"""The test helpers that pick times: a test that books "soon" must pass at any hour."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tests import factories

HOUR = timedelta(hours=1)


def local(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    """hh:mm:ss on 2026-11-30 (day 30) or the day after (day 31), business time zone."""
    return timezone.make_aware(
        datetime(2026, 11, 30) + timedelta(days=day - 30, hours=hh, minutes=mm, seconds=ss)
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (local(30, 9, 2, 7), local(30, 9, 45)),  # the step at or before now + 45 minutes
        (local(30, 21, 59, 7), local(30, 22, 30)),  # ends at 23:30, the same day
        (local(30, 22, 16, 7), local(31, 0, 15)),  # would end at midnight: 00:15 tomorrow
        (local(30, 23, 50, 7), local(31, 0, 30)),  # already tomorrow, and it fits
    ],
)
def test_soon_never_runs_past_midnight(now, expected):
    start = factories.soon(timedelta(minutes=45), HOUR, now=now)

    assert start == expected
    assert start > now and (start + HOUR).date() == start.date()
