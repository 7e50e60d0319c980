"""The manager's reports page (/reports/) and its CSV export: the figures the service
computes, shown and exported alike; the date range checked; managers only."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.utils import timezone

from scheduling.selectors.reports import default_range
from tests import factories
from tests.factories import Book, local

pytestmark = pytest.mark.django_db

PAGE = "/reports/"
CSV = "/reports/export.csv"
MAY_QUERY = {"from": "2030-05-01", "to": "2030-05-31"}


@pytest.fixture
def signed_in(client, manager):
    client.force_login(manager)
    return client


def cell(html: str, table: str, row: str) -> list[str]:
    """The cells of the row headed `row` in the table with id `table`."""
    body = html[html.index(f'id="{table}"') :]
    body = body[: body.index("</table>")]
    match = re.search(
        rf"<th scope=\"row\">(?:<span[^>]*></span>)?{re.escape(row)}</th>(.*?)</tr>", body, re.S
    )
    assert match, f"no row {row!r} in {table}"
    return [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    ]


def figure(html: str, name: str) -> str:
    return re.search(rf'data-figure="{name}">([^<]*)<', html).group(1)


# --- who sees it ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["receptionist", "therapist", "driver"])
def test_only_managers(client, role):
    client.force_login(factories.UserFactory(role=role))
    assert client.get(PAGE).status_code == 403
    assert client.get(CSV, MAY_QUERY).status_code == 403


def test_a_superuser_is_a_manager(client, db):
    client.force_login(factories.UserFactory(role="receptionist", is_superuser=True))
    assert client.get(PAGE).status_code == 200


def test_anonymous_is_sent_to_login(client, db):
    for path in (PAGE, CSV):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")


# --- figures ----------------------------------------------------------------------------


def test_the_page_shows_the_exact_figures(signed_in, may):
    response = signed_in.get(PAGE, MAY_QUERY)

    html = response.content.decode()
    assert response.status_code == 200
    assert figure(html, "revenue") == "4,200.50"
    assert figure(html, "booked") == "1,500.00"
    assert figure(html, "appointments") == "11"
    assert figure(html, "trips") == "3"
    assert cell(html, "by-status", "Completed")[0] == "4"
    assert cell(html, "by-status", "Completed")[-1] == "4,200.50"
    assert cell(html, "by-status", "No-show") == ["1", "", "1,200.00"]
    assert cell(html, "by-status", "Total") == ["11", "", "10,700.50"]
    assert cell(html, "per-therapist", "Ana Cruz") == ["4", "2", "2,500.00", "1", "1"]
    assert cell(html, "per-therapist", "Cora Diaz") == ["0", "0", "0.00", "0", "0"]
    assert cell(html, "per-therapist", "Total") == ["11", "4", "4,200.50", "1", "2"]
    assert cell(html, "per-driver", "Fay Uy") == ["2", "1", "1"]
    assert cell(html, "per-driver", "Total") == ["3", "1", "2"]
    assert "Dan Old" not in html  # inactive and idle
    assert "Wed 1 May 2030 – Fri 31 May 2030 · 31 days" in html
    assert 'href="/reports/export.csv?from=2030-05-01&amp;to=2030-05-31"' in html


def test_the_day_edges_are_the_business_zones(signed_in, may):
    html = signed_in.get(PAGE, {"from": "2030-04-30", "to": "2030-04-30"}).content.decode()
    assert figure(html, "revenue") == "9,999.00"
    html = signed_in.get(PAGE, {"from": "2030-06-01", "to": "2030-06-01"}).content.decode()
    assert figure(html, "revenue") == "8,888.00"


def test_the_default_is_this_month(signed_in, service):
    book = Book(service)
    therapist = factories.therapist(service, first_name="Ana", last_name="Cruz")
    first, last = default_range(timezone.localdate())
    book.appointment(therapist, local(first.isoformat(), "09:00"), "completed", "100.00")
    book.appointment(therapist, local(last.isoformat(), "21:00"), "completed", "20.00")

    html = signed_in.get(PAGE).content.decode()

    assert f'value="{first.isoformat()}"' in html and f'value="{last.isoformat()}"' in html
    assert figure(html, "revenue") == "120.00"


def test_the_page_is_a_bounded_number_of_queries(
    signed_in,
    may,
    service,
    django_assert_max_num_queries,
):
    book = Book(service)
    for n in range(40):
        therapist = factories.therapist(service)
        appointment = book.appointment(
            therapist, local(f"2030-05-{n % 28 + 1:02d}"), "completed", "1"
        )
        book.trip(
            appointment,
            factories.driver(),
            local(f"2030-05-{n % 28 + 1:02d}", "09:00"),
            "done",
            "pickup",
        )

    # session, user, and the report's nine
    with django_assert_max_num_queries(11):
        html = signed_in.get(PAGE, MAY_QUERY).content.decode()
    assert figure(html, "revenue") == "4,240.50"
    with django_assert_max_num_queries(11):
        signed_in.get(CSV, MAY_QUERY)


# --- CSV --------------------------------------------------------------------------------


def test_the_csv_has_the_same_figures(signed_in, may):
    response = signed_in.get(CSV, MAY_QUERY)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="report-2030-05-01-to-2030-05-31.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert ["From", "2030-05-01"] in rows and ["To", "2030-05-31"] in rows
    assert ["Time zone", "Asia/Manila"] in rows
    assert ["Completed", "4", "4200.50"] in rows
    assert ["Pending", "1", "600.00"] in rows
    assert ["Total", "11", "10700.50"] in rows
    assert ["Completed (earned)", "4200.50"] in rows
    assert ["Confirmed and in progress (booked, not yet earned)", "1500.00"] in rows
    assert ["Ana Cruz", "4", "2", "2500.00", "1", "1"] in rows
    assert ["Ben Lim", "6", "1", "1200.50", "0", "1"] in rows
    assert ["Fay Uy", "2", "1", "1"] in rows
    assert ["Gus Tan", "1", "0", "1"] in rows
    assert ["Total", "3", "1", "2"] in rows


def test_a_name_that_looks_like_a_formula_stays_text(signed_in, service):
    factories.therapist(service, first_name="=HYPERLINK(1)", last_name="")
    rows = list(csv.reader(io.StringIO(signed_in.get(CSV, MAY_QUERY).content.decode())))
    assert ["'=HYPERLINK(1)", "0", "0", "0.00", "0", "0"] in rows


# --- bad ranges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "2030-05-31", "to": "2030-05-01"}, "The end date is before the start date."),
        ({"from": "2030-01-01", "to": "2031-06-01"}, "at most 366 days"),
        ({"from": "1999-12-31", "to": "2000-01-05"}, "years 2000 to 2999"),
        ({"from": "3000-01-01", "to": "3000-01-02"}, "years 2000 to 2999"),
        ({"from": "10000-01-01", "to": "2030-05-01"}, "Give a date as YYYY-MM-DD"),
        ({"from": "yesterday", "to": "2030-05-01"}, "Give a date as YYYY-MM-DD"),
        ({"from": "2030-02-30", "to": "2030-05-01"}, "Give a date as YYYY-MM-DD"),
        ({"from": "2030-05-01"}, "Give a date."),
        ({"from": "", "to": ""}, "Give a date."),
        ({"from": "9" * 5000, "to": "2030-05-01"}, "Give a date as YYYY-MM-DD"),
        ({"from": "2030-05-01\x00", "to": "2030-05-02"}, "Give a date as YYYY-MM-DD"),
    ],
)
def test_bad_ranges_are_messages_on_the_page_and_400_for_the_csv(signed_in, query, message):
    page = signed_in.get(PAGE, query)

    assert page.status_code == 400
    html = page.content.decode()
    assert message in html
    assert 'class="field-error"' in html
    assert "data-figure" not in html  # no figures for a range nobody meant

    export = signed_in.get(CSV, query)
    assert export.status_code == 400
    assert message in export.content.decode()
    assert "Content-Disposition" not in export


def test_the_longest_range_is_accepted(signed_in, db):
    response = signed_in.get(PAGE, {"from": "2032-01-01", "to": "2032-12-31"})
    assert response.status_code == 200
    assert "366 days" in response.content.decode()


def test_reports_are_read_only(signed_in, db):
    assert signed_in.post(PAGE, MAY_QUERY).status_code == 405
    assert signed_in.post(CSV, MAY_QUERY).status_code == 405


def test_the_range_survives_into_the_form(signed_in, db):
    html = signed_in.get(PAGE, {"from": "2030-05-31", "to": "2030-05-01"}).content.decode()
    # The query's own dates, not the default month, for the manager to correct.
    assert 'value="2030-05-31"' in html and 'value="2030-05-01"' in html
