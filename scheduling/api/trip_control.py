"""The desk's manual dispatch on the API (issue 13 item 3): assign and unassign a trip.

A mixin for `TripViewSet`, so the routes sit beside the other trip actions
(`/api/trips/{id}/assign/`) while their code lives here. Receptionists and managers
only: every other role hears 403 before any lookup."""

from __future__ import annotations

from typing import Protocol

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from scheduling.api import fields as strict
from scheduling.api import serializers as s
from scheduling.api.actor import request_actor
from scheduling.api.schema import ERRORS
from scheduling.errors import NotPermitted
from scheduling.limits import TEXT_MAX
from scheduling.models import Trip, User
from scheduling.services import manual_dispatch
from scheduling.states import DESK


class AssignInput(strict.InputSerializer):
    driver = s.ident(help_text="The driver who takes the trip: on shift, fit, free.")
    reason = strict.CharField(
        max_length=TEXT_MAX, help_text="Why (kept in the trip's dispatch decisions)."
    )


class UnassignInput(strict.InputSerializer):
    reason = strict.CharField(
        max_length=TEXT_MAX, help_text="Why (kept in the trip's dispatch decisions)."
    )


def _valid(serializer_class: type[serializers.Serializer], data: object) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _desk_only(actor: User, verb: str) -> None:
    role = actor.effective_role
    if role not in DESK:
        raise NotPermitted(f"A {role} may not {verb} a trip: only the desk dispatches by hand.")


class TripViews(Protocol):
    """What the mixin uses of the viewset it is mixed into (`TripViewSet`)."""

    def get_object(self) -> Trip: ...


class TripControlMixin:
    """Desk-only actions on one trip."""

    # `self` is typed by what it needs, not declared here: a stub on the mixin would come
    # before GenericAPIView.get_object in the viewset's MRO and hide it.
    @extend_schema(request=AssignInput, responses={200: s.TripSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def assign(self: TripViews, request: Request, pk=None) -> Response:
        """Give a queued trip to a chosen driver."""
        actor = request_actor(request)
        _desk_only(actor, "assign")
        trip = self.get_object()
        data = _valid(AssignInput, request.data)
        trip = manual_dispatch.assign_by_hand(
            actor=actor, trip_id=trip.pk, driver_id=data["driver"], reason=data["reason"]
        )
        return Response(s.TripSerializer(trip).data)

    @extend_schema(request=UnassignInput, responses={200: s.TripSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def unassign(self: TripViews, request: Request, pk=None) -> Response:
        """Take an assigned trip (not yet under way) back into the queue."""
        actor = request_actor(request)
        _desk_only(actor, "unassign")
        trip = self.get_object()
        data = _valid(UnassignInput, request.data)
        trip = manual_dispatch.unassign(actor=actor, trip_id=trip.pk, reason=data["reason"])
        return Response(s.TripSerializer(trip).data)
