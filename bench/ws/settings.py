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
