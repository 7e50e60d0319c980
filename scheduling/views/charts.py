"""Pure geometry for a server-rendered SVG bar chart: one bar per day, a zero line, a few
round ticks. No request, no ORM; the template draws it (templates/reports/_chart.html),
and the table beside it is the chart's text alternative."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

WIDTH = 720
HEIGHT = 240
LEFT = 64  # room for the tick labels
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the day labels


@dataclass(frozen=True)
class Bar:
    day: date
    value: Decimal
    x: float
    y: float
    width: float
    height: float
    negative: bool
    label: str  # the day's short label under the axis, "" when skipped for room


@dataclass(frozen=True)
class Tick:
    value: Decimal
    y: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right_edge: int
    zero_y: float
    bars: list[Bar]
    ticks: list[Tick]
    label_y: float


def nice_step(span: Decimal) -> Decimal:
    """A round tick step (1, 2 or 5 times a power of ten) giving at most five ticks."""
    raw = span / 4
    if raw <= 1:
        return Decimal(1)
    power = Decimal(10) ** (len(str(int(raw))) - 1)
    for factor in (1, 2, 5, 10):
        if raw <= power * factor:
            return power * factor
    return power * 10


def day_bars(values: list[tuple[date, Decimal]]) -> Chart:
    """Bars for (day, amount) in order; a negative day (more refunded than collected)
    hangs below the zero line."""
    top = max([v for _, v in values] + [Decimal(0)])
    bottom = min([v for _, v in values] + [Decimal(0)])
    step = nice_step(top - bottom)
    high = -(-top // step) * step if top > 0 else Decimal(0)
    low = (bottom // step) * step if bottom < 0 else Decimal(0)
    if high == low:
        high = step
    plot_h = HEIGHT - TOP - BOTTOM
    plot_w = WIDTH - LEFT - RIGHT

    def y_of(v: Decimal) -> float:
        return round(TOP + float((high - v) / (high - low)) * plot_h, 2)

    zero = y_of(Decimal(0))
    n = max(len(values), 1)
    slot = plot_w / n
    gap = min(slot * 0.2, 4.0)
    every = max(1, round(n / 12))  # at most about a dozen day labels
    bars = []
    for i, (day, value) in enumerate(values):
        y = y_of(value)
        bars.append(
            Bar(
                day=day,
                value=value,
                x=round(LEFT + i * slot + gap / 2, 2),
                y=min(y, zero),
                width=round(max(slot - gap, 1.0), 2),
                height=round(abs(zero - y), 2),
                negative=value < 0,
                label=f"{day.day}" if i % every == 0 else "",
            )
        )
    ticks = []
    v = low
    while v <= high:
        ticks.append(Tick(value=v, y=y_of(v)))
        v += step
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right_edge=WIDTH - RIGHT,
        zero_y=zero,
        bars=bars,
        ticks=ticks,
        label_y=HEIGHT - BOTTOM + 16,
    )
