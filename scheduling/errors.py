"""Domain errors raised by services. The API, pages, tasks and commands translate them;
none of them is an HTTP error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class DomainError(Exception):
    """Base class: `message` is written for the person at the desk."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(DomainError):
    """Input that can never succeed as given; `errors` maps field names to messages."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}

    @classmethod
    def on(cls, field: str, message: str) -> ValidationFailed:
        return cls(message, {field: [message]})


@dataclass(frozen=True)
class ConflictingItem:
    """Something already occupying the time asked for."""

    start: datetime
    end: datetime
    appointment_id: int | None = None
    trip_id: int | None = None
    # For a leg no driver can carry: "dropoff" or "pickup".
    leg: str | None = None


class Conflict(DomainError):
    """The time is taken (therapist or driver busy) or outside working time.

    `reason` tells the kinds apart for the desk: "therapist_busy", "not_working",
    "no_driver", "driver_busy", or "" where none applies."""

    def __init__(
        self, message: str, conflicts: list[ConflictingItem] | None = None, *, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.conflicts = conflicts or []
        self.reason = reason


class InvalidTransition(DomainError):
    """The action is not allowed from the object's current status."""

    def __init__(self, message: str, current_status: str) -> None:
        super().__init__(message)
        self.current_status = current_status


class NotPermitted(DomainError):
    """The actor's role (or relation to the object) does not allow the action."""


class NotFound(DomainError):
    """No such object (or none the actor may see: the two are not told apart)."""


class KeyReused(DomainError):
    """An Idempotency-Key came back with a different request."""


@dataclass(frozen=True)
class OccurrenceFailure:
    """One occurrence of a series (or one of several appointments acted on at once) that
    cannot be booked or moved: its start, the Conflict's reason (or "invalid"), the words."""

    start: datetime
    reason: str
    message: str
    appointment_id: int | None = None


class SeriesConflict(Conflict):
    """Some occurrences cannot be booked or moved; `failures` names each with its start and
    why, and nothing was written."""

    def __init__(self, failures: list[OccurrenceFailure], *, verb: str = "booked") -> None:
        super().__init__(
            f"{len(failures)} of the repeated dates cannot be {verb}.", reason="series_conflict"
        )
        self.failures = failures


class GatewayUnavailable(DomainError):
    """A payment gateway refused, failed or did not answer: nothing was written."""


@dataclass(frozen=True)
class SessionFailure:
    """One session of a visit that cannot be booked: its place in the request (from 0),
    its service and therapist (None: none could be chosen), the Conflict's reason, the
    words."""

    session: int
    service: int
    therapist: int | None
    reason: str
    message: str

    def as_json(self) -> dict[str, object]:
        return {
            "session": self.session,
            "service": self.service,
            "therapist": self.therapist,
            "reason": self.reason,
            "detail": self.message,
        }


class VisitConflict(Conflict):
    """Some sessions of a visit cannot be booked; `failures` names each with its reason,
    and nothing was written."""

    def __init__(self, failures: list[SessionFailure], *, sessions: int) -> None:
        failing = len({f.session for f in failures})
        super().__init__(
            f"{failing} of the visit's {sessions} sessions cannot be booked.",
            reason="visit_conflict",
        )
        self.failures = failures
