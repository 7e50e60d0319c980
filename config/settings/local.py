"""Development on a laptop: the embedded default unless DATABASE_URL/REDIS_URL are set."""

from config.settings.base import *  # noqa: F403

DEBUG = True
