"""`manage.py prune [--dry-run]`: the daily retention sweep, on demand."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from scheduling.services.retention import prune

WHAT = {
    "stream_events": "stream events older than {STREAM_DAYS} days",
    "idempotency_keys": "idempotency keys older than {IDEMPOTENCY_HOURS} hours",
    "dispatch_decisions": "dispatch decisions older than {AUDIT_DAYS} days",
    "therapist_choices": "assignment decisions older than {AUDIT_DAYS} days",
    "webhook_events": "raw gateway webhooks older than {AUDIT_DAYS} days",
    "sessions": "expired sessions",
    "notification_bodies": "message bodies of notifications older than {MESSAGE_DAYS} days",
}


class Command(BaseCommand):
    help = "Delete what is past its retention (RETENTION settings) in short batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be deleted."
        )
        parser.add_argument("--batch", type=int, default=None, help="Rows per transaction.")

    def handle(self, *args, **options) -> None:
        dry_run = options["dry_run"]
        counts = prune(dry_run=dry_run, batch=options["batch"])
        verbs = ("Would delete", "Would clear") if dry_run else ("Deleted", "Cleared")
        for kind, count in counts.items():
            what = WHAT[kind].format(**settings.RETENTION)
            action = verbs[1] if kind == "notification_bodies" else verbs[0]
            self.stdout.write(f"{action} {count} {what}")
