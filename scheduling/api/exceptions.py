"""The one place where errors become HTTP responses (API.md, "Errors")."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from scheduling.api.rows import failure
from scheduling.errors import (
    Conflict,
    DomainError,
    GatewayUnavailable,
    InvalidTransition,
    KeyReused,
    NotFound,
    NotPermitted,
    SeriesConflict,
    ValidationFailed,
    VisitConflict,
)


def handle(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        return _domain(exc)
    if isinstance(exc, Http404):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        return Response(validation_body(exc.detail), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        return Response(
            {"detail": str(exc.detail), "errors": {}}, status=status.HTTP_400_BAD_REQUEST
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.Throttled):
        # DRF sets Throttled.wait in __init__; djangorestframework-stubs does not declare it.
        wait: float | None = exc.wait  # type: ignore[attr-defined]
        if wait:
            response["Retry-After"] = str(int(wait) + 1)
    return response


def validation_body(detail) -> dict:
    errors = detail if isinstance(detail, dict) else {"non_field_errors": detail}
    return {"detail": _first_message(errors) or "Invalid input.", "errors": errors}


def _first_message(errors: dict) -> str | None:
    for field, messages in errors.items():
        if isinstance(messages, dict):
            nested = _first_message(messages)
            if nested:
                return f"{field}: {nested}"
        elif isinstance(messages, list) and messages:
            first = messages[0]
            if isinstance(first, dict):
                nested = _first_message(first)
                return f"{field}: {nested}" if nested else None
            return str(first) if field == "non_field_errors" else f"{field}: {first}"
    return None


def _domain(exc: DomainError) -> Response:
    if isinstance(exc, ValidationFailed):
        return Response({"detail": exc.message, "errors": exc.errors}, status=400)
    if isinstance(exc, Conflict):
        return Response(
            {
                "code": "conflict",
                "detail": exc.message,
                **({"reason": exc.reason} if exc.reason else {}),
                "conflicts": [_conflict(item) for item in exc.conflicts],
                **(
                    {"failures": [failure(f) for f in exc.failures]}
                    if isinstance(exc, SeriesConflict)
                    else {}
                ),
                # A visit's sessions that cannot be booked (services/visits.py).
                **(
                    {"failures": [f.as_json() for f in exc.failures]}
                    if isinstance(exc, VisitConflict)
                    else {}
                ),
            },
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, InvalidTransition):
        return Response(
            {"code": "invalid_transition", "detail": exc.message, "status": exc.current_status},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, NotPermitted):
        return Response({"detail": exc.message}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, NotFound):
        return Response({"detail": exc.message}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, GatewayUnavailable):
        # The gateway's failure, not ours: 502, and the request may be tried again.
        return Response(
            {"code": "gateway_unavailable", "detail": exc.message},
            status=status.HTTP_502_BAD_GATEWAY,
            headers={"Retry-After": "30"},
        )
    if isinstance(exc, KeyReused):
        return Response({"detail": exc.message}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    return Response({"detail": exc.message}, status=status.HTTP_400_BAD_REQUEST)


def _conflict(item) -> dict:
    body = {
        "appointment": item.appointment_id,
        "start": timezone.localtime(item.start).isoformat(),
        "end": timezone.localtime(item.end).isoformat(),
    }
    if item.trip_id is not None:
        body["trip"] = item.trip_id
    if item.leg is not None:
        body["leg"] = item.leg
    return body
