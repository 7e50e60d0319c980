"""Celery application. Broker and behaviour come from Django settings (CELERY_*).

Tasks are discovered in scheduling/tasks.py; queues, routes, time limits and the beat
schedule are in config/settings/base.py (the CELERY_ block).
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("scheduling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_postrun.connect
def close_old_connections(sender=None, **kwargs) -> None:
    """After each task, Django's rule for a request: keep the database connection up to
    CONN_MAX_AGE, drop one that is broken or obsolete (with CONN_HEALTH_CHECKS, the next
    task's first query checks it, however long the worker was idle).

    Celery's Django fixup would otherwise close every connection before and after every
    task, and reconnecting costs more than most of these tasks (CELERY_DB_REUSE_MAX
    makes it do so only every thousand). Not for a task run in-process (eager): that one
    runs inside the caller's request or transaction, which owns the connection.
    """
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections as close

    close()
