"""How money and times are written for people: each display format, once.

Templates use these as filters (`{% load formats %}`, then `{{ start|moment }}`,
`{{ price|money }}`); Python code (desk messages, error texts) calls them directly.
An aware instant is shown in the current time zone, which is the business zone
(settings.TIME_ZONE; notifications render with it too). None gives "", as Django's date
filter does. Machine formats (ISO 8601 in the API, 'Y-m-d' in query strings, 'Ymd' in
file names) are not display: they stay where they are used.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

from django.utils import dateformat, timezone

# Django's date format characters, as the templates' `date` filter reads them.
MOMENT = "D j M, H:i"  # Mon 3 Jun, 14:30
MOMENT_WITH_YEAR = "D j M Y, H:i"  # Mon 3 Jun 2030, 14:30
CLOCK = "H:i"  # 14:30
DAY = "D j M"  # Mon 3 Jun
DAY_WITH_YEAR = "D j M Y"  # Mon 3 Jun 2030


def money(amount: Decimal | None) -> str:
    """An amount with two decimals and thousands separated: '1,234.50', '-20.00'."""
    return "" if amount is None else f"{amount:,.2f}"


def moment(instant: datetime | None) -> str:
    """'Mon 3 Jun, 14:30'."""
    return _written(instant, MOMENT)


def moment_with_year(instant: datetime | None) -> str:
    """'Mon 3 Jun 2030, 14:30', for lists that reach past this year."""
    return _written(instant, MOMENT_WITH_YEAR)


def clock(value: datetime | time | None) -> str:
    """'14:30'."""
    return _written(value, CLOCK)


def day(value: date | None) -> str:
    """'Mon 3 Jun'; an instant gives its day in the business zone."""
    return _written(value, DAY)


def day_with_year(value: date | None) -> str:
    """'Mon 3 Jun 2030'."""
    return _written(value, DAY_WITH_YEAR)


def _written(value: date | time | None, pattern: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    return dateformat.format(value, pattern)
