"""Standing bookings: the repeat's dates keep local wall time, and booking them is all or
nothing (or skips the clashes when asked), through the single-booking engine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from scheduling.errors import ValidationFailed
from scheduling.models import (
    Appointment,
    Notification,
    StreamEvent,
    StreamEventRecipient,
    Transition,
    Trip,
)
from scheduling.services.series import (
    SeriesConflict,
    book_occurrences,
    occurrence_starts,
    preview,
)

BERLIN = ZoneInfo("Europe/Berlin")


def counts() -> dict[str, int]:
    tables = (Appointment, Transition, Notification, StreamEvent, StreamEventRecipient, Trip)
    return {m.__name__: m.objects.count() for m in tables}


@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_series_crossing_dst_keeps_its_local_wall_time():
    # 18:00 on Tuesday 20 October 2026 (CEST, +02:00); clocks go back on 25 October.
    first = datetime(2026, 10, 20, 18, 0, tzinfo=BERLIN)
    starts = occurrence_starts(first=first, every_weeks=1, count=3)
    assert [s.astimezone(BERLIN).strftime("%m-%d %H:%M %z") for s in starts] == [
        "10-20 18:00 +0200",
        "10-27 18:00 +0100",
        "11-03 18:00 +0100",
    ]
    # In UTC the gap is a week plus an hour: adding 7 x 24 h would have said 17:00.
    assert starts[1].astimezone(UTC) - starts[0].astimezone(UTC) == timedelta(weeks=1, hours=1)


def test_until_counts_the_dates_up_to_and_including_it():
    first = timezone.make_aware(datetime(2026, 12, 1, 18, 0))
    starts = occurrence_starts(first=first, every_weeks=2, until=date(2026, 12, 29))
    assert [timezone.localtime(s).date() for s in starts] == [
        date(2026, 12, 1),
        date(2026, 12, 15),
        date(2026, 12, 29),
    ]


@pytest.mark.parametrize(
    "repeat, field",
    [
        ({"every_weeks": 3, "count": 4}, "every_weeks"),
        ({"every_weeks": 1, "count": 1}, "count"),
        ({"every_weeks": 1, "count": 27}, "count"),
        ({"every_weeks": 1}, "repeat"),
        ({"every_weeks": 1, "count": 2, "until": date(2027, 1, 1)}, "repeat"),
        ({"every_weeks": 4, "until": date(2026, 12, 2)}, "until"),
    ],
)
def test_a_repeat_that_can_never_be_booked_says_which_field(repeat, field):
    first = timezone.make_aware(datetime(2026, 12, 1, 18, 0))
    with pytest.raises(ValidationFailed) as e:
        occurrence_starts(first=first, **repeat)
    assert field in e.value.errors


@pytest.fixture
def weekly(desk, therapist, service, client_record, tomorrow_at):
    """Booking fields and three weekly starts at 10:00 from tomorrow."""
    fields = dict(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
    )
    starts = occurrence_starts(first=tomorrow_at(10), every_weeks=1, count=3)
    return fields, starts


@pytest.mark.django_db
def test_one_clashing_week_books_nothing_and_names_it(book, weekly):
    fields, starts = weekly
    book(starts[1] + timedelta(minutes=30))  # Ana is busy in the second week
    before = counts()
    with pytest.raises(SeriesConflict) as e:
        book_occurrences(starts=starts, **fields)
    assert [(f.start, f.reason) for f in e.value.failures] == [(starts[1], "therapist_busy")]
    assert counts() == before


@pytest.mark.django_db
def test_skip_conflicts_books_the_free_weeks(book, weekly):
    fields, starts = weekly
    book(starts[2])
    booked, failures = book_occurrences(starts=starts, skip_conflicts=True, **fields)
    assert [a.start for a in booked] == starts[:2]
    assert [f.start for f in failures] == [starts[2]]
    assert Appointment.objects.count() == 3


@pytest.mark.django_db
def test_every_free_week_is_booked(weekly):
    fields, starts = weekly
    booked, failures = book_occurrences(starts=starts, **fields)
    assert failures == [] and [a.start for a in booked] == starts
    assert Transition.objects.count() == 3


@pytest.mark.django_db
def test_the_preview_names_the_clash_and_writes_nothing(book, weekly):
    fields, starts = weekly
    book(starts[0])
    before = counts()
    failures = preview(starts=starts, **fields)
    assert [(f.start, f.reason) for f in failures] == [(starts[0], "therapist_busy")]
    assert counts() == before
