"""The reports service (scheduling/selectors/reports.py) on its own: exact figures against a
hand-built data set, business-day edges, the range rules, and a fixed query count."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scheduling.errors import ValidationFailed
from scheduling.selectors.reports import build_report, check_range, csv_rows, default_range
from tests import factories
from tests.factories import Book, local

pytestmark = pytest.mark.django_db

MAY = {"first_day": date(2030, 5, 1), "last_day": date(2030, 5, 31)}


def test_appointments_by_status_count_and_value(may):
    report = build_report(**MAY)

    assert [(r.status, r.count, r.value) for r in report.by_status] == [
        ("pending", 1, Decimal("600.00")),
        ("confirmed", 1, Decimal("800.00")),
        ("in_progress", 1, Decimal("700.00")),
        ("completed", 4, Decimal("4200.50")),
        ("no_show", 1, Decimal("1200.00")),
        ("cancelled", 1, Decimal("1100.00")),
        ("rejected", 1, Decimal("1200.00")),
        ("expired", 1, Decimal("900.00")),
    ]
    assert report.appointments == 11
    assert report.listed_value == Decimal("10700.50")


def test_revenue_is_completed_and_booked_is_confirmed_or_in_progress(may):
    report = build_report(**MAY)
    assert report.revenue == Decimal("4200.50")
    assert report.booked_value == Decimal("1500.00")
    assert report.sessions == 4


def test_per_therapist_sessions_and_revenue(may):
    report = build_report(**MAY)

    assert [
        (r.name, r.appointments, r.sessions, r.revenue, r.no_shows, r.declined)
        for r in report.therapists
    ] == [
        ("Ana Cruz", 4, 2, Decimal("2500.00"), 1, 1),
        ("Ben Lim", 6, 1, Decimal("1200.50"), 0, 1),
        ("Eve Gone", 1, 1, Decimal("500.00"), 0, 0),  # inactive now, but worked in May
        ("Cora Diaz", 0, 0, Decimal("0.00"), 0, 0),  # active and idle: shown as such
    ]
    totals = report.therapist_totals
    assert (totals.sessions, totals.revenue) == (report.sessions, report.revenue)
    assert totals.appointments == report.appointments


def test_per_driver_trips_done_by_leg(may):
    report = build_report(**MAY)

    assert [(r.name, r.trips, r.dropoffs, r.pickups) for r in report.drivers] == [
        ("Fay Uy", 2, 1, 1),
        ("Gus Tan", 1, 0, 1),
        ("Hal Ong", 0, 0, 0),
    ]
    totals = report.driver_totals
    assert (totals.trips, totals.dropoffs, totals.pickups) == (3, 1, 2)


def test_one_day_is_the_business_zones_day(may):
    # Manila midnight is 16:00 UTC the day before: the 1st holds only what began after it.
    report = build_report(first_day=date(2030, 5, 1), last_day=date(2030, 5, 1))
    assert report.revenue == Decimal("1000.00")
    assert report.driver_totals.trips == 1
    april = build_report(first_day=date(2030, 4, 30), last_day=date(2030, 4, 30))
    assert april.revenue == Decimal("9999.00")
    assert april.driver_totals.trips == 1


def test_days_follow_daylight_saving_in_the_business_zone(service, settings):
    # London springs forward on Sunday 31 March 2030: that day is 23 hours long.
    settings.TIME_ZONE = "Europe/London"
    london = ZoneInfo("Europe/London")
    book = Book(service)
    therapist = factories.therapist(service)
    book.appointment(therapist, local("2030-03-31", "23:30", london), "completed", "100.00")
    book.appointment(therapist, local("2030-04-01", "00:30", london), "completed", "200.00")
    book.appointment(therapist, local("2030-03-31", "00:15", london), "completed", "400.00")

    day = build_report(first_day=date(2030, 3, 31), last_day=date(2030, 3, 31))

    assert day.revenue == Decimal("500.00")


def test_the_report_is_nine_queries_however_many_rows(may, service, django_assert_num_queries):
    book = Book(service)
    for n in range(30):
        therapist = factories.therapist(service)
        driver = factories.driver()
        appointment = book.appointment(therapist, local(f"2030-05-{n + 1:02d}"), "completed", "10")
        book.trip(appointment, driver, local(f"2030-05-{n + 1:02d}", "09:00"), "done", "dropoff")

    # statuses, per therapist, per driver, payments received, refunds, balances owed,
    # collections, names, standing bookings (series)
    with django_assert_num_queries(9):
        report = build_report(**MAY)

    assert len(report.therapists) == 34 and len(report.drivers) == 33
    assert report.revenue == Decimal("4500.50")


def test_an_empty_range_is_all_zeros(db):
    report = build_report(**MAY)
    assert report.appointments == 0
    assert report.revenue == Decimal("0.00") and report.booked_value == Decimal("0.00")
    assert [r.count for r in report.by_status] == [0] * 8
    assert report.therapists == [] and report.drivers == []


@pytest.mark.parametrize(
    ("first_day", "last_day", "field", "message"),
    [
        (date(2030, 5, 2), date(2030, 5, 1), "to", "The end date is before the start date."),
        (date(2030, 1, 1), date(2031, 1, 2), "to", "at most 366 days"),
        (date(1999, 12, 31), date(2000, 1, 1), "from", "years 2000 to 2999"),
        (date(2999, 12, 31), date(3000, 1, 1), "to", "years 2000 to 2999"),
        (date(1, 1, 1), date(9999, 12, 31), "from", "years 2000 to 2999"),
    ],
)
def test_ranges_a_person_did_not_mean_are_refused(first_day, last_day, field, message):
    with pytest.raises(ValidationFailed) as refused:
        check_range(first_day, last_day)
    assert list(refused.value.errors) == [field]
    assert message in refused.value.errors[field][0]


def test_the_longest_range_is_366_days(db):
    check_range(date(2032, 1, 1), date(2032, 12, 31))  # a leap year: 366 days
    assert build_report(first_day=date(2000, 1, 1), last_day=date(2000, 12, 31)).days == 366


def test_default_range_is_this_month():
    assert default_range(date(2030, 2, 14)) == (date(2030, 2, 1), date(2030, 2, 28))
    assert default_range(date(2032, 2, 29)) == (date(2032, 2, 1), date(2032, 2, 29))
    assert default_range(date(2030, 12, 31)) == (date(2030, 12, 1), date(2030, 12, 31))


def test_csv_rows_carry_the_same_figures(may):
    report = build_report(**MAY)

    rows = csv_rows(report, business="Spa", zone="Asia/Manila")

    assert rows[:4] == [
        ["Report", "Spa"],
        ["From", "2030-05-01"],
        ["To", "2030-05-31"],
        ["Time zone", "Asia/Manila"],
    ]
    assert ["Completed", "4", "4200.50"] in rows
    assert ["Total", "11", "10700.50"] in rows
    assert ["Completed (earned)", "4200.50"] in rows
    assert ["Confirmed and in progress (booked, not yet earned)", "1500.00"] in rows
    assert ["Ana Cruz", "4", "2", "2500.00", "1", "1"] in rows
    assert ["Total", "11", "4", "4200.50", "1", "2"] in rows
    assert ["Fay Uy", "2", "1", "1"] in rows
    assert ["Total", "3", "1", "2"] in rows


def test_a_series_is_counted_once_beside_its_sessions(desk, therapist, client_record, service):

    from django.utils import timezone

    from scheduling.selectors.reports import build_report
    from scheduling.services.series import Repeat, book_series

    first = timezone.make_aware(datetime(2030, 5, 7, 10, 0))
    now = timezone.make_aware(datetime(2030, 5, 1, 9, 0))
    for hour in (10, 14):
        book_series(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=first.replace(hour=hour),
            repeat=Repeat(every_weeks=1, count=8),
            now=now,
        )
    report = build_report(first_day=first.date(), last_day=first.date() + timedelta(days=13))
    assert (report.standing.series, report.standing.occurrences) == (2, 4)
    assert report.appointments == 4
