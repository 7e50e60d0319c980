"""Couples and group visits in the manager's report (issue 14): each visit counted once,
beside its sessions counted per appointment, on the page, in the CSV and in the same
number of queries."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from django.utils import timezone

from scheduling.selectors.reports import build_report, csv_rows
from scheduling.services.appointments import create_appointment
from scheduling.services.visits import SessionAsk, book_visit
from tests import factories

pytestmark = pytest.mark.django_db

MAY = {"first_day": date(2030, 5, 1), "last_day": date(2030, 5, 31)}
NOW = timezone.make_aware(datetime(2030, 4, 25, 9, 0))


def at(day: int, hour: int, month: int = 5) -> datetime:
    return timezone.make_aware(datetime(2030, month, day, hour, 0))


@pytest.fixture
def staff(service, therapist):
    ben = factories.therapist(service, username="ben", first_name="Ben", last_name="Reyes")
    cara = factories.therapist(service, username="cara", first_name="Cara", last_name="Lim")
    return therapist, ben, cara


def visit(desk, client_record, service, start, *therapists):
    return book_visit(
        actor=desk,
        client_id=client_record.pk,
        start=start,
        sessions=[SessionAsk(service_id=service.pk, therapist_id=t.pk) for t in therapists],
        needs_transport=False,
        now=NOW,
    )


def test_a_visit_is_counted_once_beside_its_sessions(desk, client_record, service, staff):
    ana, ben, cara = staff
    visit(desk, client_record, service, at(7, 10), ana, ben)
    visit(desk, client_record, service, at(8, 14), ana, ben, cara)
    visit(desk, client_record, service, at(3, 10, month=6), ana, ben)  # after the range
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=cara.pk,
        start=at(7, 10),
        now=NOW,
    )

    report = build_report(**MAY)

    assert (report.grouped.visits, report.grouped.sessions) == (2, 5)
    assert report.appointments == 6  # every session is an appointment of its own
    assert (report.standing.series, report.standing.occurrences) == (0, 0)
    rows = csv_rows(report, business="Spa", zone="Asia/Manila")
    assert ["Visits (each counted once)", "2"] in rows
    at_visits = rows.index(["Couples and group visits"])
    assert rows[at_visits + 2] == ["Their sessions in the range", "5"]


def test_a_visit_across_the_ranges_edge_is_counted_in_the_range_its_sessions_start(
    desk, client_record, service, staff
):
    ana, ben, _ = staff
    visit(desk, client_record, service, at(31, 18), ana, ben)
    may = build_report(**MAY)
    june = build_report(first_day=date(2030, 6, 1), last_day=date(2030, 6, 30))
    assert (may.grouped.visits, may.grouped.sessions) == (1, 2)
    assert (june.grouped.visits, june.grouped.sessions) == (0, 0)


def test_visits_add_no_query(desk, client_record, service, staff, django_assert_num_queries):
    ana, ben, cara = staff
    for day in range(1, 11):
        visit(desk, client_record, service, at(day, 10), ana, ben, cara)
    # statuses, per therapist, per driver, payments received, refunds, balances owed,
    # collections, names, series and visits (one aggregate)
    with django_assert_num_queries(9):
        report = build_report(**MAY)
    assert (report.grouped.visits, report.grouped.sessions) == (10, 30)


def test_the_reports_page_shows_visits_once_and_per_session(
    client, manager, desk, client_record, service, staff
):
    ana, ben, _ = staff
    visit(desk, client_record, service, at(7, 10), ana, ben)
    client.force_login(manager)
    page = client.get("/reports/", {"from": "2030-05-01", "to": "2030-05-31"}).content.decode()
    assert '<span data-figure="visits">1</span> visit (each counted once)' in page
    assert '<span data-figure="visit-sessions">2</span> of the appointments above' in page
