"""The manager's reports: figures for a range of business days, on a page and as CSV.

Both come from scheduling/selectors/reports.build_report, which also judges the range;
the form here only reads the dates.
"""

from __future__ import annotations

import csv

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET

from scheduling import states
from scheduling.selectors.reports import (
    FIRST_YEAR,
    LAST_YEAR,
    MAX_DAYS,
    Report,
    build_report,
    csv_rows,
    default_range,
)
from scheduling.views.charts import day_bars
from scheduling.views.common import call_for_form, role_required

DATE_ERRORS = {
    "required": "Give a date.",
    "invalid": "Give a date as YYYY-MM-DD, for example 2030-05-01.",
}
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def date_field(label: str) -> forms.DateField:
    return forms.DateField(
        label=label,
        input_formats=["%Y-%m-%d"],
        error_messages=DATE_ERRORS,
        widget=forms.DateInput(
            format="%Y-%m-%d",
            attrs={"type": "date", "min": f"{FIRST_YEAR}-01-01", "max": f"{LAST_YEAR}-12-31"},
        ),
    )


class RangeForm(forms.Form):
    """`from` and `to` (the query's own names; `from` cannot be a class attribute)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from"] = date_field("From")
        self.fields["to"] = date_field("To")
        self.fields["to"].help_text = f"Both days included; at most {MAX_DAYS} days."


def range_form(request: HttpRequest) -> RangeForm:
    """Bound to the query, or to this month when the query names no dates."""
    if "from" in request.GET or "to" in request.GET:
        return RangeForm(request.GET)
    first, last = default_range(timezone.localdate())
    return RangeForm({"from": first.isoformat(), "to": last.isoformat()})


def report_for(form: RangeForm) -> Report | None:
    """The report, or None with the reasons on the form's fields."""
    if not form.is_valid():
        return None
    return call_for_form(
        form,
        build_report,
        first_day=form.cleaned_data["from"],
        last_day=form.cleaned_data["to"],
    )


@role_required(states.MANAGER)
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    form = range_form(request)
    report = report_for(form)
    chart = day_bars([(d.day, d.net) for d in report.money.days]) if report else None
    return render(
        request,
        "reports/index.html",
        {
            "form": form,
            "report": report,
            "chart": chart,
            "zone": settings.TIME_ZONE,
            "currency": settings.CURRENCY,
        },
        status=200 if report else 400,
    )


def safe_cell(value: str) -> str:
    """Text a spreadsheet shows as text: a name like '=HYPERLINK(…)' is not run."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


@role_required(states.MANAGER)
@require_GET
def export_csv(request: HttpRequest) -> HttpResponse:
    form = range_form(request)
    report = report_for(form)
    if report is None:
        problems = [
            f"{field}: {error}" for field, errors in form.errors.items() for error in errors
        ]
        return HttpResponse(
            "\n".join(problems) + "\n", status=400, content_type="text/plain; charset=utf-8"
        )
    name = f"report-{report.first_day:%Y-%m-%d}-to-{report.last_day:%Y-%m-%d}.csv"
    response = HttpResponse(
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
    writer = csv.writer(response)
    for row in csv_rows(report, business=settings.BUSINESS_NAME, zone=settings.TIME_ZONE):
        writer.writerow([safe_cell(cell) for cell in row])
    return response


urlpatterns = [
    path("", index, name="index"),
    path("export.csv", export_csv, name="export_csv"),
]
