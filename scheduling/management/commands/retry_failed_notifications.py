"""`manage.py retry_failed_notifications [--since WHEN]`: send failed notifications again."""

from __future__ import annotations

from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from scheduling.services.notifications.sweeps import retry_failed


def moment(text: str) -> datetime:
    """A date (its start) or a date and time; without an offset, in the business zone."""
    try:
        value = parse_datetime(text)
        if value is None:
            day = parse_date(text)
            value = datetime.combine(day, time()) if day else None
    except ValueError:
        value = None
    if value is None:
        raise CommandError(f"--since: '{text}' is not a date (2026-05-01) or a date and time.")
    return timezone.make_aware(value) if timezone.is_naive(value) else value


class Command(BaseCommand):
    help = (
        "Give failed notifications a fresh set of attempts and enqueue them "
        "(all of them, or those that failed since --since)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            metavar="WHEN",
            help="Only those that failed since this date or time (business time zone).",
        )

    def handle(self, *args, **options) -> None:
        since = moment(options["since"]) if options["since"] else None
        ids = retry_failed(since=since)
        if not ids:
            self.stdout.write("No failed notifications to retry.")
            return
        listed = ", ".join(f"#{pk}" for pk in ids)
        self.stdout.write(f"Retrying {len(ids)} failed notification(s): {listed}")
