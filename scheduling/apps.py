from django.apps import AppConfig
from django.conf import settings


class SchedulingConfig(AppConfig):
    name = "scheduling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their signal receivers.
        from scheduling.observability import periodic, tasks  # noqa: F401
        from scheduling.realtime import revocation  # noqa: F401

        # The embedded default has no beat: its development server runs the schedule.
        if getattr(settings, "EMBEDDED_SWEEPS", False):
            from scheduling import embedded_sweeps

            if embedded_sweeps.is_serving_process():
                embedded_sweeps.start()
