"""`python -m bench.api.cost`: what one request of each scenario costs, in-process.

The load benchmark (`python -m bench.api`) measures throughput and latency on a machine
that should be quiet. This measures only CPU per request, which does not depend on who
else is using the machine: it serves the scenarios' requests through the same WSGI
application gunicorn runs (production settings, the bench database, no HTTP server in
between) and reports the CPU time of this process and of its PostgreSQL backend per
request. With `--profile` it prints where the time goes (cProfile: the functions with
the most time of their own, then the most time including their callees).

    python -m bench.api.cost --only day_list --requests 500
    python -m bench.api.cost --only create --profile
    python -m bench.api.cost --only raw_booking,create   # a booking beside its ceiling
    python -m bench.api.cost --only availability,availability_transport --profile
    python -m bench.api.cost --only bare,day_list,search   # the reads beside their ceiling

The numbers are a little lower than the load benchmark's "server CPU", which also pays
for gunicorn's HTTP parsing and a TCP connection per request.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import time
from pathlib import Path

from bench.api.__main__ import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, REDIS_DBS, bench_env

SCENARIOS = (
    "bare",
    "raw_booking",
    "create",
    "raw_booking_transport",
    "create_transport",
    "day_list",
    "day_list_fresh",
    "search",
    "availability",
    "availability_transport",
)
# Sent with every request of a scenario, as WSGI environ keys.
ENVIRON = {"day_list_fresh": {"HTTP_CACHE_CONTROL": "no-cache"}}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api.cost", description=__doc__)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=400, help="measured, per scenario")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument("--top", type=int, default=35, help="functions listed by --profile")
    parser.add_argument(
        "--profile-out", help="with --profile, also write the raw cProfile stats here (pstats)"
    )
    parser.add_argument("--queries", action="store_true", help="print one request's SQL")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds one request may take; a scenario with a slower one is reported failed",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    return parser.parse_args(argv)


def wsgi_request(
    method: str, path: str, token: str, body: bytes = b"", extra: dict | None = None
) -> dict:
    route, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "CONTENT_TYPE": "application/json" if body else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        **(extra or {}),
    }


def serve(application, environ: dict) -> tuple[str, bytes]:
    answer: dict[str, str] = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = status

    result = application(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()  # request_finished: what gunicorn triggers after each answer
    return answer["status"], body


def backend_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from bench.api.tools import ensure_database

    ensure_database(args.database_url)  # a fresh machine has none yet, as the load bench does
    os.environ.update(bench_env(args.database_url, args.redis_url))
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from bench.api import seed, workload

    call_command("migrate", "--noinput", verbosity=0)  # as the load benchmark does
    scale = seed.Scale()
    seeded = seed.ensure_seeded(scale, log=lambda m: print(m, file=sys.stderr))
    workload.forget_previous_runs()
    workload.forget_queued_messages(args.redis_url, REDIS_DBS.values())
    described = workload.describe(seeded.anchor, scale)
    os.environ.update(described.insert_env)  # what the ceilings' views book with, as gunicorn's
    application = get_wsgi_application()
    wanted = args.only.split(",")
    requests: dict[str, list[tuple[str, str, bytes]]] = {}
    total = args.requests + args.warmup + 1
    if "create" in wanted or "create_transport" in wanted:
        plain, carried = workload.booking_bodies(
            total if "create" in wanted else 0,
            total if "create_transport" in wanted else 0,
            anchor=seeded.anchor,
            scale=scale,
        )
        for key, bodies in (("create", plain), ("create_transport", carried)):
            if key in wanted:
                requests[key] = [("POST", "/api/appointments/", b) for b in bodies]
    # The bookings' ceilings (bench/api/raw_booking.py): each request writes a new booking.
    for key, path in (
        ("raw_booking", "/bench/raw-booking/"),
        ("raw_booking_transport", "/bench/raw-booking-transport/"),
    ):
        if key in wanted:
            requests[key] = [("POST", path, b"{}")]
    if "bare" in wanted:  # the reads' ceiling (bench/api/urls.py), to read them against
        requests["bare"] = [("GET", "/bench/bare/", b"")]
    for key in ("day_list", "day_list_fresh"):
        if key in wanted:
            requests[key] = [("GET", p, b"") for p in workload.day_list_paths(described)]
    if "search" in wanted:
        requests["search"] = [("GET", p, b"") for p in workload.search_paths()]
    if "availability" in wanted:
        paths = workload.availability_paths(described)
        requests["availability"] = [("GET", p, b"") for p in paths]
    if "availability_transport" in wanted:
        paths = workload.availability_paths(described, transport=True)
        requests["availability_transport"] = [("GET", p, b"") for p in paths]
    for key, items in requests.items():
        try:
            measure(application, key, items, described.token, args)
        except TooSlow as exc:
            print(f"{key:<13} FAILED: {exc}", flush=True)
            connection.close()  # whatever the request was doing in it is abandoned
    connection.close()
    return 0


class TooSlow(BaseException):
    """Raised in a request that outlived --request-timeout (a BaseException, so that the
    request's own exception handling does not turn it into a 500 answer)."""


def _too_slow(signum, frame):
    raise TooSlow("one request took longer than the --request-timeout")


def measure(application, key: str, items: list, token: str, args) -> None:
    from django.db import connection, reset_queries

    def one(i: int) -> None:
        method, path, body = items[i % len(items)] if not key.startswith("create") else items[i]
        environ = wsgi_request(method, path, token, body, ENVIRON.get(key))
        previous = signal.signal(signal.SIGALRM, _too_slow)
        signal.setitimer(signal.ITIMER_REAL, args.request_timeout)
        try:
            status, answer = serve(application, environ)
        except TooSlow:
            raise TooSlow(f"{method} {path} took longer than {args.request_timeout:g} s") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if not status.startswith("2"):
            raise RuntimeError(f"{method} {path} {body[:200]!r} answered {status}: {answer[:300]}")

    for i in range(args.warmup):
        one(i)
    if args.queries:
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            one(args.warmup)
        print(f"--- {key}: {len(captured)} queries")
        for query in captured:
            print(f"  {query['time']}s {query['sql'][:400]}")
    start = args.warmup + 1
    pid = backend_pid()
    profiler = None
    if args.profile:
        import cProfile

        # CPU time, not wall time: on a shared machine the wall clock mostly measures
        # waiting for the cores (and the database's answers), which is not this code's cost.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    wall, cpu, db = time.perf_counter(), time.process_time(), backend_seconds(pid)
    try:
        for i in range(start, start + args.requests):
            one(i)
    finally:
        if profiler is not None:
            profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    db = backend_seconds(pid) - db
    if profiler is not None:
        import pstats

        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    if backend_pid() != pid:
        print(f"  ({key}: the database connection changed; its CPU is not counted)")
    reset_queries()
    n = args.requests
    print(
        f"{key:<13} {n} requests: python {cpu / n * 1000:6.2f} ms/req, "
        f"postgres {db / n * 1000:5.2f} ms/req, total {(cpu + db) / n * 1000:6.2f} ms/req "
        f"(wall {wall / n * 1000:.2f} ms/req)",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
