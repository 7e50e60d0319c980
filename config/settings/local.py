"""Development on a laptop: the embedded default unless DATABASE_URL/REDIS_URL are set."""

from config.settings.base import *  # noqa: F403

DEBUG = True

# No Redis, so no Celery worker or beat: `runserver` runs the beat schedule's sweeps in a
# thread of its own (scheduling/embedded_sweeps.py). The full stack has beat for that.
EMBEDDED_SWEEPS = CELERY_TASK_ALWAYS_EAGER  # noqa: F405
