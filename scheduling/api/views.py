"""Thin viewsets: an input serializer, one service call, an output serializer."""

from __future__ import annotations

import json

from django.contrib.auth import authenticate
from django.db.models import Prefetch
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduling import ratelimit, states
from scheduling.api import fields as strict
from scheduling.api import rows as rows_out
from scheduling.api import serializers as s
from scheduling.api.actor import request_actor
from scheduling.api.desk_control import AppointmentControlMixin
from scheduling.api.idempotency import fingerprint, once
from scheduling.api.pagecache import cached_page
from scheduling.api.pagination import ByName, ByStaffName, ByStart, ByWindow, keyset_page
from scheduling.api.schema import ERRORS, KEY_REUSED, STREAM_PRUNED
from scheduling.api.trip_control import TripControlMixin
from scheduling.clientaddr import client_address
from scheduling.models import Appointment, Client, DriverProfile, Service, StreamEvent, Trip, User
from scheduling.permissions import IsDesk, IsDeskOrDriver, IsDriver, IsManager
from scheduling.realtime.events import shaped_for
from scheduling.services import appointments as appointment_services
from scheduling.services import dispatch as dispatch_services
from scheduling.services import trips as trip_services
from scheduling.services.availability import availability
from scheduling.services.catalog import create_service
from scheduling.services.choosing import book_any_therapist
from scheduling.services.clients import create_client, update_client
from scheduling.services.retention import stream_gone
from scheduling.services.series import Repeat, book_series
from scheduling.services.series_scopes import cancel_appointments, reschedule_appointments
from scheduling.services.travel import travel_for


def documented(serializer_class):
    """Document the mixins' list and retrieve with the error bodies they can answer."""
    return extend_schema_view(
        list=extend_schema(responses={200: serializer_class(many=True), **ERRORS}),
        retrieve=extend_schema(responses={200: serializer_class, **ERRORS}),
    )


def valid(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def patch_changes(serializer_class, data) -> dict:
    """A PATCH body: known fields validated, unknown ones passed on untouched so the
    service refuses them by name (a protected field is an error, not silently dropped)."""
    if not isinstance(data, dict):
        raise DRFValidationError({"non_field_errors": ["Send a JSON object."]})
    known = set(serializer_class().fields)
    changes = valid(serializer_class, {k: v for k, v in data.items() if k in known}, partial=True)
    return {**changes, **{k: v for k, v in data.items() if k not in known}}


def canonical(data) -> bytes:
    """The body as parsed, keys sorted: the same request however it was spaced. (The raw
    body may already be consumed by the parser under a real server.)"""
    # json, not orjson: a body may carry integers past 64 bits, which orjson refuses.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def limited(name: str, ident: str) -> None:
    wait = ratelimit.retry_after(name, ident)
    if wait is not None:
        raise Throttled(wait=wait, detail=f"Too many requests; try again in {wait} seconds.")


# --- auth -----------------------------------------------------------------------------------


class TokenView(APIView):
    """Exchange a username and password for an API token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=s.LoginInput, responses={200: s.TokenSerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        limited("token_ip", client_address(request) or "unknown")
        data = valid(s.LoginInput, request.data)
        limited("token_username", data["username"].lower())
        # Django's request, not DRF's wrapper: axes marks it when the sign-in is locked, and
        # its middleware answers 429 (scheduling/signin.py), as on the sign-in pages.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise DRFValidationError({"non_field_errors": ["Wrong username or password."]})
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class ById(viewsets.GenericViewSet):
    # Ids are ASCII digits: "１２" (fullwidth), "+12" or "0_12" name no route (a JSON 404)
    # rather than the object Python's int() would read them as.
    lookup_value_regex = "[0-9]+"


# --- clients, services, staff ---------------------------------------------------------------


@documented(s.ClientSerializer)
class ClientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ById):
    permission_classes = [IsDesk]
    serializer_class = s.ClientSerializer
    pagination_class = ByName

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Client.objects.none()
        query = valid(s.ClientQuery, self.request.query_params)
        clients = Client.objects.all()
        return clients.search(query["q"]) if query.get("q") else clients

    @extend_schema(
        parameters=[OpenApiParameter("q", str, description="name or phone fragment")],
        responses={200: s.ClientSerializer(many=True), **ERRORS},
    )
    def list(self, request, *args, **kwargs):
        # A deferred join: the page is chosen on (name, id) alone, which the name index
        # answers in order (a common surname matches thousands of clients, and sorting
        # them all for 50 cost 8 ms), then its rows are read by primary key.
        page = keyset_page(self.paginate_queryset(self.get_queryset().values("id", "name")))
        clients = rows_out.clients_in_order([row["id"] for row in page])
        return self.get_paginated_response(clients)

    @extend_schema(request=s.ClientInput, responses={201: s.ClientSerializer, **ERRORS})
    def create(self, request: Request) -> Response:
        client = create_client(**valid(s.ClientInput, request.data))
        return Response(s.ClientSerializer(client).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ClientPatch, responses={200: s.ClientSerializer, **ERRORS})
    def partial_update(self, request: Request, pk=None) -> Response:
        client = update_client(
            client=self.get_object(), **patch_changes(s.ClientPatch, request.data)
        )
        return Response(s.ClientSerializer(client).data)


@documented(s.ServiceSerializer)
class ServiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ById):
    serializer_class = s.ServiceSerializer
    queryset = Service.objects.order_by("name", "id")
    pagination_class = None

    def get_permissions(self):
        return [IsManager()] if self.action == "create" else super().get_permissions()

    @extend_schema(request=s.ServiceInput, responses={201: s.ServiceSerializer, **ERRORS})
    def create(self, request: Request) -> Response:
        service = create_service(**valid(s.ServiceInput, request.data))
        return Response(s.ServiceSerializer(service).data, status=status.HTTP_201_CREATED)


@documented(s.StaffSerializer)
class StaffViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ById):
    permission_classes = [IsDesk]
    serializer_class = s.StaffSerializer
    pagination_class = ByStaffName

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return User.objects.none()
        query = valid(s.StaffQuery, self.request.query_params)
        staff = User.objects.filter(is_active=True).select_related("driver_profile")
        return staff.filter(role=query["role"]) if query.get("role") else staff

    @extend_schema(
        parameters=[
            OpenApiParameter("role", str, enum=["therapist", "driver", "receptionist", "manager"])
        ],
        responses={200: s.StaffSerializer(many=True), **ERRORS},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class AvailabilityView(APIView):
    permission_classes = [IsDesk]

    @extend_schema(
        parameters=[s.AvailabilityQuery], responses={200: s.AvailabilitySerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        query = valid(s.AvailabilityQuery, request.query_params)
        service = Service.objects.filter(pk=query["service"]).first()
        if service is None:
            raise DRFValidationError(
                {"service": [f"There is no service with id {query['service']}."]}
            )
        therapist_id = query.get("therapist")
        if therapist_id and not User.objects.therapists().filter(pk=therapist_id).exists():
            raise DRFValidationError(
                {"therapist": [f"There is no therapist with id {therapist_id}."]}
            )
        client = None
        if query.get("client"):
            client = Client.objects.filter(pk=query["client"]).first()
            if client is None:
                raise DRFValidationError(
                    {"client": [f"There is no client with id {query['client']}."]}
                )
        travel = travel_for(client=client, area_id=query.get("area"))
        result = availability(
            service=service,
            day=query["date"],
            therapist_id=therapist_id,
            travel=travel.time,
            needs_transport=query["needs_transport"],
        )
        return Response(
            availability_body(service, query["date"], result, travel, query["needs_transport"])
        )


def availability_body(service: Service, day, result, travel, needs_transport: bool) -> dict:
    """What AvailabilitySerializer renders, with the start times (some 200 a day) written
    by `rows.iso` rather than one DRF DateTimeField call each."""
    zone = timezone.get_current_timezone()
    return {
        "service": service.pk,
        "date": day.isoformat(),
        "travel_minutes": travel.minutes,
        "needs_transport": needs_transport,
        "therapists": [
            {
                "therapist": r.therapist.pk,
                "name": str(r.therapist),
                "starts": [rows_out.iso(start, zone) for start in r.starts],
                "no_driver": [rows_out.iso(start, zone) for start in r.no_driver],
            }
            for r in result
        ],
    }


# --- appointments ---------------------------------------------------------------------------

APPOINTMENT_ACTIONS = {
    "accept": "accept",
    "reject": "reject",
    "start": "start",
    "complete": "complete",
    "cancel": "cancel",
    "no-show": "no_show",
}


# What the appointment list reads from its query string (its filters and its pages).
LIST_PARAMETERS = frozenset(
    {*s.AppointmentFilter().fields, ByStart.cursor_query_param, ByStart.page_size_query_param}
)


@documented(s.AppointmentSerializer)
class AppointmentViewSet(
    AppointmentControlMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ById
):
    serializer_class = s.AppointmentSerializer
    pagination_class = ByStart

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Appointment.objects.none()
        rows = Appointment.objects.visible_to(request_actor(self.request))
        if self.action != "list":
            return rows.prefetch_related(
                Prefetch("trips", queryset=Trip.objects.order_by(*rows_out.TRIP_ORDER))
            )
        query = valid(s.AppointmentFilter, self.request.query_params)
        if "date" in query:
            rows = rows.on_day(query["date"])
        if "status" in query:
            rows = rows.filter(status=query["status"])
        if "therapist" in query:
            rows = rows.filter(therapist_id=query["therapist"])
        if "client" in query:
            rows = rows.filter(client_id=query["client"])
        return rows

    @extend_schema(
        parameters=[
            s.AppointmentFilter,
            OpenApiParameter(
                "Cache-Control",
                str,
                OpenApiParameter.HEADER,
                description="no-cache: read the page from the database even when this "
                "server holds it unchanged since the last change to any appointment.",
            ),
        ],
        responses={200: s.AppointmentSerializer(many=True), **ERRORS},
    )
    def list(self, request, *args, **kwargs):
        # Kept as the bytes sent: a repeated page is not even encoded again.
        renderer = request.accepted_renderer
        body = cached_page(
            request,
            lambda: renderer.render(self._page(), request.accepted_media_type),
            params=LIST_PARAMETERS,
        )
        return HttpResponse(body, content_type=renderer.media_type)

    def _page(self) -> dict:
        # Rendered from values() rows, not through AppointmentSerializer: the same fields
        # and formats (tests compare them) at a fraction of the cost per row.
        page = keyset_page(self.paginate_queryset(rows_out.appointment_rows(self.get_queryset())))
        rendered = rows_out.render_appointments(page, request_actor(self.request))
        return self.get_paginated_response(rendered).data

    @extend_schema(
        request=s.AppointmentInput,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "maxLength": 255, "pattern": strict.PRINTABLE_HEADER},
                OpenApiParameter.HEADER,
                description="Retries with the same key return the first response "
                "(at most 255 printable characters).",
            )
        ],
        responses={201: s.CREATED_APPOINTMENT, 422: KEY_REUSED, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        actor = request_actor(request)
        limited("appointment_create", str(actor.pk))
        data = valid(s.AppointmentInput, request.data)

        def book() -> tuple[int, dict]:
            fields = dict(
                actor=actor,
                client_id=data["client"],
                service_id=data["service"],
                start=data["start"],
                address=data["address"],
                notes=data["notes"],
                needs_transport=data["needs_transport"],
                area_id=data.get("area"),
            )
            if "repeat" in data:
                return status.HTTP_201_CREATED, self._book_series(data, fields)
            if data.get("therapist") is None:
                appointment = book_any_therapist(**fields)
            else:
                appointment = appointment_services.create_appointment(
                    therapist_id=data["therapist"], **fields
                )
            # Rendered from the booking in memory: only its trips are read back.
            trips = (
                appointment.trips.order_by(*rows_out.TRIP_ORDER)
                if appointment.needs_transport
                else []
            )
            body = rows_out.render_appointment(appointment, trips, actor)
            return status.HTTP_201_CREATED, body

        key = request.headers.get("Idempotency-Key")
        if not key:
            code, body = book()
            return Response(body, status=code)
        if len(key) > 255 or not key.isprintable():
            raise DRFValidationError({"Idempotency-Key": ["At most 255 printable characters."]})
        outcome = once(
            user=actor,
            key=key,
            produce=book,
            request_fingerprint=fingerprint(request.path, canonical(request.data)),
        )
        return Response(
            outcome.body,
            status=outcome.status_code,
            headers={"Idempotent-Replayed": "true"} if outcome.replayed else None,
        )

    def _book_series(self, data: dict, fields: dict) -> dict:
        repeat, skip = Repeat(**data["repeat"]), data["skip_conflicts"]
        booking = book_series(
            therapist_id=data.get("therapist"), repeat=repeat, skip_conflicts=skip, **fields
        )
        return rows_out.render_series_booking(booking, request_actor(self.request), skipped=skip)

    @extend_schema(request=s.AppointmentPatch, responses={200: s.AppointmentSerializer, **ERRORS})
    def partial_update(self, request: Request, pk=None) -> Response:
        appointment = self.get_object()
        appointment_services.update_appointment_details(
            actor=request_actor(request),
            appointment_id=appointment.pk,
            changes=patch_changes(s.AppointmentPatch, request.data),
        )
        return Response(self._render(appointment.pk))

    @extend_schema(request=s.RescheduleInput, responses={200: s.AppointmentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def reschedule(self, request: Request, pk=None) -> Response:
        self._role_may("reschedule")
        appointment = self.get_object()
        data = valid(s.RescheduleInput, request.data)
        reschedule_appointments(
            actor=request_actor(request),
            appointment_id=appointment.pk,
            start=data["start"],
            scope=data["scope"],
            reason=data["reason"],
        )
        return Response(self._render(appointment.pk))

    @extend_schema(request=None, responses={200: s.AppointmentSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="request-pickup", url_name="request-pickup")
    def request_pickup(self, request: Request, pk=None) -> Response:
        """The therapist is ready to be collected: dispatch the pickup leg now."""
        appointment = self.get_object()
        data = valid(s.ActionInput, request.data)
        dispatch_services.request_pickup(
            actor=request_actor(request), appointment_id=appointment.pk, on_behalf=data["on_behalf"]
        )
        return Response(self._render(appointment.pk))

    def _role_may(self, action: str, *, on_behalf: bool = False) -> None:
        # A role the state machine never lets take `action` hears so before any lookup:
        # 403 whatever the id, rather than 404 for an id that names nothing.
        role = request_actor(self.request).effective_role
        states.check_role(
            states.APPOINTMENT_RULES, action, role=role, noun="appointment", on_behalf=on_behalf
        )

    def _act(self, request: Request, name: str) -> Response:
        # The desk acting for the therapist (issue 13): read first, for the role check.
        on_behalf = valid(s.ActionInput, request.data)["on_behalf"]
        self._role_may(APPOINTMENT_ACTIONS[name], on_behalf=on_behalf)
        appointment = self.get_object()
        if name == "cancel":
            data = valid(s.CancelInput, request.data)
            cancel_appointments(
                actor=request_actor(request),
                appointment_id=appointment.pk,
                scope=data["scope"],
                reason=data["reason"],
            )
            return Response(self._render(appointment.pk))
        data = valid(s.ActionInput, request.data)
        appointment_services.act_on_appointment(
            actor=request_actor(request),
            appointment_id=appointment.pk,
            action=APPOINTMENT_ACTIONS[name],
            reason=data["reason"],
            on_behalf=on_behalf,
        )
        return Response(self._render(appointment.pk))

    def _render(self, pk: int) -> dict:
        # From .all(): django-stubs types the manager's own prefetch_related without the
        # Prefetch's type parameters and refuses this one; the QuerySet's takes it.
        appointment = (
            Appointment.objects.all()
            .prefetch_related(
                Prefetch("trips", queryset=Trip.objects.order_by(*rows_out.TRIP_ORDER))
            )
            .get(pk=pk)
        )
        return s.AppointmentSerializer(appointment, context={"request": self.request}).data


def _appointment_action(name: str):
    def act(self, request: Request, pk=None) -> Response:
        return self._act(request, name)

    # The router maps the HTTP method to the function's name, so name it before @action.
    act.__name__ = name.replace("-", "_")
    act = action(detail=True, methods=["post"], url_path=name, url_name=name)(act)
    body = s.CancelInput if name == "cancel" else s.ActionInput
    return extend_schema(request=body, responses={200: s.AppointmentSerializer, **ERRORS})(act)


for _name in APPOINTMENT_ACTIONS:
    setattr(AppointmentViewSet, _name.replace("-", "_"), _appointment_action(_name))


# --- trips and shifts -----------------------------------------------------------------------

TRIP_ACTIONS = ("depart", "arrive", "complete")


@documented(s.TripSerializer)
class TripViewSet(TripControlMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ById):
    permission_classes = [IsDeskOrDriver]
    serializer_class = s.TripSerializer
    pagination_class = ByWindow

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Trip.objects.none()
        return Trip.objects.visible_to(request_actor(self.request))

    def _act(self, request: Request, name: str) -> Response:
        data = valid(s.ActionInput, request.data)
        actor = request_actor(request)
        role = actor.effective_role
        states.check_role(
            states.TRIP_RULES, name, role=role, noun="trip", on_behalf=data["on_behalf"]
        )
        trip = self.get_object()
        trip = trip_services.act_on_trip(
            actor=actor,
            trip_id=trip.pk,
            action=name,
            reason=data["reason"],
            on_behalf=data["on_behalf"],
        )
        return Response(s.TripSerializer(trip).data)


def _trip_action(name: str):
    def act(self, request: Request, pk=None) -> Response:
        return self._act(request, name)

    act.__name__ = name
    act = action(detail=True, methods=["post"], url_path=name, url_name=name)(act)
    return extend_schema(request=s.ActionInput, responses={200: s.TripSerializer, **ERRORS})(act)


for _name in TRIP_ACTIONS:
    setattr(TripViewSet, _name, _trip_action(_name))


class ShiftView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=s.ShiftInput, responses={200: s.ShiftSerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        data = valid(s.ShiftInput, request.data)
        profile = trip_services.set_shift(driver=request_actor(request), on_shift=data["on_shift"])
        return Response(s.ShiftSerializer(shift_state(profile)).data)


def shift_state(profile: DriverProfile) -> dict:
    return {
        "on_shift": profile.on_shift,
        "available_since": profile.available_since,
        "queue_position": dispatch_services.queue_position(profile),
    }


# --- events ---------------------------------------------------------------------------------


class EventsView(APIView):
    """The caller's stream events after a sequence number, oldest first."""

    @extend_schema(
        parameters=[s.EventsQuery],
        responses={200: s.EventPageSerializer, 410: STREAM_PRUNED, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        user = request_actor(request)
        query = valid(s.EventsQuery, request.query_params)
        rows = list(
            StreamEvent.objects.visible_to(user)
            .filter(seq__gt=query["after"])
            .order_by("seq")
            .values_list("seq", "type", "data")[: query["limit"] + 1]
        )
        # After the read: a prune committed during it is seen here (never a silent gap).
        gone = stream_gone(user=user, after=query["after"])
        if gone is not None:
            return Response(gone, status=status.HTTP_410_GONE)
        more = len(rows) > query["limit"]
        rows = rows[: query["limit"]]
        events = [
            {"seq": seq, "type": kind, "data": shaped_for(user, data)} for seq, kind, data in rows
        ]
        last = events[-1]["seq"] if events else query["after"]
        return Response({"events": events, "last_seq": last, "more": more})
