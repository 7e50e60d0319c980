"""`python -m bench.api.capacity_replay`: the capacity arithmetic of availability with
transport alone, on the bench's read days, in-process.

It reads each day the way `GET /api/availability/?needs_transport=true` does (the fleet
and the starts asked, captured from `Fleet.carried` during a real `availability()`
call), then decides the day's questions again and again from those values, no database
in between, and reports process CPU per day:

- cold: every per-process memo emptied first (`fleet._answers`, capacity's leg answers
  and tokens), as a fresh gunicorn worker's first request for the day;
- warm: the memos kept, as every later request;
- baseline: `fleet.assign` of the day's waiting trips alone, memo emptied.

    python -m bench.api.capacity_replay --rounds 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.api.__main__ import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, bench_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api.capacity_replay")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    args = parser.parse_args(argv)
    os.environ.update(bench_env(args.database_url, DEFAULT_REDIS_URL))
    import django

    django.setup()
    from django.utils import timezone

    from bench.api import seed, workload
    from scheduling import fleet
    from scheduling.models import Service
    from scheduling.services import availability, capacity

    seeded = seed.ensure_seeded(seed.Scale(), log=lambda m: print(m, file=sys.stderr))
    described = workload.describe(seeded.anchor, seed.Scale())
    service = Service.objects.get(pk=described.service_for_availability)
    days = []
    carried = capacity.Fleet.carried

    def spy(self, asked):
        days.append((list(self.drivers), list(self.waiting), dict(asked)))
        return carried(self, asked)

    capacity.Fleet.carried = spy  # type: ignore[method-assign]
    now = timezone.now()
    try:
        for day in described.read_days:
            availability.availability(service=service, day=day, now=now, needs_transport=True)
    finally:
        capacity.Fleet.carried = carried  # type: ignore[method-assign]

    def forget() -> None:
        fleet._answers.clear()
        capacity._leg_answers.clear()
        capacity._tokens.clear()

    def per_day(run, *, cold: bool) -> float:
        if not cold:
            for drivers, waiting, asked in days:  # every day remembered once, untimed
                run(drivers, waiting, asked)
        spent = 0.0
        for _ in range(args.rounds):
            for drivers, waiting, asked in days:
                if cold:
                    forget()
                started = time.process_time()
                run(drivers, waiting, asked)
                spent += time.process_time() - started
        return spent * 1000 / (args.rounds * len(days))

    def decide(drivers, waiting, asked):
        return capacity.Fleet(drivers, waiting).carried(asked)

    def baseline(drivers, waiting, asked):
        return fleet.assign(drivers, waiting)

    print(
        f"{len(days)} days: {[len(w) for _, w, _ in days]} waiting trips, "
        f"{[len(a) for _, _, a in days]} starts asked, "
        f"{[len(decide(*d)) for d in days]} carried, {len(days[0][0])} drivers"
    )
    print(f"cold     {per_day(decide, cold=True):8.2f} ms CPU a day")
    print(f"warm     {per_day(decide, cold=False):8.2f} ms CPU a day")
    print(f"baseline {per_day(baseline, cold=True):8.2f} ms CPU a day")
    return 0


if __name__ == "__main__":
    sys.exit(main())
