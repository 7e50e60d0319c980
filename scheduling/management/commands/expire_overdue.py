"""`manage.py expire_overdue`: the deadline sweep beat runs, on demand."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from scheduling.services.appointments import expire_overdue


class Command(BaseCommand):
    help = "Mark pending appointments whose response deadline has passed as expired."

    def handle(self, *args, **options) -> None:
        expired = expire_overdue()
        if not expired:
            self.stdout.write("No overdue appointments: expired 0.")
            return
        ids = ", ".join(f"#{pk}" for pk in expired)
        self.stdout.write(f"Expired {len(expired)} appointment(s): {ids}")
