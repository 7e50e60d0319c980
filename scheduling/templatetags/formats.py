"""The display formats of scheduling/formats.py as template filters, with the same names:
`{% load formats %}`, then `{{ appointment.start|moment }}`, `{{ trip.window_end|clock }}`,
`{{ day|day }}`, `{{ payment.amount|money }}`.

Like Django's own `date` and `floatformat`, a filter given nothing (None, or "" for a
variable that does not resolve) writes "".
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation

from django import template

from scheduling import formats

register = template.Library()


@register.filter
def money(value: Decimal | int | str | None) -> str:
    """Also takes an amount kept as text (a notification's `amount`) or a whole number."""
    if value is None or value == "":
        return ""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return ""
    return formats.money(amount)


@register.filter
def moment(value: datetime | str | None) -> str:
    return formats.moment(value) if isinstance(value, datetime) else ""


@register.filter
def moment_with_year(value: datetime | str | None) -> str:
    return formats.moment_with_year(value) if isinstance(value, datetime) else ""


@register.filter
def clock(value: datetime | time | str | None) -> str:
    return formats.clock(value) if isinstance(value, datetime | time) else ""


@register.filter
def day(value: date | str | None) -> str:
    return formats.day(value) if isinstance(value, date) else ""


@register.filter
def day_with_year(value: date | str | None) -> str:
    return formats.day_with_year(value) if isinstance(value, date) else ""
