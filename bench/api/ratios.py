"""Issue 17's targets as ratios to the same run's ceilings, one `RESULT` line each.

A rate target is the scenario's saturation throughput over its ceiling's; a CPU target is
its server CPU per request over the bare view's (lower is better). Absolute figures are
reported beside them, never targeted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Measured(Protocol):
    key: str
    saturation: float
    server_cpu_ms: float
    p50: float
    p99: float


@dataclass(frozen=True)
class Ratio:
    name: str
    scenario: str
    against: str
    kind: str  # "rate": at least `target` × against's saturation; "cpu": at most × its CPU
    target: float


RATIOS = (
    Ratio("create", "create", "raw_booking", "rate", 0.5),
    Ratio("create_transport", "create_transport", "raw_booking_transport", "rate", 0.5),
    Ratio("day_list", "day_list", "bare", "rate", 0.5),
    Ratio("day_list_no_cache", "day_list_fresh", "bare", "rate", 0.25),
    Ratio("search_cpu", "search", "bare", "cpu", 4.0),
    Ratio("availability_cpu", "availability", "bare", "cpu", 8.0),
    Ratio("availability_transport_cpu", "availability_transport", "availability", "cpu", 2.0),
)


def result_line(name: str, ratio: float, target: float, *, at_most: bool) -> str:
    met = ratio <= target if at_most else ratio >= target
    return f"RESULT {name} ratio={ratio:.3f} target={target:g} {'PASS' if met else 'MISS'}"


def result_lines(outcomes: list[Measured]) -> list[str]:
    """The RESULT lines the run's outcomes allow (a target whose scenarios were not both
    measured, or measured nothing, has none)."""
    by_key = {o.key: o for o in outcomes}
    lines = []
    for r in RATIOS:
        got, base = by_key.get(r.scenario), by_key.get(r.against)
        if got is None or base is None:
            continue
        if r.kind == "rate" and base.saturation > 0:
            lines.append(
                result_line(r.name, got.saturation / base.saturation, r.target, at_most=False)
            )
        elif r.kind == "cpu" and base.server_cpu_ms > 0 and got.server_cpu_ms > 0:
            times = got.server_cpu_ms / base.server_cpu_ms
            lines.append(result_line(r.name, times, r.target, at_most=True))
    search = by_key.get("search")
    if search is not None and search.p50 > 0:
        lines.append(result_line("search_p99_over_p50", search.p99 / search.p50, 2.0, at_most=True))
    return lines
