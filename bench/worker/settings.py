"""Base settings, configured by the environment the bench command sets (database, Redis,
fake provider), plus the bench's own no-op task for the broker ceiling."""

from config.settings.base import *  # noqa: F403
from config.settings.base import LOGGING

# The worker logs each task at INFO; at these rates that is the log, not the work.
LOGGING = {**LOGGING, "root": {**LOGGING["root"], "level": "WARNING"}}
CELERY_IMPORTS = ["bench.worker.tasks"]
