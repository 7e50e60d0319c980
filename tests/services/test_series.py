"""Standing bookings: the repeat's dates keep local wall time, and booking them is all or
nothing (or skips the clashes when asked), through the single-booking engine."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from scheduling.errors import ValidationFailed
from scheduling.models import (
    Appointment,
    Notification,
    Series,
    StreamEvent,
    StreamEventRecipient,
    Transition,
    Trip,
)
from scheduling.services.appointments import act_on_appointment, expire_overdue
from scheduling.services.series import (
    Repeat,
    SeriesConflict,
    book_occurrences,
    book_series,
    occurrence_starts,
    position,
    positions,
    preview,
)
from scheduling.services.series_scopes import cancel_appointments, reschedule_appointments
from tests import factories

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


# --- the Series row, its link, and the answer given once -----------------------------------


def all_counts() -> dict[str, int]:
    return {**counts(), "Series": Series.objects.count()}


@pytest.fixture
def eight(desk, therapist, service, client_record, tomorrow_at):
    """Booking fields for book_series: Maria with Ana at 10:00 from tomorrow, 8 weeks."""
    return dict(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=tomorrow_at(10),
        repeat=Repeat(every_weeks=1, count=8),
    )


@pytest.mark.django_db
def test_a_series_links_every_occurrence_and_only_the_first_has_a_deadline(eight):
    booking = book_series(**eight)
    series = booking.series
    assert (series.every_weeks, series.count, series.until) == (1, 8, None)
    assert series.wall_time == time(10) and series.first_start == eight["start"]
    rows = list(Appointment.objects.filter(series=series).order_by("start"))
    assert [a.pk for a in rows] == [a.pk for a in booking.appointments]
    assert rows[0].response_deadline is not None
    assert all(a.response_deadline is None for a in rows[1:])
    assert position(rows[2]).label == "weekly, 3 of 8"
    assert positions(rows) == {a.pk: f"weekly, {i} of 8" for i, a in enumerate(rows, 1)}


@pytest.mark.django_db
def test_a_failing_eighth_occurrence_writes_nothing_in_any_table(book, eight, tomorrow_at):
    book(tomorrow_at(10) + timedelta(weeks=7), needs_transport=True)
    before = all_counts()
    with pytest.raises(SeriesConflict) as e:
        book_series(**eight, needs_transport=True)
    assert [(f.start, f.reason) for f in e.value.failures] == [
        (tomorrow_at(10) + timedelta(weeks=7), "therapist_busy")
    ]
    assert all_counts() == before


@pytest.mark.django_db
def test_skipping_the_first_date_gives_the_deadline_to_the_first_booked(book, eight, tomorrow_at):
    book(tomorrow_at(10))
    booking = book_series(**eight, skip_conflicts=True)
    assert [f.start for f in booking.skipped] == [tomorrow_at(10)]
    first, *rest = booking.appointments
    assert first.start == tomorrow_at(10) + timedelta(weeks=1)
    assert first.response_deadline is not None and {a.response_deadline for a in rest} == {None}


@pytest.mark.django_db
def test_a_series_with_any_therapist_keeps_the_one_chosen(eight, service):
    factories.therapist(service, username="bea")
    booking = book_series(**{**eight, "therapist_id": None})
    assert len({a.therapist_id for a in booking.appointments}) == 1


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_booked_series_across_dst_keeps_ten_oclock(desk, therapist, service, client_record):
    now = datetime(2026, 10, 19, 9, 0, tzinfo=BERLIN)
    booking = book_series(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=datetime(2026, 10, 20, 10, 0, tzinfo=BERLIN),
        repeat=Repeat(every_weeks=1, count=3),
        now=now,
    )
    local = [a.start.astimezone(BERLIN).strftime("%m-%d %H:%M %z") for a in booking.appointments]
    assert local == ["10-20 10:00 +0200", "10-27 10:00 +0100", "11-03 10:00 +0100"]
    assert booking.series.wall_time == time(10)


@pytest.mark.django_db
def test_accepting_the_first_confirms_the_series(eight, therapist):
    booking = book_series(**eight)
    first = booking.appointments[0]
    act_on_appointment(actor=therapist, appointment_id=first.pk, action="accept")
    statuses = set(
        Appointment.objects.filter(series=booking.series).values_list("status", flat=True)
    )
    assert statuses == {"confirmed"}
    assert Transition.objects.filter(action="accept").count() == 8


@pytest.mark.django_db
def test_rejecting_the_first_rejects_the_pending_ones(eight, therapist):
    booking = book_series(**eight)
    first, second, *_ = booking.appointments
    act_on_appointment(actor=therapist, appointment_id=second.pk, action="accept")
    act_on_appointment(actor=therapist, appointment_id=first.pk, action="reject", reason="away")
    rows = dict(Appointment.objects.filter(series=booking.series).values_list("pk", "status"))
    assert rows.pop(second.pk) == "confirmed"
    assert set(rows.values()) == {"rejected"}


@pytest.mark.django_db
def test_an_unanswered_series_expires_with_its_first(eight):
    booking = book_series(**eight)
    first = booking.appointments[0]
    expired = expire_overdue(now=first.response_deadline + timedelta(seconds=1))
    assert sorted(expired) == [first.pk]
    assert set(
        Appointment.objects.filter(series=booking.series).values_list("status", flat=True)
    ) == {"expired"}


@pytest.mark.django_db
def test_an_occurrence_without_a_deadline_expires_at_its_start(eight, desk):
    booking = book_series(**eight)
    first, second, *_ = booking.appointments
    cancel_appointments(actor=desk, appointment_id=first.pk)  # the series' answer never comes
    early = expire_overdue(now=second.start - timedelta(minutes=1))
    assert early == []
    assert expire_overdue(now=second.start) == [second.pk]
    assert Appointment.objects.get(pk=booking.appointments[2].pk).status == "pending"


# --- scopes ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_following_cancels_this_and_later(eight, desk):
    booking = book_series(**eight)
    third = booking.appointments[2]
    cancelled = cancel_appointments(actor=desk, appointment_id=third.pk, scope="following")
    assert [a.pk for a in cancelled] == [a.pk for a in booking.appointments[2:]]
    rows = Appointment.objects.filter(series=booking.series).order_by("start")
    assert [a.status for a in rows] == ["pending"] * 2 + ["cancelled"] * 6


@pytest.mark.django_db
def test_cancel_all_leaves_the_finished_alone(eight, desk, therapist):
    booking = book_series(**eight)
    Appointment.objects.filter(pk=booking.appointments[0].pk).update(status="completed")
    cancel_appointments(actor=desk, appointment_id=booking.appointments[4].pk, scope="all")
    rows = Appointment.objects.filter(series=booking.series).order_by("start")
    assert [a.status for a in rows] == ["completed"] + ["cancelled"] * 7


@pytest.mark.django_db
def test_a_scope_on_a_single_booking_is_refused(book, desk, tomorrow_at):
    single = book(tomorrow_at(10))
    with pytest.raises(ValidationFailed) as e:
        cancel_appointments(actor=desk, appointment_id=single.pk, scope="all")
    assert "scope" in e.value.errors
    with pytest.raises(ValidationFailed):
        cancel_appointments(actor=desk, appointment_id=single.pk, scope="some")


@pytest.mark.django_db
def test_reschedule_all_moves_every_occurrence_an_hour_later(eight, desk, tomorrow_at):
    booking = book_series(**eight)
    fifth = booking.appointments[4]
    new = fifth.start + timedelta(hours=1)
    moved = reschedule_appointments(actor=desk, appointment_id=fifth.pk, start=new, scope="all")
    assert [a.start for a in moved] == [tomorrow_at(11) + timedelta(weeks=i) for i in range(8)]
    assert moved[0].response_deadline is not None
    assert {a.response_deadline for a in moved[1:]} == {None}


@pytest.mark.django_db
def test_reschedule_following_a_week_later_does_not_trip_on_itself(eight, desk):
    booking = book_series(**eight)
    sixth = booking.appointments[5]
    reschedule_appointments(
        actor=desk,
        appointment_id=sixth.pk,
        start=sixth.start + timedelta(weeks=1),
        scope="following",
    )
    starts = list(
        Appointment.objects.filter(series=booking.series)
        .order_by("start")
        .values_list("start", flat=True)
    )
    first = booking.appointments[0].start
    assert starts == [first + timedelta(weeks=i) for i in (0, 1, 2, 3, 4, 6, 7, 8)]


@pytest.mark.django_db
def test_reschedule_following_is_all_or_nothing(book, eight, desk, tomorrow_at):
    booking = book_series(**eight)
    clash = tomorrow_at(14) + timedelta(weeks=6)
    blocker = book(clash)
    before = {**all_counts(), "starts": sorted(Appointment.objects.values_list("start", flat=True))}
    third = booking.appointments[2]
    with pytest.raises(SeriesConflict) as e:
        reschedule_appointments(
            actor=desk,
            appointment_id=third.pk,
            start=third.start + timedelta(hours=4),
            scope="following",
        )
    assert [(f.start, f.reason, f.appointment_id) for f in e.value.failures] == [
        (clash, "therapist_busy", booking.appointments[6].pk)
    ]
    after = {**all_counts(), "starts": sorted(Appointment.objects.values_list("start", flat=True))}
    assert after == before and blocker.pk


@pytest.mark.django_db
def test_reschedule_all_with_transport_replans_each_date(eight, desk, tomorrow_at):
    factories.ensure_driver()
    booking = book_series(
        **{**eight, "repeat": Repeat(every_weeks=1, count=3)}, needs_transport=True
    )
    first = booking.appointments[0]
    moved = reschedule_appointments(
        actor=desk, appointment_id=first.pk, start=first.start + timedelta(weeks=1), scope="all"
    )
    assert [a.start for a in moved] == [tomorrow_at(10) + timedelta(weeks=w) for w in (1, 2, 3)]
    for appointment in moved:
        open_legs = appointment.trips.exclude(status="cancelled")
        assert sorted(t.window_end for t in open_legs)[0] == appointment.start
