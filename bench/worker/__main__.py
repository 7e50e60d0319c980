"""`python -m bench.worker` (`make bench-worker`): dispatch and delivery by real workers.

1. Creates or reuses the PostgreSQL database `scheduling_bench_worker` (migrated; its
   scheduling tables are emptied first) and uses Redis database 15 for the broker, the
   fake provider's counts and the ceiling task (the product uses 0-2, the tests 10-11,
   bench-api 12-14). Notifications go to the fake provider: no failures, no latency.
2. Books the trips for the dispatch run while no worker is up, then starts the workers
   (`celery -A config worker`, prefork) and always stops them at the end.
3. Measures, each beside a ceiling taken in the same run:
   - the broker ceiling: no-op tasks through the same broker and workers, as a backlog
     (round trips per second) and at the fixed rate (publish -> start latency);
   - dispatch: one pass over a backlog of queued trips with as many drivers waiting
     (assignments per second), beside single-row UPDATE+COMMIT on one connection (the
     pass is one serial writer); then bookings with transport at a fixed rate, each
     trip from the booking's commit to its assignment;
   - delivery: a backlog of pending notifications (sent per second), then notifications
     written at a fixed rate, each from its transaction's commit to `sent_at`.
4. Prints the table with issue 17's targets (ratios to the no-op task rate) and writes it
   to var/bench-worker/.

Every phase has a deadline; the whole run takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/scheduling_bench_worker"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_DB = "15"
FAKE = "scheduling.notify.fake.FakeProvider"
# Targets of issue 4.


@dataclass
class Row:
    measure: str
    value: str
    ceiling: str
    ratio: str
    target: str
    verdict: str


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return at(0.50), at(0.95), at(0.99)


def ms(triple: tuple[float, float, float]) -> str:
    return " / ".join(f"{v * 1000:.1f}" for v in triple)


def configure_environment(args: argparse.Namespace) -> None:
    """Everything is read from the environment, by this process and by the workers."""
    db = str(args.redis_db)
    redis_base = urlunsplit(urlsplit(args.redis_url)._replace(path=f"/{db}"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.worker.settings",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": redis_base,
            "REDIS_BROKER_DB": db,
            "REDIS_CACHE_DB": db,
            "REDIS_CHANNELS_DB": db,
            "FAKE_PROVIDER_URL": redis_base,
            "NOTIFY_SMS_BACKEND": FAKE,
            "NOTIFY_WHATSAPP_BACKEND": FAKE,
            "NOTIFY_EMAIL_BACKEND": FAKE,
            # Every trip is due: the bench measures the pass, not the clock.
            "DISPATCH_HORIZON_MINUTES": str(60 * 24 * 400),
            "CONN_MAX_AGE": "600",
            "LOG_LEVEL": "WARNING",
        }
    )


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_data() -> None:
    from django.db import connection

    tables = [t for t in connection.introspection.django_table_names(only_existing=True)]
    tables = [t for t in tables if t.startswith("scheduling_") or t == "authtoken_token"]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


class Workers:
    def __init__(self, processes: int, concurrency: int, pool: str) -> None:
        self.processes = processes
        self.concurrency = concurrency
        self.pool = pool
        self.running: list[subprocess.Popen] = []

    def start(self) -> None:
        for n in range(self.processes):
            command = [
                sys.executable, "-m", "celery", "-A", "config", "worker",
                "-Q", "dispatch,notify,default", "-c", str(self.concurrency), "-P", self.pool,
                "-n", f"bench{n}-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-l", "warning",
            ]  # fmt: skip
            self.running.append(subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True))

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.running.clear()


# --- CPU accounting: what a task costs, whatever else the machine is doing ------------------

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, *, descendants: bool = True) -> float:
    """CPU seconds (user + system) of `pid`, and of its living descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / TICK
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    if not descendants:
        return total
    return total + sum(process_cpu(int(child)) for child in children)


def machine_busy() -> float:
    """CPU seconds spent on anything but idle and iowait, since boot, all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / TICK


def backend_pids() -> list[int]:
    """The PostgreSQL backends serving the bench database (workers and this process)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [row[0] for row in cursor.fetchall()]


class Meter:
    """Wall time, the CPU of the workers (all their processes), of the bench database's
    PostgreSQL backends and of this process, and the machine's CPU spent by the rest."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers

    def sample(self) -> dict[str, dict[int, float]]:
        return {
            "workers": {w.pid: process_cpu(w.pid) for w in self.workers.running},
            "postgres": {pid: process_cpu(pid) for pid in backend_pids()},
            # Not its descendants: the workers are its children.
            "bench": {os.getpid(): process_cpu(os.getpid(), descendants=False)},
        }

    def begin(self) -> Meter:
        self.started, self.busy, self.first = time.monotonic(), machine_busy(), self.sample()
        return self

    def end(self) -> Meter:
        self.wall = time.monotonic() - self.started
        last = self.sample()
        # Per process, so that a backend that ended meanwhile does not count negative.
        self.by_part = {
            part: sum(cpu - self.first[part].get(pid, 0.0) for pid, cpu in last[part].items())
            for part in last
        }
        self.used = sum(self.by_part.values())
        self.others = max(0.0, machine_busy() - self.busy - self.used)
        return self

    def per_item(self, items: int) -> dict[str, float]:
        """CPU milliseconds per item, by part and in all."""
        costs = {part: round(1000 * cpu / items, 2) for part, cpu in self.by_part.items()}
        return {**costs, "all": round(1000 * self.used / items, 2)}

    def others_share(self) -> float:
        return self.others / (self.wall * (os.cpu_count() or 1))


def wait_for(condition, *, timeout: float, what: str, every: float = 0.005) -> float:
    """Poll until `condition()` is truthy; the time.time() when it was seen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-worker: gave up after {timeout}s waiting for {what}")
        time.sleep(every)
    return time.time()


def paced(rate: float, seconds: float):
    """Yield at `rate` per second for `seconds`, on a fixed schedule (open loop)."""
    start = time.monotonic()
    total = int(rate * seconds)
    for n in range(total):
        due = start + n / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        yield n


# --- the ceiling -------------------------------------------------------------------------


def publish_noops(count: int) -> None:
    from bench.worker.tasks import counter, noop

    counter().delete("bench:noop")
    for _ in range(count):
        noop.delay(time.time())


def drain_noops(count: int, workers: Workers, meter: Meter) -> float:
    """Start the workers on a backlog of no-ops: tasks per second, first to last."""
    from bench.worker.tasks import counter

    client = counter()
    workers.start()
    wait_for(lambda: client.llen("bench:noop"), timeout=60, what="the workers to start")
    meter.begin()
    wait_for(lambda: client.llen("bench:noop") >= count, timeout=120, what="no-op backlog")
    meter.end()
    ran = sorted(float(line.split()[1]) for line in client.lrange("bench:noop", 0, -1))
    return (count - 1) / (ran[-1] - ran[0])


def noop_paced(rate: float, seconds: float) -> tuple[float, float, float]:
    from bench.worker.tasks import counter, noop

    client = counter()
    client.delete("bench:noop")
    for _ in paced(rate, seconds):
        noop.delay(time.time())
    total = int(rate * seconds)
    wait_for(lambda: client.llen("bench:noop") >= total, timeout=30, what="paced no-ops")
    samples = []
    for line in client.lrange("bench:noop", 0, -1):
        sent, ran = (float(v) for v in line.split())
        samples.append(ran - sent)
    return percentiles(samples)


def bare_update_rate(seconds: float = 3.0) -> float:
    from django.db import connection

    from scheduling.models import Trip

    ids = list(Trip.objects.values_list("pk", flat=True)[:100]) or [0]
    count = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "UPDATE scheduling_trip SET updated_at = now() WHERE id = %s", [ids[count % 100]]
            )
            count += 1
    return count / (time.monotonic() - started)


# --- data ----------------------------------------------------------------------------------


HOURS = ("08:00", "20:00")  # every bench therapist's and driver's weekly hours, each day
SESSION = timedelta(minutes=60)  # the bench service
BUFFER = timedelta(minutes=15)


def weekly_hours(users) -> None:
    """08:00-20:00 every day of the week: therapists for their busy ranges, drivers for
    the capacity the booking checks (it reads working time, not who is on shift)."""
    from scheduling.models import WorkingHours

    WorkingHours.objects.bulk_create(
        WorkingHours(staff=u, weekday=d, start=HOURS[0], end=HOURS[1])
        for u in users
        for d in range(7)
    )


def day_plan() -> tuple[timedelta, timedelta, int]:
    """The first start of a bench therapist's day, the step between starts and how many
    fit: each booking holds the therapist from `start - travel` to `end + buffer + travel`
    (the default travel, as a booking with no area gets), and all of it must lie inside
    08:00-20:00, back to back, on the slot step."""
    from scheduling.services.common import minutes
    from scheduling.services.travel import default_minutes

    travel = timedelta(minutes=default_minutes())
    step = minutes("SLOT_STEP_MINUTES")
    held = travel + SESSION + BUFFER + travel
    held = step * -(-held // step)  # rounded up to the slot step
    opens, closes = (timedelta(hours=int(h[:2]), minutes=int(h[3:])) for h in HOURS)
    first = opens + step * -(-travel // step)
    return first, held, int((closes - (first - travel)) // held)


def book_trips(appointments: int, *, start_day: int) -> list[int]:
    """Bookings with transport through the desk's service (two trips each, written as it
    writes them), all on one day, back to back on each therapist's day (the busy range,
    travel included, inside 08:00-20:00)."""
    from django.db import transaction
    from django.utils import timezone

    from scheduling.models import Client, Service, TherapistProfile, User
    from scheduling.services.appointments import create_appointment
    from scheduling.services.trips import create_trips_for

    desk, _ = User.objects.get_or_create(username="bench-desk", defaults={"role": "receptionist"})
    service, _ = Service.objects.get_or_create(
        name="Bench massage",
        defaults={
            "duration_minutes": SESSION // timedelta(minutes=1),
            "price": 1000,
            "buffer_minutes": BUFFER // timedelta(minutes=1),
        },
    )
    first, step, per_day = day_plan()  # 08:45, 2 h 45 min, 4 with 45 minutes' travel
    therapists = []
    for n in range((appointments + per_day - 1) // per_day):
        user = User.objects.create(
            username=f"bench-t{start_day}-{n}",
            role="therapist",
            phone=f"+6391{start_day:02d}{n:06d}",
        )
        TherapistProfile.objects.create(user=user).services.add(service)
        therapists.append(user)
    weekly_hours(therapists)
    client = Client.objects.create(name="Bench client", phone=f"+63917{start_day:07d}")
    day = timezone.localdate() + timedelta(days=start_day)
    midnight = timezone.make_aware(datetime.combine(day, datetime.min.time()))
    made = []
    for n in range(appointments):
        with transaction.atomic():
            # The booking service, all but the capacity check: with one driver for each
            # trip on the same hours they can all be carried, and asking (the drivers'
            # day read and solved for every booking) made this setup take minutes.
            appointment = create_appointment(
                actor=desk,
                client_id=client.pk,
                service_id=service.pk,
                therapist_id=therapists[n // per_day].pk,
                start=midnight + first + step * (n % per_day),
                needs_transport=False,
            )
            appointment.needs_transport = True
            appointment.save(update_fields=["needs_transport"])
            create_trips_for(appointment)
        made.append(appointment.pk)
    return made


def drivers(count: int, *, prefix: str, waiting: bool = True) -> None:
    """Drivers working 08:00-20:00 every day (written directly: setup, not measured);
    `waiting`: already on shift, in queue order, else off shift until `to_queue`."""
    from scheduling.models import DriverProfile, User

    users = User.objects.bulk_create(
        User(username=f"{prefix}{n}", role="driver", phone=f"+6392{n:08d}") for n in range(count)
    )
    DriverProfile.objects.bulk_create(
        DriverProfile(user=u, vehicle="car", seats=3, on_shift=False) for u in users
    )
    weekly_hours(users)
    if waiting:
        to_queue(prefix)


def to_queue(prefix: str) -> int:
    """Put the `prefix` drivers on shift, waiting in the order they were made (directly:
    setup; no dispatch pass is triggered)."""
    from django.utils import timezone

    from scheduling.models import DriverProfile

    profiles = list(
        DriverProfile.objects.filter(user__username__startswith=prefix).order_by("user_id")
    )
    since = timezone.now() - timedelta(hours=1)
    for n, profile in enumerate(profiles):
        profile.on_shift = True
        profile.available_since = since + timedelta(milliseconds=n)
    DriverProfile.objects.bulk_update(profiles, ["on_shift", "available_since"])
    return len(profiles)


# --- dispatch ------------------------------------------------------------------------------


def dispatch_backlog(trips: int) -> tuple[float | None, int, float]:
    """One pass over the backlog: (assignments a second, or None when no pass finished
    within the dispatch task's time limit; trips assigned; seconds waited). A pass is one
    transaction, so it assigns all or nothing."""
    from scheduling.background import DISPATCH, send
    from scheduling.models import Trip
    from scheduling.tasks import run_dispatch

    # Past the task's hard limit, when a pass that has not finished has been killed.
    limit = float(run_dispatch.time_limit or 60) + 15
    started = time.time()
    send(DISPATCH)
    try:
        done = wait_for(
            lambda: not Trip.objects.filter(status="queued").exists(),
            timeout=limit,
            what="the dispatch backlog",
            every=0.02,
        )
    except SystemExit:
        done = None
    assigned = Trip.objects.filter(status="assigned").count()
    if done is None:
        return None, assigned, time.time() - started
    if assigned != trips:
        raise SystemExit(f"bench-worker: {assigned} of {trips} trips assigned")
    return assigned / (done - started), assigned, done - started


def clear_backlog(prefix: str) -> None:
    """After a backlog no pass served: cancel its trips and take its drivers out of the
    queue (directly), so that the paced run's passes see only their own trips and drivers."""
    from scheduling.models import DriverProfile, Trip

    Trip.objects.filter(status="queued").update(status="cancelled")
    DriverProfile.objects.filter(user__username__startswith=prefix).update(
        on_shift=False, available_since=None
    )


def dispatch_paced(rate: float, seconds: float, *, start_day: int) -> tuple[float, float, float]:
    """Bookings with transport at `rate`/s (two trips each), drivers waiting; each trip
    from the booking's commit to the moment the pass wrote its assignment (updated_at)."""
    from django.db import transaction
    from django.utils import timezone

    from scheduling.models import Client, Service, TherapistProfile, Trip, User
    from scheduling.services.appointments import create_appointment

    desk = User.objects.get(username="bench-desk")
    service = Service.objects.get(name="Bench massage")
    total = int(rate * seconds)
    therapists = []
    for n in range(total):  # one each: every booking at the same hour (busy 09:15-12:00)
        user = User.objects.create(username=f"bench-p{n}", role="therapist")
        TherapistProfile.objects.create(user=user).services.add(service)
        therapists.append(user)
    weekly_hours(therapists)
    client = Client.objects.create(name="Bench client paced", phone="+639170000999")
    day = timezone.localdate() + timedelta(days=start_day)
    start = timezone.make_aware(datetime.combine(day, datetime.min.time())) + timedelta(hours=10)
    committed: dict[int, float] = {}
    for n in paced(rate, seconds):
        stamp: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
            appointment = create_appointment(
                actor=desk,
                client_id=client.pk,
                service_id=service.pk,
                therapist_id=therapists[n].pk,
                start=start,
                needs_transport=True,
            )
        committed[appointment.pk] = stamp[0]
    wait_for(
        lambda: not Trip.objects.filter(appointment_id__in=committed, status="queued").exists(),
        timeout=60,
        what="paced trips assigned",
    )
    samples = [
        updated.timestamp() - committed[appointment_id]
        for appointment_id, updated in Trip.objects.filter(
            appointment_id__in=committed
        ).values_list("appointment_id", "updated_at")
    ]
    return percentiles(samples)


# --- delivery ------------------------------------------------------------------------------


def pending_notifications(count: int, *, tag: str) -> list[int]:
    """Pending notification rows as the services write them (setup: written in bulk)."""
    from django.utils import timezone

    from scheduling.models import Client, Notification

    client = Client.objects.create(name=f"Bench {tag}", phone=f"+63918{abs(hash(tag)) % 10**7:07d}")
    now = timezone.now()
    rows = Notification.objects.bulk_create(
        Notification(
            key=f"bench:{tag}:{n}",
            kind="booking_created",
            channel="sms",
            audience="client",
            client=client,
            to=client.phone,
            subject="Booking received",
            body="Hi, we have your booking for Bench massage on Mon 1 Jun, 10:00.",
            send_after=now,
            enqueued_at=now,
        )
        for n in range(count)
    )
    return [row.pk for row in rows]


def publish_deliveries(count: int, per_task: int) -> list[int]:
    """The backlog's tasks, `per_task` ids each: 2 is what a booking's transaction enqueues
    (its client's and therapist's messages, `delivery.enqueue`), 1 one task per message
    (as before batches, and a retry)."""
    from scheduling.background import DELIVER, send

    ids = pending_notifications(count, tag="backlog")
    for start in range(0, len(ids), per_task):
        send(DELIVER, *ids[start : start + per_task])
    return ids


def drain_deliveries(ids: list[int], workers: Workers, meter: Meter) -> float:
    """Start the workers on a backlog of deliveries: sent per second, first to last."""
    from scheduling.models import Notification
    from scheduling.notify.fake import store

    provider = store()
    before = provider.delivered_count()
    workers.start()
    # The provider's count (one Redis call): polling must not load the database measured.
    wait_for(lambda: provider.delivered_count() > before, timeout=60, what="the workers")
    meter.begin()
    wait_for(
        lambda: provider.delivered_count() - before >= len(ids),
        timeout=120,
        what="the delivery backlog",
        every=0.05,
    )
    meter.end()
    mine = Notification.objects.filter(pk__gte=min(ids), pk__lte=max(ids))
    wait_for(
        lambda: not mine.filter(status__in=("pending", "sending")).exists(),
        timeout=10,
        what="the last outcomes recorded",
        every=0.05,
    )
    sent = sorted(mine.values_list("sent_at", flat=True))
    return (len(sent) - 1) / (sent[-1] - sent[0]).total_seconds()


def delivery_paced(rate: float, seconds: float) -> tuple[float, float, float]:
    """Each notification written in its own transaction, its delivery enqueued on commit
    (as every service does); from that commit to `sent_at`."""
    from django.db import transaction
    from django.utils import timezone

    from scheduling.models import Client, Notification
    from scheduling.services.notifications import delivery

    client = Client.objects.create(name="Bench paced", phone="+639180000777")
    committed: dict[int, float] = {}
    for n in paced(rate, seconds):
        stamp: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
            row = Notification.objects.create(
                key=f"bench:paced:{n}",
                kind="booking_created",
                channel="sms",
                audience="client",
                client=client,
                to=client.phone,
                subject="Booking received",
                body="Hi, we have your booking for Bench massage on Mon 1 Jun, 10:00.",
                enqueued_at=timezone.now(),
            )
            delivery.enqueue([row.pk])
        committed[row.pk] = stamp[0]
    wait_for(
        lambda: (
            not Notification.objects.filter(
                pk__in=list(committed), status__in=("pending", "sending")
            ).exists()
        ),
        timeout=60,
        what="paced notifications",
        every=0.25,
    )
    samples = [
        sent_at.timestamp() - committed[pk]
        for pk, sent_at in Notification.objects.filter(pk__in=committed).values_list(
            "pk", "sent_at"
        )
    ]
    return percentiles(samples)


# --- the run -------------------------------------------------------------------------------


# Issue 17: delivery and dispatch at least this share of the same run's no-op task rate;
# the absolute figures are reported, never targeted.
NOOP_SHARE = 0.5


def share_verdict(ratio: float) -> str:
    return "PASS" if ratio >= NOOP_SHARE else f"MISS ({ratio:.2f} < {NOOP_SHARE:g})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    parser.add_argument(
        "--redis-db",
        type=int,
        default=int(os.environ.get("BENCH_REDIS_DB", REDIS_DB)),
        help=f"Redis database for the broker and the fake provider (default {REDIS_DB}; "
        "it is flushed)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 2,
        help="pool size of each (default: the CPUs, as `celery worker` itself)",
    )
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--trips", type=int, default=600, help="dispatch backlog (even)")
    parser.add_argument("--notifications", type=int, default=3000, help="delivery backlog")
    parser.add_argument(
        "--delivery-batch",
        type=int,
        default=2,
        help="ids per delivery task in the backlog (default 2: a booking's two messages, "
        "as its transaction enqueues them; 1: one task per message, as before batches)",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="notifications/s, paced")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of paced runs")
    args = parser.parse_args()
    if "scheduling_bench_worker" not in urlsplit(args.database_url).path:
        raise SystemExit("bench-worker only ever uses a database named scheduling_bench_worker")

    configure_environment(args)
    sys.path.insert(0, str(BASE_DIR))
    ensure_database(args.database_url)
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from scheduling.notify.fake import store

    call_command("migrate", verbosity=0)
    reset_data()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    store().reset()

    print("bench-worker: booking the dispatch backlog (no worker up yet)...", flush=True)
    # Its drivers first, off shift: the booking checks that drivers working then can carry
    # every leg; they join the queue just before the pass.
    drivers(args.trips, prefix="bench-d", waiting=False)
    book_trips(args.trips // 2, start_day=3)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # their tasks: not measured
    load_before = os.getloadavg()
    workers = Workers(args.workers, args.concurrency, args.pool)
    try:
        print("bench-worker: measuring...", flush=True)
        results = run(args, workers)
    finally:
        workers.stop()
    report(args, results, load_before)


def run(args: argparse.Namespace, workers: Workers) -> dict:
    """Backlogs are published while no worker is up, then drained: the rate is what the
    workers do, not what this process publishes (its CPU would be theirs to share)."""
    results: dict = {}
    meter = Meter(workers)
    publish_noops(args.notifications)
    results["noop_backlog"] = drain_noops(args.notifications, workers, meter)
    results["noop_cpu"] = meter.per_item(args.notifications)
    results["noop_others"] = meter.others_share()
    results["noop_paced"] = noop_paced(args.rate, args.seconds)
    results["bare_update"] = bare_update_rate()

    to_queue("bench-d")
    meter.begin()
    rate, assigned, waited = dispatch_backlog(args.trips)
    meter.end()
    results["dispatch_backlog"], results["assigned"], results["dispatch_waited"] = (
        rate,
        assigned,
        waited,
    )
    results["dispatch_cpu"] = meter.per_item(assigned or args.trips)
    if rate is None:
        print(
            f"bench-worker: no dispatch pass over {args.trips} trips finished within the "
            f"task's time limit ({waited:.0f} s waited); going on without it",
            flush=True,
        )
        clear_backlog("bench-d")
    results["dispatch_others"] = meter.others_share()
    drivers(2 * int(args.rate / 10 * args.seconds), prefix="bench-e")
    results["dispatch_paced"] = dispatch_paced(args.rate / 10, args.seconds, start_day=5)

    workers.stop()
    ids = publish_deliveries(args.notifications, args.delivery_batch)
    results["delivery_backlog"] = drain_deliveries(ids, workers, meter)
    results["delivery_cpu"] = meter.per_item(args.notifications)
    results["delivery_others"] = meter.others_share()
    meter.begin()
    results["delivery_paced"] = delivery_paced(args.rate, args.seconds)
    meter.end()
    results["paced_others"] = meter.others_share()
    return results


def dispatch_row(args: argparse.Namespace, r: dict) -> Row:
    others = f"others' CPU {100 * r['dispatch_others']:.0f} %"
    if r["dispatch_backlog"] is None:
        return Row(
            f"dispatch: one pass over {args.trips} queued trips",
            f"FAILED: no pass finished within the dispatch task's time limit "
            f"({r['assigned']} assigned after {r['dispatch_waited']:.0f} s); "
            f"{r['dispatch_cpu']['all']:.2f} ms CPU per queued trip",
            "no-op task backlog",
            "",
            f">= {NOOP_SHARE:g} × no-op",
            f"MISS; {others}",
        )
    return Row(
        f"dispatch: one pass over {r['assigned']} queued trips",
        f"{r['dispatch_backlog']:.0f} assignments/s; {r['dispatch_cpu']['all']:.2f} ms CPU each",
        "no-op task backlog",
        f"{r['dispatch_backlog'] / r['noop_backlog']:.2f} "
        f"({r['dispatch_backlog'] / r['bare_update']:.2f} × bare UPDATE+COMMIT)",
        f">= {NOOP_SHARE:g} × no-op",
        f"{share_verdict(r['dispatch_backlog'] / r['noop_backlog'])}; {others}",
    )


def report(args: argparse.Namespace, r: dict, load_before: tuple[float, ...]) -> None:
    booking_rate = args.rate / 10
    rows = [
        Row(
            "ceiling: no-op task, backlog",
            f"{r['noop_backlog']:.0f} tasks/s; {r['noop_cpu']['all']:.2f} ms CPU each",
            "",
            "",
            "",
            f"others' CPU {100 * r['noop_others']:.0f} %",
        ),
        Row(
            f"ceiling: no-op task at {args.rate:.0f}/s, publish -> start, ms",
            f"p50/95/99 {ms(r['noop_paced'])}",
            "",
            "",
            "",
            "",
        ),
        Row(
            "ceiling: bare UPDATE+COMMIT, one connection",
            f"{r['bare_update']:.0f}/s",
            "",
            "",
            "",
            "",
        ),
        dispatch_row(args, r),
        Row(
            f"dispatch: booking commit -> trip assigned, {booking_rate:.0f} bookings/s, ms",
            f"p50/95/99 {ms(r['dispatch_paced'])}",
            "no-op at the same rate",
            f"{r['dispatch_paced'][1] / r['noop_paced'][1]:.1f} (p95)",
            "",
            "",
        ),
        Row(
            f"delivery: {args.notifications} pending, {args.delivery_batch} per task, "
            "fake provider",
            f"{r['delivery_backlog']:.0f} sent/s; {r['delivery_cpu']['all']:.2f} ms CPU each",
            "no-op task backlog",
            f"{r['delivery_backlog'] / r['noop_backlog']:.2f}",
            f">= {NOOP_SHARE:g} × no-op",
            f"{share_verdict(r['delivery_backlog'] / r['noop_backlog'])}; "
            f"others' CPU {100 * r['delivery_others']:.0f} %",
        ),
        Row(
            f"delivery: commit -> sent at {args.rate:.0f}/s, ms",
            f"p50/95/99 {ms(r['delivery_paced'])}",
            "no-op at the same rate",
            f"{r['delivery_paced'][1] / r['noop_paced'][1]:.1f} (p95)",
            "",
            f"others' CPU {100 * r['paced_others']:.0f} %",
        ),
    ]
    load_after = os.getloadavg()
    header = (
        f"bench-worker {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} CPUs, "
        f"{args.workers} worker process(es) x {args.concurrency} ({args.pool}); load average "
        f"before {' '.join(f'{v:.2f}' for v in load_before)}, "
        f"after {' '.join(f'{v:.2f}' for v in load_after)}"
    )
    lines = [
        header,
        "",
        "| measure | result | ceiling | ratio | target | result, machine |",
        "|---|---|---|---|---|---|",
        *(
            f"| {x.measure} | {x.value} | {x.ceiling} | {x.ratio} | {x.target} | {x.verdict} |"
            for x in rows
        ),
        "",
        "CPU each: the workers' processes and the bench database's PostgreSQL backends, per "
        "item. Others' CPU: the machine's CPU spent by other processes during the phase.",
    ]
    print("\n".join(lines))
    for line in result_lines(r):
        print(line)
    out = BASE_DIR / "var" / "bench-worker"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {"header": header, "args": vars(args), "rows": [asdict(x) for x in rows], "raw": r},
            indent=2,
            default=str,
        )
    )


def result_lines(r: dict) -> list[str]:
    """Issue 17's worker targets: delivery and dispatch at least half the no-op task rate."""
    from bench.api.ratios import result_line

    lines = []
    for name, key in (("delivery", "delivery_backlog"), ("dispatch", "dispatch_backlog")):
        rate = r.get(key)
        if rate is not None and r.get("noop_backlog"):
            lines.append(result_line(name, rate / r["noop_backlog"], 0.5, at_most=False))
    return lines


if __name__ == "__main__":
    main()
