"""Small pieces the services share."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from scheduling import states
from scheduling.errors import ValidationFailed
from scheduling.models import User


def setting(name: str) -> int | str:
    value: int | str = settings.SCHEDULING[name]
    return value


def minutes(name: str) -> timedelta:
    return timedelta(minutes=int(setting(name)))


def role_of(actor: User | None) -> str:
    """The actor's role for the state machines; None is the platform itself."""
    return states.SYSTEM if actor is None else actor.effective_role


def require_aware(value: datetime, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationFailed.on(field, "Give a date and time.")
    if timezone.is_naive(value):
        raise ValidationFailed.on(field, "Give the time with its UTC offset, e.g. +08:00.")
    return value


def violates(exc: Exception, constraint: str) -> bool:
    """True when a database error is the named constraint refusing a row.

    PostgreSQL reports the constraint by name (exclusion violations are SQLSTATE 23P01);
    the service turns that into the same Conflict its friendly pre-check would raise.
    """
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    return getattr(diag, "constraint_name", None) == constraint


def latest_bookable(now: datetime) -> datetime:
    """Bookings further ahead than the horizon are refused (and never offered)."""
    return now + timedelta(days=int(setting("BOOKING_HORIZON_DAYS")))


# Advisory lock namespaces: one timetable per (kind, staff id).
THERAPIST_TIMETABLE = 1
DRIVER_TIMETABLE = 2


def lock_timetable(namespace: int, staff_id: int) -> None:
    """Serialise writers of one person's timetable until the transaction ends.

    Without it, two bookings waiting on a third that then rolls back each find the
    other's uncommitted row in the exclusion check and deadlock (PostgreSQL kills one
    with an error that is not a conflict). Queued behind this lock, each writer's
    pre-check sees the committed winner instead. The exclusion constraint stays the
    guarantee for any writer that skips this path. SQLite needs nothing: IMMEDIATE
    transactions already serialise every writer.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, staff_id])
