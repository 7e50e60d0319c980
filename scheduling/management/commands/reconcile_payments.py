"""`manage.py reconcile_payments [--since WHEN]`: the reconcile sweep, by hand."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from scheduling.services.gateway_payments import reconcile


def _since(text: str) -> datetime:
    """An ISO date or datetime (business time zone when naive), or minutes ago ("90m")."""
    text = text.strip()
    if text.endswith("m") and text[:-1].isdigit():
        return timezone.now() - timedelta(minutes=int(text[:-1]))
    try:
        moment = parse_datetime(text)
        day = None if moment else parse_date(text)
    except ValueError:
        moment = day = None
    if day is not None:
        moment = datetime.combine(day, time.min)
    if moment is None:
        raise CommandError(f"--since {text!r}: give a date, a datetime or minutes (90m).")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = (
        "Ask the payment gateway about links still pending and settle them from its answer "
        "(by default those pending longer than PAYMENT_RECONCILE_MINUTES)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--since",
            help="every pending link made since then, whatever its age: 2026-12-01, "
            "2026-12-01T09:00 or 90m",
        )

    def handle(self, *args, **options) -> None:
        since = _since(options["since"]) if options.get("since") else None
        changes = reconcile(since=since)
        if not changes:
            self.stdout.write("Reconciled: nothing to change.")
            return
        for line in changes:
            self.stdout.write(line)
        self.stdout.write(f"Reconciled: {len(changes)} link(s).")
