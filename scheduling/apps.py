from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from scheduling import revocation  # noqa: F401  (connects its signal receivers)
        from scheduling.observability import periodic  # noqa: F401  (the same)
