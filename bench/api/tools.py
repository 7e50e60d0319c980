"""wrk (the saturation load) and gunicorn (the server under test), started and always stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from bench.api import load

LUA = Path(__file__).resolve().parent / "lua"


def ensure_database(url: str) -> bool:
    """Create the bench database if it is missing; True when it was created."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
    return True


# --- wrk ------------------------------------------------------------------------------------


def ensure_wrk(log) -> str | None:
    """wrk from Debian's package, installed on first use when running as root with apt."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_INSTALL"):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    log("wrk: not installed; installing Debian's package (apt-get install wrk)")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            log(f"wrk: {' '.join(command)} failed: {done.stderr.strip()[-300:]}")
            return None
    return shutil.which("wrk")


@dataclass
class WrkResult:
    connections: int
    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    status_errors: int
    wrapped: int
    p50: float  # milliseconds
    p95: float
    p99: float
    # post.lua with distinct bodies: the most bodies any one thread took from its share.
    used: int = 0

    @property
    def throughput(self) -> float:
        """Successful answers per second."""
        return (self.requests - self.status_errors) / self.seconds if self.seconds else 0.0


def run_wrk(
    wrk: str, port: int, script: str, args: list[str], *, connections: int, seconds: float
) -> WrkResult:
    threads = min(2, connections)
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
        f"http://{load.HOST}:{port}/",
        "--",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return WrkResult(
        connections=connections,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=socket_errors + data["status"],
        status_errors=data["status"],
        wrapped=data["wrapped"],
        p50=data["p50_us"] / 1000,
        p95=data["p95_us"] / 1000,
        p99=data["p99_us"] / 1000,
        used=data.get("used", 0),
    )


# --- gunicorn -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((load.HOST, 0))
        return sock.getsockname()[1]


class Gunicorn:
    """gunicorn serving the bench settings on a free loopback port; `stop()` always ends
    the server it started (by its process id, then its own process group if need be)."""

    def __init__(
        self,
        *,
        gunicorn: str,
        workers: int,
        env: dict[str, str],
        log_path: Path,
        worker_class: str = "sync",
        threads: int = 1,
    ):
        self.gunicorn, self.workers, self.env, self.log_path = gunicorn, workers, env, log_path
        self.worker_class, self.threads = worker_class, threads
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                self.gunicorn,
                "config.wsgi:application",
                "--bind",
                f"{load.HOST}:{self.port}",
                "--workers",
                str(self.workers),
                "--worker-class",
                self.worker_class,
                "--threads",
                str(self.threads),
                "--backlog",
                "2048",
                "--timeout",
                "60",
                "--log-level",
                "warning",
            ],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited ({self.process.returncode}); see {self.log_path}"
                )
            try:
                status, _ = load.fetch(self.port, load.get("/bench/bare/", self.port), timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only what it started
            process.wait(timeout=10)

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- who else is using the machine ----------------------------------------------------------


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def _process_jiffies(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends connected to the bench database (gunicorn's workers)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


class CpuMeter:
    """CPU used on the whole machine during a phase, split into the bench's own processes
    (this one and its children, gunicorn and its workers, the PostgreSQL backends serving
    the bench database) and everything else (other people's test runs, say)."""

    def __init__(self, server_pid: int, backend_pids: list[int]):
        self.server_pid, self.backend_pids = server_pid, backend_pids
        self.tick = os.sysconf("SC_CLK_TCK")

    def server_seconds(self) -> float:
        """CPU seconds used so far by gunicorn (master and workers) and its backends."""
        pids = [self.server_pid, *_children(self.server_pid), *self.backend_pids]
        return sum(_process_jiffies(p) for p in pids) / self.tick

    def _ours(self) -> float:
        me = os.times()  # this process and its reaped children (wrk, the load generator)
        return self.server_seconds() + me.user + me.system + me.children_user + me.children_system

    def start(self) -> None:
        self.t0, self.busy0, self.ours0 = time.monotonic(), _busy_jiffies(), self._ours()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        busy = (_busy_jiffies() - self.busy0) / self.tick
        ours = self._ours() - self.ours0
        cores = os.cpu_count() or 1
        return {
            "seconds": round(wall, 1),
            "machine_busy": round(busy / (wall * cores), 3),
            "bench": round(ours / (wall * cores), 3),
            "others": round(max(0.0, busy - ours) / (wall * cores), 3),
        }


def others_now(seconds: float = 3.0) -> float:
    """Share of the machine's CPU busy over `seconds` while the bench itself is idle."""
    busy0, t0 = _busy_jiffies(), time.monotonic()
    time.sleep(seconds)
    busy = (_busy_jiffies() - busy0) / os.sysconf("SC_CLK_TCK")
    return busy / ((time.monotonic() - t0) * (os.cpu_count() or 1))
