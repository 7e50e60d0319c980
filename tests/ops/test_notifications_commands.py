"""`manage.py retry_failed_notifications [--since]`."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scheduling.models import Notification

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("retry_failed_notifications", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def failed(book, tomorrow_at):
    book(tomorrow_at(10))
    row = Notification.objects.get()
    Notification.objects.filter(pk=row.pk).update(
        status="failed", attempts=6, last_error="Twilio 400 (error 21211)"
    )
    return row


def test_nothing_to_retry(db):
    assert run() == "No failed notifications to retry.\n"


def test_retries_failed_notifications(failed):
    assert run() == f"Retrying 1 failed notification(s): #{failed.pk}\n"
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)
    assert failed.last_error == "Twilio 400 (error 21211)"  # kept until the next attempt


def test_since_takes_a_date_or_a_time(failed):
    Notification.objects.filter(pk=failed.pk).update(updated_at=timezone.now() - timedelta(days=2))
    today = timezone.localdate().isoformat()
    assert run("--since", today) == "No failed notifications to retry.\n"
    two_days_ago = (timezone.localtime() - timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    assert run("--since", two_days_ago).startswith("Retrying 1")


def test_since_must_be_a_date(db):
    with pytest.raises(CommandError, match="not a date"):
        run("--since", "yesterday")
    with pytest.raises(CommandError, match="not a date"):
        run("--since", "2026-13-45")
