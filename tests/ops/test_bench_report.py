"""The API benchmark's verdicts: what its report says about a target, from measured rows."""

from __future__ import annotations

import math

from bench.api.__main__ import Outcome, headroom, relative_costs, target_text, verdict
from bench.api.ratios import result_lines


def outcome(key: str, *, half: float, p95: float, cpu_ms: float, ceiling=None) -> Outcome:
    return Outcome(
        key=key,
        label=key,
        levels=[],
        saturation=half * 2,
        saturation_connections=4,
        half_rate=half,
        half_throughput=half,
        p50=p95 / 2,
        p95=p95,
        p99=p95 * 2,
        half_requests=1000,
        half_errors=0,
        half_statuses={"201": 1000},
        generator_cpu=0.1,
        server_cpu_ms=cpu_ms,
        ceiling=ceiling,
    )


def test_verdict_reads_a_rate_against_its_own_ceiling_never_an_absolute():
    raw = outcome("raw_booking", half=200, p95=5, cpu_ms=4.0)
    text = verdict("create", outcome("create", half=90, p95=300, cpu_ms=10), {"raw_booking": raw})

    assert text == "rate MISS (0.450 × raw booking; ≥ 0.5 ×)"


def test_verdict_passes_a_met_ratio_and_says_when_its_ceiling_was_not_run():
    bare = outcome("bare", half=1000, p95=2, cpu_ms=1.0)
    others = {"bare": bare}

    assert verdict("day_list", outcome("day_list", half=600, p95=50, cpu_ms=2), others) == (
        "rate PASS (0.600 × bare view; ≥ 0.5 ×)"
    )
    # outcome() makes p99 four times p50
    assert verdict("search", outcome("search", half=300, p95=6, cpu_ms=4.5), others) == (
        "CPU MISS (4.50 × bare view's; ≤ 4 ×); p99 MISS (4.00 × p50; ≤ 2 ×)"
    )
    assert verdict("day_list", outcome("day_list", half=600, p95=5, cpu_ms=2)) == (
        "rate not judged (no bare view in this run)"
    )
    assert verdict("bare", bare) == "ceiling"
    assert verdict("day_list_writes", outcome("day_list_writes", half=9, p95=9, cpu_ms=9)) == "—"


def test_headroom_reads_each_rate_target_against_its_own_ceiling():
    rows = [
        outcome("raw_booking", half=440, p95=4, cpu_ms=2.0),
        outcome("bare", half=1600, p95=3, cpu_ms=0.8),
        outcome("create", half=50, p95=40, cpu_ms=20.0, ceiling="raw_booking"),
        outcome("day_list", half=500, p95=6, cpu_ms=2.4, ceiling="bare"),
        outcome("search", half=180, p95=12, cpu_ms=6.0, ceiling="bare"),  # no rate target
    ]

    assert headroom(rows) == [
        "- create: saturation 100/s is 0.114 × the raw booking ceiling's 880/s "
        "(target ≥ 0.5 ×); a request costs 10.0 × the ceiling's server CPU (20.00 vs 2.00 ms).",
        "- day_list: saturation 1000/s is 0.312 × the bare view ceiling's 3200/s "
        "(target ≥ 0.5 ×); a request costs 3.0 × the ceiling's server CPU (2.40 vs 0.80 ms).",
    ]


def test_headroom_skips_a_scenario_that_failed_or_lacks_its_ceiling():
    failed = outcome("create", half=0, p95=math.nan, cpu_ms=math.nan, ceiling="insert")
    alone = outcome("day_list", half=500, p95=6, cpu_ms=2.4, ceiling="bare")

    assert headroom([outcome("insert", half=440, p95=4, cpu_ms=2.0), failed, alone]) == []


def test_a_cost_target_is_read_against_the_other_scenario_of_the_same_run():
    plain = outcome("availability", half=80, p95=20, cpu_ms=12.0, ceiling="bare")
    dear = outcome("availability_transport", half=40, p95=30, cpu_ms=30.0, ceiling="bare")
    cheap = outcome("availability_transport", half=60, p95=22, cpu_ms=18.0, ceiling="bare")

    assert verdict("availability_transport", dear, {"availability": plain}) == (
        "CPU MISS (2.50 × availability's; ≤ 2 ×)"
    )
    assert verdict("availability_transport", cheap, {"availability": plain}) == (
        "CPU PASS (1.50 × availability's; ≤ 2 ×)"
    )
    assert verdict("availability_transport", cheap) == (
        "CPU not judged (no availability in this run)"
    )
    assert target_text("availability_transport") == "server CPU ≤ 2 × availability's"


def test_relative_costs_state_the_ratio_and_both_against_the_ceiling():
    rows = [
        outcome("bare", half=1600, p95=3, cpu_ms=0.8),
        outcome("availability", half=80, p95=20, cpu_ms=12.0, ceiling="bare"),
        outcome("availability_transport", half=40, p95=30, cpu_ms=30.0, ceiling="bare"),
    ]

    assert relative_costs(rows) == [
        "- availability_transport: a request costs 2.50 × availability's server CPU "
        "(30.00 vs 12.00 ms; target ≤ 2 ×); against the bare view ceiling (0.80 ms): "
        "37.5 × and 15.0 ×."
    ]
    failed = outcome("availability_transport", half=0, p95=math.nan, cpu_ms=math.nan)
    assert relative_costs([rows[0], rows[1], failed]) == []


def test_each_ratio_target_prints_one_result_line_against_its_own_ceiling():
    rows = [
        outcome("raw_booking", half=200, p95=5, cpu_ms=4.0),
        outcome("bare", half=1000, p95=2, cpu_ms=1.0),
        outcome("create", half=90, p95=30, cpu_ms=12.0, ceiling="raw_booking"),
        outcome("raw_booking_transport", half=100, p95=8, cpu_ms=8.0),
        outcome("create_transport", half=55, p95=40, cpu_ms=20.0, ceiling="raw_booking_transport"),
        outcome("day_list", half=600, p95=5, cpu_ms=2.0, ceiling="bare"),
        outcome("day_list_fresh", half=200, p95=8, cpu_ms=3.0, ceiling="bare"),
        outcome("search", half=300, p95=6, cpu_ms=4.5, ceiling="bare"),
        outcome("availability", half=100, p95=20, cpu_ms=7.5, ceiling="bare"),
        outcome("availability_transport", half=60, p95=30, cpu_ms=15.5, ceiling="bare"),
    ]

    assert result_lines(rows) == [
        "RESULT create ratio=0.450 target=0.5 MISS",
        "RESULT create_transport ratio=0.550 target=0.5 PASS",
        "RESULT day_list ratio=0.600 target=0.5 PASS",
        "RESULT day_list_no_cache ratio=0.200 target=0.25 MISS",
        "RESULT search_cpu ratio=4.500 target=4 MISS",
        "RESULT availability_cpu ratio=7.500 target=8 PASS",
        "RESULT availability_transport_cpu ratio=2.067 target=2 MISS",
        # outcome() makes p99 four times p50
        "RESULT search_p99_over_p50 ratio=4.000 target=2 MISS",
    ]


def test_a_ratio_without_its_ceiling_in_the_run_prints_nothing():
    rows = [outcome("create", half=90, p95=30, cpu_ms=12.0, ceiling="raw_booking")]

    assert result_lines(rows) == []


def test_worker_targets_are_half_the_no_op_rate_and_a_failed_pass_prints_nothing():
    from bench.worker.__main__ import result_lines as worker_lines

    measured = {"noop_backlog": 400.0, "delivery_backlog": 240.0, "dispatch_backlog": 150.0}
    assert worker_lines(measured) == [
        "RESULT delivery ratio=0.600 target=0.5 PASS",
        "RESULT dispatch ratio=0.375 target=0.5 MISS",
    ]
    assert worker_lines({**measured, "dispatch_backlog": None}) == [
        "RESULT delivery ratio=0.600 target=0.5 PASS"
    ]


def test_the_one_report_names_machine_commit_load_ceilings_and_every_result():
    from datetime import UTC, datetime

    from bench.__main__ import PARTS, Ran, render

    api, worker = PARTS[0], PARTS[1]
    runs = [
        Ran(
            api,
            "5.10, 4.00, 3.00",
            180,
            0,
            ["RESULT create ratio=0.143 target=0.5 MISS"],
            "api table",
        ),
        Ran(worker, "6.00, 5.00, 4.00", 60, 1, ["RESULT delivery ratio=0.600 target=0.5 PASS"]),
    ]
    text = render(
        runs,
        started=datetime(2026, 12, 1, 23, 40, tzinfo=UTC),
        quick=True,
        machine_text="2 cores, 24 GiB, Python 3.11.7",
        head="abc1234 bench: something",
    )

    assert text.startswith("# Benchmarks of 2026-12-01 23:40 UTC (`make bench BENCH_ARGS=--quick`)")
    assert "- Machine: 2 cores, 24 GiB, Python 3.11.7" in text
    assert "- Commit: abc1234 bench: something" in text
    targets = text.split("## Targets")[1].split("## Ceilings")[0]
    assert "RESULT create ratio=0.143 target=0.5 MISS\nRESULT delivery ratio=0.600" in targets
    assert "- raw booking (api): every row a product booking writes" in text
    assert "Load average before: 5.10, 4.00, 3.00; took 180 s; exit status 0.\n\napi table" in text
    assert "Load average before: 6.00, 5.00, 4.00; took 60 s; exit status 1." in text


def test_websocket_p95_is_read_against_the_batch_and_five_pub_sub_round_trips(monkeypatch):
    from bench.ws.__main__ import result_lines as ws_lines

    monkeypatch.setenv("STREAM_BATCH_MS", "25")
    report = {
        "ceiling": {"p95_ms": 2.0},  # limit: 25 + 5 × 2 = 35 ms
        "latency": {"p95_ms": 28.0},
        "idle": {"max_open": 12000, "steps": [{"kib_per_socket": 40.0}]},
    }
    assert ws_lines(report) == [
        "RESULT websocket_p95 ratio=0.800 target=1 PASS",
        "RESULT idle_sockets ratio=0.400 target=1 MISS",
        "RESULT idle_socket_kib ratio=1.250 target=1 MISS",
    ]


def test_an_idle_ramp_stopped_by_its_cap_below_the_target_says_capped_not_miss():
    from bench.ws.__main__ import result_lines as ws_lines

    report = {
        "idle": {
            "max_open": 3000,
            "cap": 3000,
            "reached_cap": True,
            "stopped_by": "the cap of 3000 sockets (not a failure)",
            "steps": [{"kib_per_socket": 30.0}],
        },
    }
    assert ws_lines(report) == [
        "RESULT idle_sockets ratio=0.100 target=1 CAPPED "
        "(stopped by the cap of 3000 sockets (not a failure))",
        "RESULT idle_socket_kib ratio=0.938 target=1 PASS",
    ]
    # The ramp's time limit is its own limit too (--quick's 25 s stops it near 2,000).
    report["idle"]["stopped_by"] = "the time limit of 25 s (not a failure)"
    capped = ws_lines(report)[0]
    assert capped.endswith("CAPPED (stopped by the time limit of 25 s (not a failure))")
    # Stopped by failing handshakes (the real maximum), the same count is a miss.
    report["idle"]["reached_cap"] = False
    assert ws_lines(report)[0] == "RESULT idle_sockets ratio=0.100 target=1 MISS"
