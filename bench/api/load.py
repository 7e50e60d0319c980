"""A small HTTP load generator for 127.0.0.1: open loop at a fixed rate, or closed loop.

Open loop is what "at half of saturation" means: requests are due at fixed times
(t0 + i / rate) whether or not earlier ones have been answered, and each latency is
measured from when its request was *due*, not from when a free thread got round to
sending it. A server that falls behind therefore shows its queueing in the percentiles
instead of silently slowing the generator down (coordinated omission).

Requests are pre-built HTTP/1.1 bytes. Connections are kept alive when the server allows
it; gunicorn's sync workers answer `Connection: close`, so with them every request pays a
loopback TCP connect, as it would from a proxy that does not pool upstream connections.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import resource
import socket
import threading
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

HOST = "127.0.0.1"


def get(path: str, port: int, headers: dict[str, str] | None = None) -> bytes:
    return _request("GET", path, port, headers or {}, b"")


def post(path: str, port: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    return _request(
        "POST", path, port, {"Content-Type": "application/json", **(headers or {})}, body
    )


def _request(method: str, path: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, bool, bytes]:
    """(status, keep-alive?, body) of one HTTP/1.1 response."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
    head, body = buf[:end].decode("latin-1"), buf[end + 4 :]
    status = int(head[9:12])
    length, keep = None, True
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    if length is None:  # no length: the body runs to the end of the connection
        while chunk := sock.recv(65536):
            body += chunk
        return status, False, body
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        body += chunk
    return status, keep, body


def fetch(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        status, _, body = read_response(sock)
    return status, body


@dataclass
class Result:
    mode: str
    target_rate: float | None
    concurrency: int
    duration: float  # from the first due time to the last answer
    latencies: array = field(repr=False)  # seconds, every answered request
    statuses: Counter
    cpu_seconds: float  # the generator's own CPU time

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def throughput(self) -> float:
        """Successful answers per second."""
        return self.ok / self.duration if self.duration > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency in milliseconds at percentile `p` (nearest rank)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1] * 1000

    @property
    def generator_cpu_share(self) -> float:
        """The generator's CPU time per second of wall time (1.0 = one core)."""
        return self.cpu_seconds / self.duration if self.duration > 0 else 0.0


def open_loop(
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    threads: int = 32,
    processes: int | None = None,
) -> Result:
    """Send requests[i % len] due at t0 + i / rate for `duration` seconds."""
    processes = processes or (2 if rate > 800 else 1)
    return _run("open", port, requests, rate, duration, threads, processes)


def closed_loop(
    port: int, requests: Sequence[bytes], *, concurrency: int, duration: float
) -> Result:
    """`concurrency` clients each sending the next request as soon as the last is answered
    (the fallback saturation measure when wrk is not installed)."""
    processes = 2 if concurrency >= 8 else 1
    per_process = max(1, concurrency // processes)
    return _run("closed", port, requests, None, duration, per_process, processes)


def _run(
    mode: str,
    port: int,
    requests: Sequence[bytes],
    rate: float | None,
    duration: float,
    threads: int,
    processes: int,
) -> Result:
    t0 = time.monotonic() + 0.2  # CLOCK_MONOTONIC is shared by every process on the host
    context = multiprocessing.get_context("fork")
    pipes, children = [], []
    for index in range(processes):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(writer, mode, port, requests, rate, duration, threads, processes, index, t0),
            daemon=True,
        )
        child.start()
        writer.close()
        pipes.append(reader)
        children.append(child)
    latencies, statuses, cpu, last = array("d"), Counter(), 0.0, t0
    for reader, child in zip(pipes, children, strict=True):
        part = reader.recv()
        child.join()
        latencies.frombytes(part["latencies"])
        statuses.update(part["statuses"])
        cpu += part["cpu"]
        last = max(last, part["last"])
    return Result(
        mode=mode,
        target_rate=rate,
        concurrency=threads * processes,
        duration=last - t0,
        latencies=latencies,
        statuses=statuses,
        cpu_seconds=cpu,
    )


def _child(writer, mode, port, requests, rate, duration, threads, processes, index, t0) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    latencies, codes = array("d"), array("H")
    counter = itertools.count()
    stop_at = t0 + duration
    last = [t0]
    lock = threading.Lock()
    interval = processes / rate if rate else 0.0

    def worker(thread_index: int) -> None:
        sock = None
        local_lat, local_codes = array("d"), array("H")
        last_done = t0
        try:
            while True:
                k = next(counter)  # atomic under the GIL
                global_index = k * processes + index
                if mode == "open":
                    due = t0 + (index / rate) + k * interval
                    if due >= stop_at:
                        break
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                else:
                    due = time.monotonic()
                    if due < t0:
                        time.sleep(t0 - due)
                        due = time.monotonic()
                    if due >= stop_at:
                        break
                request = requests[global_index % len(requests)]
                try:
                    if sock is None:
                        sock = socket.create_connection((HOST, port), timeout=30)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.sendall(request)
                    status, keep, _ = read_response(sock)
                except OSError:
                    status, keep = 0, False
                done = last_done = time.monotonic()
                local_lat.append(done - due)
                local_codes.append(status)
                if not keep and sock is not None:
                    sock.close()
                    sock = None
        finally:
            if sock is not None:
                sock.close()
            with lock:
                latencies.extend(local_lat)
                codes.extend(local_codes)
                last[0] = max(last[0], last_done)

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    writer.send(
        {
            "latencies": latencies.tobytes(),
            "statuses": Counter(codes.tolist()),
            "cpu": usage.ru_utime + usage.ru_stime - cpu_before,
            "last": last[0],
        }
    )
    writer.close()
    os._exit(0)
