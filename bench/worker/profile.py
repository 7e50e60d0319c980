"""`python -m bench.worker.profile`: where a dispatch pass and a delivery spend their time.

In process, no Celery: the same setup as `python -m bench.worker` (its database, emptied;
the fake provider in Redis), then
- dispatch: one `run_pass` over the backlog of queued trips (`--trips`, as many drivers
  waiting), inside a transaction rolled back afterwards, so it can be repeated on the same
  rows (`--repeat`);
- delivery: `deliver` for each of `--notifications` pending rows, one after another, as
  one worker process would run their tasks.

For each it prints the wall and CPU time per item (this process; PostgreSQL's own CPU is
not in it), the SQL statements per item, and with `--profile` the cProfile table (top
`--top` by cumulative time), also written to `--out`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.worker.__main__ import (
    BASE_DIR,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    REDIS_DB,
    book_trips,
    configure_environment,
    drivers,
    ensure_database,
    pending_notifications,
    reset_data,
    to_queue,
)


class Rollback(Exception):
    """Raised to undo a measured pass."""


def measured(label: str, items: int, work, args: argparse.Namespace) -> str:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    profiler = cProfile.Profile() if args.profile else None
    with CaptureQueriesContext(connection) as queries:
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        work()
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    lines = [
        f"{label}: {items} items in {wall:.3f} s wall, {cpu:.3f} s CPU (this process): "
        f"{1000 * wall / items:.2f} ms wall, {1000 * cpu / items:.2f} ms CPU, "
        f"{len(queries) / items:.2f} SQL statements per item ({len(queries)} in all)"
    ]
    if profiler:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
        stats.print_stats(args.top)
        lines.append(text.getvalue())
    return "\n".join(lines)


def profile_dispatch(args: argparse.Namespace) -> list[str]:
    from django.db import transaction
    from django.utils import timezone

    from scheduling.models import Trip
    from scheduling.services.dispatch import run_pass

    drivers(args.trips, prefix="bench-d", waiting=False)
    book_trips(args.trips // 2, start_day=3)
    to_queue("bench-d")
    out = []
    for n in range(args.repeat):

        def one_pass() -> None:
            try:
                with transaction.atomic():
                    decisions = run_pass(now=timezone.now())
                    assigned = sum(1 for d in decisions if d.driver_id is not None)
                    if assigned != args.trips:
                        raise SystemExit(f"{assigned} of {args.trips} trips assigned")
                    raise Rollback
            except Rollback:
                pass

        out.append(measured(f"dispatch pass {n + 1}", args.trips, one_pass, args))
        assert Trip.objects.filter(status="queued").count() == args.trips
    return out


def profile_delivery(args: argparse.Namespace) -> list[str]:
    from scheduling.models import Notification
    from scheduling.services.notifications.delivery import deliver

    ids = pending_notifications(args.notifications, tag="profile")

    def all_of_them() -> None:
        for pk in ids:
            if deliver(notification_id=pk) != "sent":
                raise SystemExit(f"notification {pk} was not sent")

    out = [measured("delivery", len(ids), all_of_them, args)]
    assert Notification.objects.filter(pk__in=ids, status="sent").count() == len(ids)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker.profile", description=__doc__)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    parser.add_argument(
        "--redis-db", type=int, default=int(os.environ.get("BENCH_REDIS_DB", REDIS_DB))
    )
    parser.add_argument("--part", choices=["dispatch", "delivery", "both"], default="both")
    parser.add_argument("--trips", type=int, default=600, help="dispatch backlog (even)")
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2, help="dispatch passes measured")
    parser.add_argument("--profile", action="store_true", help="add the cProfile table")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=BASE_DIR / "var" / "bench-worker")
    args = parser.parse_args()
    if "scheduling_bench_worker" not in urlsplit(args.database_url).path:
        raise SystemExit("bench-worker only ever uses a database named scheduling_bench_worker")
    configure_environment(args)
    sys.path.insert(0, str(BASE_DIR))
    ensure_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    from scheduling.notify.fake import store

    call_command("migrate", verbosity=0)
    reset_data()
    store().reset()
    report = []
    if args.part in ("dispatch", "both"):
        report += profile_dispatch(args)
    if args.part in ("delivery", "both"):
        report += profile_delivery(args)
    text = "\n\n".join(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"profile-{args.part}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
