"""The display formats (scheduling/formats.py) on their own, their template filters, and
the rule that keeps them in one place: no template spells a display format itself."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.template import engines
from django.utils import timezone

from scheduling import formats

MANILA = ZoneInfo("Asia/Manila")  # the test settings' business zone (UTC+8, no DST)
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_money_has_two_decimals_and_separated_thousands() -> None:
    assert formats.money(Decimal("1234.5")) == "1,234.50"
    assert formats.money(Decimal("0")) == "0.00"
    assert formats.money(Decimal("7.00")) == "7.00"


def test_money_large_and_negative() -> None:
    assert formats.money(Decimal("1234567890.12")) == "1,234,567,890.12"
    assert formats.money(Decimal("-20")) == "-20.00"
    assert formats.money(Decimal("-1234.56")) == "-1,234.56"


def test_a_moment_is_written_in_the_business_zone() -> None:
    # 06:30 UTC is 14:30 in Manila; the instant comes in as UTC, as the database gives it.
    instant = datetime(2030, 6, 3, 6, 30, tzinfo=UTC)
    assert formats.moment(instant) == "Mon 3 Jun, 14:30"
    assert formats.clock(instant) == "14:30"
    assert formats.day(instant) == "Mon 3 Jun"
    assert formats.moment_with_year(instant) == "Mon 3 Jun 2030, 14:30"
    assert formats.day_with_year(instant) == "Mon 3 Jun 2030"


def test_the_zone_moves_the_day_too() -> None:
    # 17:00 UTC on the 2nd is 01:00 on the 3rd in Manila.
    instant = datetime(2030, 6, 2, 17, 0, tzinfo=UTC)
    assert formats.moment(instant) == "Mon 3 Jun, 01:00"
    assert formats.day(instant) == "Mon 3 Jun"


def test_midnight_is_00_00() -> None:
    midnight = datetime(2030, 6, 3, 0, 0, tzinfo=MANILA)
    assert formats.moment(midnight) == "Mon 3 Jun, 00:00"
    assert formats.clock(midnight) == "00:00"


def test_a_single_digit_day_has_no_leading_zero_but_the_hour_does() -> None:
    assert formats.moment(datetime(2030, 7, 1, 9, 5, tzinfo=MANILA)) == "Mon 1 Jul, 09:05"
    assert formats.moment(datetime(2030, 12, 25, 18, 0, tzinfo=MANILA)) == "Wed 25 Dec, 18:00"


def test_a_current_zone_other_than_the_business_one_is_followed() -> None:
    # timezone.localtime is the current zone: what the templates' date filter used too.
    instant = datetime(2030, 6, 3, 6, 30, tzinfo=UTC)
    with timezone.override(ZoneInfo("America/New_York")):
        assert formats.moment(instant) == "Mon 3 Jun, 02:30"


def test_dates_and_times_of_day() -> None:
    assert formats.day(date(2030, 6, 3)) == "Mon 3 Jun"
    assert formats.day_with_year(date(2030, 6, 3)) == "Mon 3 Jun 2030"
    assert formats.clock(time(7, 45)) == "07:45"


def test_nothing_is_written_as_nothing() -> None:
    assert formats.money(None) == ""
    assert formats.moment(None) == ""
    assert formats.moment_with_year(None) == ""
    assert formats.clock(None) == ""
    assert formats.day(None) == ""
    assert formats.day_with_year(None) == ""


def render(source: str, **context: object) -> str:
    return engines["django"].from_string("{% load formats %}" + source).render(context)


def test_the_filters_are_the_functions() -> None:
    instant = datetime(2030, 6, 3, 6, 30, tzinfo=UTC)
    assert render("{{ at|moment }} · {{ at|clock }} · {{ at|day }}", at=instant) == (
        "Mon 3 Jun, 14:30 · 14:30 · Mon 3 Jun"
    )
    assert render("{{ at|moment_with_year }} · {{ at|day_with_year }}", at=instant) == (
        "Mon 3 Jun 2030, 14:30 · Mon 3 Jun 2030"
    )
    assert render("{{ v|money }}", v=Decimal("1234.5")) == "1,234.50"


@pytest.mark.parametrize("name", ["moment", "moment_with_year", "clock", "day", "day_with_year"])
def test_a_time_filter_given_nothing_writes_nothing(name: str) -> None:
    assert render(f"[{{{{ v|{name} }}}}]", v=None) == "[]"
    assert render(f"[{{{{ missing|{name} }}}}]") == "[]"


def test_the_money_filter_takes_text_and_whole_numbers() -> None:
    # A notification keeps its amount as text; a count of pesos may be an int.
    assert render("{{ v|money }}", v="1500.00") == "1,500.00"
    assert render("{{ v|money }}", v=0) == "0.00"
    assert render("[{{ v|money }}]", v=None) == "[]"
    assert render("[{{ v|money }}]", v="not money") == "[]"


# The display formats' spellings: a template writing one of these again has its own rule.
SPELLED_OUT = re.compile(r"""date:(["'])(D j M, H:i|H:i|D j M)\1|floatformat:(["'])2g\3""")


def test_no_template_spells_a_display_format_itself() -> None:
    found = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)}"
        for path in sorted(TEMPLATES.rglob("*"))
        if path.is_file() and path.suffix in {".html", ".txt"}
        for match in SPELLED_OUT.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "use the formats filters (scheduling/templatetags/formats.py)"
