from django.apps import AppConfig
from django.conf import settings


class SchedulingConfig(AppConfig):
    name = "scheduling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The Celery tasks, registered once for every process (web, worker, beat, commands):
        # the services enqueue them by name (background.py), so they never import the
        # module that imports them. The other two are imported for their signal receivers.
        from scheduling import tasks as celery_tasks  # noqa: F401
        from scheduling.observability import periodic, tasks  # noqa: F401
        from scheduling.realtime import revocation  # noqa: F401

        # The embedded default has no beat: its development server runs the schedule.
        if getattr(settings, "EMBEDDED_SWEEPS", False):
            from scheduling import embedded_sweeps

            if embedded_sweeps.is_serving_process():
                embedded_sweeps.start()
