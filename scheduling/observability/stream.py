"""The live stream's metrics, kept by each realtime process in memory (or in its own
multi-process files): open sockets, frames and events sent, and the stream lag.

Called from the hot path (every frame), so nothing here touches the database or the
network: a counter increment, or a gauge set, is a few dictionary and memory writes.

Stream lag, per realtime process: the committed head of the stream (EventCounter's
`last_seq`, read by the process hub every WATCH_SECONDS, as it starts its look for a
lost tail, before it touches the channel layer) minus the last seq up to which the hub
has handed every event to its sockets (`Hub.upto`), measured at that same moment. 0
while the process has no socket (it owes nobody anything) and before the first live
event after it subscribed (its sockets read the database on connect). Events still in
flight from their commit to this process count (milliseconds under normal load); while
the channel layer is down, the lag grows with every commit and falls back to 0 once the
hub has made good from the database.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from prometheus_client import Counter, multiprocess

from scheduling.observability.metrics import (
    WS_CONNECTIONS,
    WS_EVENTS,
    WS_FRAMES,
    stream_lag,
)

_pid: int | None = None
_pid_label = ""


def _this_process() -> str:
    """The `pid` label; the first call in a process also arranges for its live gauges
    to leave the multi-process directory when it exits (a dead daphne's open sockets
    would otherwise be counted for ever). Called for every frame sent: the label is
    written once a process."""
    global _pid, _pid_label
    pid = os.getpid()
    if _pid != pid:
        _pid, _pid_label = pid, str(pid)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            atexit.register(_forget_live_gauges)
    return _pid_label


def _forget_live_gauges() -> None:
    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def socket_opened(*, desk: bool) -> None:
    _this_process()
    WS_CONNECTIONS.labels("desk" if desk else "personal").inc()


def socket_closed(*, desk: bool) -> None:
    WS_CONNECTIONS.labels("desk" if desk else "personal").dec()


_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Counter, *labels: str) -> Any:
    """metric.labels(*labels), looked up once (labels() takes a lock and builds keys)."""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def events_sent(count: int) -> None:
    """One frame of `count` events went to a socket."""
    pid = _this_process()
    _child(WS_FRAMES, pid, "events").inc()
    _child(WS_EVENTS, pid).inc(count)


def ping_sent() -> None:
    _child(WS_FRAMES, _this_process(), "ping").inc()


def lag(*, head: int, handed: int | None) -> None:
    """Record the lag measured by the hub (`handed` None: nothing live has arrived yet,
    or the process has no socket)."""
    stream_lag().set(0 if handed is None else max(0, head - handed))
