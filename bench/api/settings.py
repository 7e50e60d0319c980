"""Production settings plus the bench-only URLconf (the ceiling views live beside the API).

Everything else (DEBUG off, database, Redis, rate limits) comes from the environment the
bench command sets, exactly as production reads it.
"""

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.api.urls"
