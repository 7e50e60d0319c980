"""Couples and group visits over the API (issue 14 item 1): book, read, cancel.

Thin, as the other viewsets: an input serializer, one service call (services/visits.py),
the visit rendered with its sessions (each as the appointment shape) and its shared trips.
Booking and cancelling are the desk's; a therapist reads a visit they have a session in,
a driver one whose trip they hold (`Visit.objects.visible_to`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from scheduling import states
from scheduling.api import fields as strict
from scheduling.api import serializers as s
from scheduling.api.actor import request_actor
from scheduling.api.rows import TRIP_ORDER
from scheduling.api.schema import ERRORS
from scheduling.api.views import ById, limited, valid
from scheduling.models import Appointment, Trip, Visit
from scheduling.permissions import role
from scheduling.realtime.events import shaped_for
from scheduling.services.visits import (
    MAX_SESSIONS,
    MIN_SESSIONS,
    SessionAsk,
    book_visit,
    cancel_visit,
)

# --- input ----------------------------------------------------------------------------------


class SessionInput(strict.InputSerializer):
    service = s.ident()
    therapist = s.ident(
        required=False,
        allow_null=True,
        help_text="Omitted or null: the best free therapist by the fairness rule (never "
        "one the visit already has).",
    )


class VisitInput(strict.InputSerializer):
    client = s.ident()
    start = s.AwareDateTimeField()
    address = s.text(required=False, default="")
    notes = s.text(required=False, default="")
    needs_transport = strict.BooleanField(
        help_text="One drop-off and one pick-up carrying every therapist (a car with the seats)."
    )
    area = s.ident(
        required=False,
        allow_null=True,
        help_text="A service area for this visit; else the client's, else the default.",
    )
    sessions = serializers.ListField(
        child=SessionInput(),
        min_length=MIN_SESSIONS,
        max_length=MAX_SESSIONS,
        help_text=f"{MIN_SESSIONS} to {MAX_SESSIONS} sessions, each with its own therapist.",
    )


class VisitCancelInput(strict.InputSerializer):
    reason = s.text(required=False, default="")


def _valid_visit(data: Any) -> dict[str, Any]:
    """VisitInput's data; its errors flat, one field name a list of messages, a session's
    named as the service names them: "sessions[1].therapist"."""
    serializer = VisitInput(data=data)
    if not serializer.is_valid():
        raise DRFValidationError(dict(_flat(serializer.errors)))
    validated: dict[str, Any] = serializer.validated_data
    return validated


def _flat(errors: Any, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    items: Iterable[tuple[Any, Any]]
    if isinstance(errors, dict):
        items = errors.items()
    elif isinstance(errors, list) and errors and all(isinstance(e, dict) for e in errors):
        items = enumerate(errors)
    else:
        yield prefix, [str(e) for e in (errors if isinstance(errors, list) else [errors])]
        return
    for key, value in items:
        index = isinstance(key, int) or (isinstance(key, str) and key.isdigit())
        name = f"{prefix}[{key}]" if index else (f"{prefix}.{key}" if prefix else str(key))
        if value:
            yield from _flat(value, name)


# --- output ---------------------------------------------------------------------------------


class VisitSerializer(serializers.ModelSerializer):
    appointments = serializers.SerializerMethodField(
        help_text="The sessions, each in the appointment shape, in booking order."
    )
    trips = serializers.SerializerMethodField(
        help_text="The shared drop-off and pick-up (empty without transport)."
    )

    class Meta:
        model = Visit
        fields = [
            "id",
            "client",
            "start",
            "address",
            "notes",
            "needs_transport",
            "area",
            "travel_minutes",
            "appointments",
            "trips",
        ]

    @extend_schema_field(s.AppointmentSerializer(many=True))
    def get_appointments(self, visit: Visit) -> list[dict[str, Any]]:
        return [s.AppointmentSerializer(a, context=self.context).data for a in visit.sessions.all()]

    @extend_schema_field(s.TripSerializer(many=True))
    def get_trips(self, visit: Visit) -> list[dict[str, Any]]:
        user = self._user()
        trips = list(visit.trips.all())
        if user is not None and role(user) == states.DRIVER:
            # The other leg may be another driver's: not theirs to see.
            trips = [t for t in trips if t.driver_id == user.pk]
        return [s.TripSerializer(t).data for t in trips]

    def to_representation(self, instance: Visit) -> dict[str, Any]:
        data = super().to_representation(instance)
        user = self._user()
        if user is None:
            return data
        shaped: dict[str, Any] = shaped_for(user, {k: v for k, v in data.items() if k != "trips"})
        shaped["trips"] = data["trips"]
        return shaped

    def _user(self) -> Any:
        request = self.context.get("request")
        return request.user if request is not None else None


# --- the viewset ----------------------------------------------------------------------------


class VisitPermission(BasePermission):
    """Reading: the desk, therapists and drivers (each sees what `visible_to` gives
    them); booking and cancelling: the desk only, refused before any lookup."""

    message = "Only receptionists and managers may book or cancel visits."

    def has_permission(self, request: Any, view: Any) -> bool:
        who = role(request.user)
        if view.action == "retrieve":
            return who in states.DESK | {states.THERAPIST, states.DRIVER}
        return who in states.DESK


class VisitViewSet(mixins.RetrieveModelMixin, ById):
    permission_classes = [VisitPermission]
    serializer_class = VisitSerializer

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Visit.objects.none()
        return Visit.objects.visible_to(request_actor(self.request)).prefetch_related(
            Prefetch(
                "sessions",
                queryset=Appointment.objects.order_by("id").prefetch_related(
                    Prefetch("trips", queryset=Trip.objects.order_by(*TRIP_ORDER))
                ),
            ),
            Prefetch("trips", queryset=Trip.objects.order_by(*TRIP_ORDER)),
        )

    @extend_schema(responses={200: VisitSerializer, **ERRORS})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=VisitInput, responses={201: VisitSerializer, **ERRORS})
    def create(self, request: Request) -> Response:
        actor = request_actor(request)
        limited("appointment_create", str(actor.pk))
        data = _valid_visit(request.data)
        visit = book_visit(
            actor=actor,
            client_id=data["client"],
            start=data["start"],
            sessions=[
                SessionAsk(service_id=ask["service"], therapist_id=ask.get("therapist"))
                for ask in data["sessions"]
            ],
            needs_transport=data["needs_transport"],
            address=data["address"],
            notes=data["notes"],
            area_id=data.get("area"),
        )
        return Response(self._render(visit.pk), status=status.HTTP_201_CREATED)

    @extend_schema(request=VisitCancelInput, responses={200: VisitSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        data = valid(VisitCancelInput, request.data)
        visit = self.get_object()
        cancel_visit(
            actor=request_actor(request),
            visit_id=visit.pk,
            reason=data["reason"],
        )
        return Response(self._render(visit.pk))

    def _render(self, pk: int) -> dict[str, Any]:
        visit = self.get_queryset().get(pk=pk)
        data: dict[str, Any] = VisitSerializer(visit, context={"request": self.request}).data
        return data
