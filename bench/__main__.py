"""`python -m bench` (`make bench`): the api, worker and websocket benchmarks in turn, and
ONE dated report of them in bench/results/ (machine, commit, the load before each part,
every figure and ceiling, and each target's RESULT line).

`--quick` runs every scenario shorter (about five minutes on the 2-core machine); the
figures are noisier, the targets the same. Anything after `--` goes to every part.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS = BASE_DIR / "bench" / "results"


@dataclass(frozen=True)
class Part:
    name: str
    module: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    report: Path  # the part's own report, folded into the one written here


PARTS = (
    Part(
        "api",
        "bench.api",
        (),
        ("--step-seconds", "2", "--warmup-seconds", "1", "--half-seconds", "3",
         "--half-seconds-max", "4", "--create-bodies", "3000",
         "--transport-bodies", "2500"),
        BASE_DIR / "var" / "bench-api",
    ),
    Part(
        "worker",
        "bench.worker",
        (),
        ("--trips", "120", "--notifications", "600", "--seconds", "3"),
        BASE_DIR / "var" / "bench-worker" / "results.md",
    ),
    Part(
        "ws",
        "bench.ws",
        (),
        ("--sockets", "300", "--desk", "30", "--seconds", "5", "--max-seconds", "3",
         "--idle-max", "3000", "--idle-step", "500", "--idle-seconds", "25",
         "--idle-hold", "2"),
        BASE_DIR / "var" / "bench-ws" / "table.md",
    ),
)  # fmt: skip

# What each ceiling is, for the report's reader: one sentence each.
CEILINGS = {
    "bare view (api)": "a plain Django view through the full middleware stack, no DRF and "
    "no database: the least any API request can cost.",
    "bare INSERT (api)": "one raw INSERT of an appointment row, autocommit: the floor of a "
    "booking's database work.",
    "raw booking (api)": "every row a product booking writes (appointment, log row, "
    "notifications, stream event, recipients, counter) under the same timetable lock, "
    "counter lock and exclusion constraint, in one transaction of hand-written SQL with "
    "the values precomputed (bench/api/raw_booking.py): what create is read against.",
    "no-op task (worker)": "a Celery task that does nothing, through the same broker and "
    "worker pool: what delivery and dispatch are read against.",
    "bare UPDATE+COMMIT (worker)": "one UPDATE and commit on one connection.",
    "Redis pub/sub round trip (ws)": "a timestamp published and received through the "
    "bench's own Redis at the stream's rate, the floor under commit-to-client latency; "
    "websocket_p95 is read against STREAM_BATCH_MS plus five of them.",
    "idle sockets (ws)": "no ceiling: issue 17's own absolutes (30,000 at 32 KiB each); the "
    "ramp runs until handshakes fail twice, its cap or its time limit, and says which "
    "(--quick stops it at 3,000 or 25 s: its idle_sockets line says CAPPED, not MISS).",
}


@dataclass
class Ran:
    part: Part
    load_before: str
    seconds: float
    returncode: int
    results: list[str] = field(default_factory=list)
    report: str = ""


def load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def commit() -> str:
    done = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], cwd=BASE_DIR, capture_output=True, text=True
    )
    return done.stdout.strip()[:100] or "unknown"


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {sys.version.split()[0]}"


def part_report(part: Part, since: float) -> str:
    """The part's own report, if it wrote one during this run."""
    path = part.report
    if path.is_dir():
        written = sorted(path.glob("*.md"), key=lambda p: p.stat().st_mtime)
        path = written[-1] if written else path
    if path.is_file() and path.stat().st_mtime >= since:
        return path.read_text().strip()
    return "(no report written: see the RESULT lines and the part's exit status)"


def run_part(part: Part, *, quick: bool, extra: list[str]) -> Ran:
    load = load_average()
    print(f"== bench {part.name}: load average {load}", flush=True)
    args = [sys.executable, "-m", part.module, *(part.quick if quick else part.full), *extra]
    started = time.time()
    process = subprocess.Popen(args, cwd=BASE_DIR, stdout=subprocess.PIPE, text=True)
    results = []
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.startswith("RESULT "):
            results.append(line.strip())
    returncode = process.wait()
    ran = Ran(part, load, time.time() - started, returncode, results)
    ran.report = part_report(part, started)
    return ran


def render(runs: list[Ran], *, started: datetime, quick: bool, machine_text: str, head: str) -> str:
    lines = [
        f"# Benchmarks of {started:%Y-%m-%d %H:%M} UTC (`make bench"
        f"{' BENCH_ARGS=--quick' if quick else ''}`)",
        "",
        f"- Machine: {machine_text}; PostgreSQL, Redis and the load generators on it too.",
        f"- Commit: {head}",
        "- Other work shares the machine: the load average before each part is below; "
        "absolute figures are reported, only ratios to the same run's ceilings are targeted.",
        "",
        "## Targets",
        "",
        "```",
        *[line for ran in runs for line in ran.results],
        "```",
        "",
        "## Ceilings",
        "",
        *[f"- {name}: {sentence}" for name, sentence in CEILINGS.items()],
    ]
    for ran in runs:
        lines += [
            "",
            f"## {ran.part.name}",
            "",
            f"Load average before: {ran.load_before}; took {ran.seconds:.0f} s; "
            f"exit status {ran.returncode}.",
            "",
            ran.report,
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario shorter")
    parser.add_argument("--parts", default="api,worker,ws", help="comma-separated")
    parser.add_argument("--out", default=str(RESULTS))
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    started = datetime.now(UTC)
    wanted = args.parts.split(",")
    runs = [run_part(p, quick=args.quick, extra=extra) for p in PARTS if p.name in wanted]
    text = render(runs, started=started, quick=args.quick, machine_text=machine(), head=commit())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started:%Y-%m-%d-%H%M}-bench{'-quick' if args.quick else ''}.md"
    path.write_text(text)
    print("\n".join(line for ran in runs for line in ran.results))
    print(f"written: {path}")
    return max((ran.returncode for ran in runs), default=0)


if __name__ == "__main__":
    sys.exit(main())
