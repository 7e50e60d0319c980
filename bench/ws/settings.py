"""Production settings, as the realtime process runs them; the bench sets the environment
(database, Redis of its own, secret key, hosts) the way a deployment would."""

import os

from config.settings.production import *  # noqa: F403

# How long the hub waits for an out-of-order event before reading it from the database;
# an environment knob here so that the bench can compare values.
LIVE_STREAM = {
    **LIVE_STREAM,  # noqa: F405
    "REORDER_SECONDS": float(os.environ.get("STREAM_REORDER_MS", "20")) / 1000,
}

# `python -m bench.ws --idle-only --tracemalloc`: where an idle socket's memory goes. Each
# SIGUSR1 writes a tracemalloc snapshot to the file named (…-1, …-2, …).
if os.environ.get("BENCH_TRACEMALLOC"):
    import signal
    import tracemalloc

    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "12")))
    _snapshots = [0]

    def _dump(signum, frame) -> None:
        _snapshots[0] += 1
        path = f"{os.environ['BENCH_TRACEMALLOC']}-{_snapshots[0]}"
        tracemalloc.take_snapshot().dump(path)

    signal.signal(signal.SIGUSR1, _dump)
