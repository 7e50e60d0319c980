"""The desk's control actions on the API (issue 13): reassigning an appointment.

A mixin for `AppointmentViewSet`, so the routes sit beside the other appointment actions
(`/api/appointments/{id}/reassign/`) while their code lives here."""

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
from scheduling.limits import TEXT_MAX
from scheduling.models import Appointment
from scheduling.services.reassign import reassign


class ReassignInput(strict.InputSerializer):
    therapist = s.ident(help_text="The therapist who takes the appointment.")
    start = s.AwareDateTimeField(
        required=False, help_text="A new start; omitted, the appointment keeps its time."
    )
    reason = strict.CharField(
        max_length=TEXT_MAX, help_text="Why (kept in the appointment's history)."
    )


def _valid(serializer_class: type[serializers.Serializer], data: object) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AppointmentViews(Protocol):
    """What the mixin uses of the viewset it is mixed into (`AppointmentViewSet`)."""

    def get_object(self) -> Appointment: ...

    def _role_may(self, action: str, *, on_behalf: bool = False) -> None: ...

    def _render(self, pk: int) -> dict: ...


class AppointmentControlMixin:
    """Desk-only actions on one appointment (receptionists and managers: 403 for others,
    before any lookup, as the state machine's table says)."""

    # `self` is typed by what it needs, not declared here: stubs on the mixin would come
    # before GenericAPIView.get_object in the viewset's MRO and hide it.
    @extend_schema(request=ReassignInput, responses={200: s.AppointmentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def reassign(self: AppointmentViews, request: Request, pk=None) -> Response:
        self._role_may("reassign")
        appointment = self.get_object()
        data = _valid(ReassignInput, request.data)
        reassign(
            actor=request_actor(request),
            appointment_id=appointment.pk,
            therapist_id=data["therapist"],
            start=data.get("start"),
            reason=data["reason"],
        )
        return Response(self._render(appointment.pk))
