"""The role matrix, generated from the URL conf.

Every route under /api/ (and /health/) × every role × own / foreign / missing object
answers the status API.md promises, and a refused call writes nothing. The routes come
from `get_resolver()`, the expectations from the EXPECTED table below: a route (or a
method on it) added later without a row here fails `test_every_route_is_in_the_matrix`,
so nothing reaches the API without someone deciding who may use it and what they see.
List endpoints are checked to return exactly the caller's scope.

Own / foreign: a therapist's own appointment vs another therapist's; a driver's own
appointment (they drive one of its trips) and trip vs another driver's. The desk sees
everything, so its "foreign" object is simply another one it can see. Missing is an id
that names nothing: 404 for a role that may use the route, 403 for a role kept off the
route altogether, 401 for anonymous callers on every route that needs a login.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.models import (
    Appointment,
    Client,
    DispatchDecision,
    DriverProfile,
    IdempotencyKey,
    Payment,
    Refund,
    Service,
    StreamEvent,
    StreamEventRecipient,
    Transition,
    Trip,
    User,
    WebhookEvent,
    WorkingHours,
)
from scheduling.services.appointments import create_appointment, update_appointment_details
from scheduling.services.trips import assign_trip, set_shift
from tests import factories

ROLES = ("anonymous", "receptionist", "manager", "therapist", "driver")
RELATIONS = ("own", "foreign", "missing")
MISSING_ID = 987_654_321
PASSWORD = "pw"  # tests.factories.UserFactory's

# --- the routes, as the URL conf has them ----------------------------------------------------

# Methods DRF answers for any view (OPTIONS metadata, HEAD as GET) or refuses for all.
IMPLICIT_METHODS = frozenset({"options", "head", "trace"})


@dataclass(frozen=True)
class Route:
    name: str  # "namespace:name", or the path template for an unnamed pattern
    template: str  # "/api/appointments/{pk}/accept/"
    methods: tuple[str, ...]  # upper case
    detail: bool  # the path names one object

    def url(self, pk: int | None = None) -> str:
        return self.template.format(pk=pk) if self.detail else self.template


def _template(regex_or_route: str) -> str:
    text = regex_or_route.replace("^", "").replace("$", "")
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
    text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)
    return "/" + text


def _methods(callback) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if actions:  # a DRF viewset bound by a router: {method: action}
        return tuple(sorted(m.upper() for m in actions))
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:  # a plain function view: nobody can tell what it answers
        return ("*",)
    return tuple(
        sorted(
            m.upper()
            for m in view_class.http_method_names
            if m not in IMPLICIT_METHODS and hasattr(view_class, m)
        )
    )


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}{pattern.name}" if pattern.name else ""
            yield prefix + str(pattern.pattern), name, pattern.callback


def discover_routes() -> dict[str, Route]:
    routes = {}
    for raw, name, callback in _walk(get_resolver().url_patterns):
        template = _template(raw)
        if not (template.startswith("/api/") or template.startswith("/health/")):
            continue
        key = name or template
        routes[key] = Route(
            name=key,
            template=template,
            methods=_methods(callback),
            detail="{pk}" in template,
        )
    return routes


ROUTES = discover_routes()

# --- what the contract promises ----------------------------------------------------------------

# (route name, method) -> role -> status; for routes naming one object, role ->
# (own, foreign, missing). Written out in full on purpose: this table is the contract's
# "who" column, and a reviewer reads it row by row.
ANON3 = (401, 401, 401)
KEPT_OFF = (403, 403, 403)  # a role the route's permission class turns away
DESK_ALL = (200, 200, 404)  # the desk sees every object
OWN_ONLY = (200, 404, 404)  # scoped: another's object does not exist for you
# The role may see its own object but may not do this to it (checked after the lookup).
ROLE_REFUSED_OWN = (403, 404, 404)
# The state machine never lets the role take this action: it is told so before any
# lookup, whatever the id names.
NEVER_THEIRS = (403, 403, 403)

EVERYONE_200 = dict.fromkeys(ROLES, 200)
STAFF_200 = {"anonymous": 401, **dict.fromkeys(ROLES[1:], 200)}
DESK_ONLY = {"anonymous": 401, "receptionist": 200, "manager": 200, "therapist": 403, "driver": 403}

EXPECTED: dict[tuple[str, str], dict[str, int | tuple[int, int, int]]] = {
    # Open routes. The token route: each role with its own password; anonymous with a wrong one.
    ("api:token", "POST"): {"anonymous": 400, **dict.fromkeys(ROLES[1:], 200)},
    ("api:schema", "GET"): EVERYONE_200,
    ("api:docs", "GET"): EVERYONE_200,
    ("health", "GET"): EVERYONE_200,
    # Desk resources.
    ("api:client-list", "GET"): DESK_ONLY,
    ("api:client-list", "POST"): {**DESK_ONLY, "receptionist": 201, "manager": 201},
    ("api:client-detail", "GET"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": KEPT_OFF,
        "driver": KEPT_OFF,
    },
    ("api:client-detail", "PATCH"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": KEPT_OFF,
        "driver": KEPT_OFF,
    },
    ("api:staff-list", "GET"): DESK_ONLY,
    ("api:staff-detail", "GET"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": KEPT_OFF,
        "driver": KEPT_OFF,
    },
    ("api:availability", "GET"): DESK_ONLY,
    # Services: every member of staff reads them, only a manager adds one.
    ("api:service-list", "GET"): STAFF_200,
    ("api:service-list", "POST"): {
        "anonymous": 401,
        "receptionist": 403,
        "manager": 201,
        "therapist": 403,
        "driver": 403,
    },
    ("api:service-detail", "GET"): {"anonymous": ANON3, **dict.fromkeys(ROLES[1:], DESK_ALL)},
    # Appointments: all roles, scoped.
    ("api:appointment-list", "GET"): STAFF_200,
    ("api:appointment-list", "POST"): {
        "anonymous": 401,
        "receptionist": 201,
        "manager": 201,
        "therapist": 403,
        "driver": 403,
    },
    ("api:appointment-detail", "GET"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": OWN_ONLY,
        "driver": OWN_ONLY,
    },
    ("api:appointment-detail", "PATCH"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": OWN_ONLY,
        "driver": ROLE_REFUSED_OWN,  # a driver reads the address but does not edit it
    },
    **{
        ("api:appointment-" + action, "POST"): {
            "anonymous": ANON3,
            "receptionist": NEVER_THEIRS,
            "manager": NEVER_THEIRS,
            "therapist": OWN_ONLY,
            "driver": NEVER_THEIRS,
        }
        for action in ("accept", "reject", "start", "complete")
    },
    ("api:appointment-cancel", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": NEVER_THEIRS,
        "driver": NEVER_THEIRS,
    },
    ("api:appointment-no-show", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": OWN_ONLY,
        "driver": NEVER_THEIRS,
    },
    # The therapist (or the desk) is ready to be collected: the pick-up leg goes out now.
    ("api:appointment-request-pickup", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": OWN_ONLY,
        "driver": ROLE_REFUSED_OWN,
    },
    ("api:appointment-reschedule", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": NEVER_THEIRS,
        "driver": NEVER_THEIRS,
    },
    # Issue 13: the desk gives an appointment to another therapist.
    ("api:appointment-reassign", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": NEVER_THEIRS,
        "driver": NEVER_THEIRS,
    },
    # Trips: the desk sees all, a driver their own, a therapist none.
    ("api:trip-list", "GET"): {**DESK_ONLY, "driver": 200},
    ("api:trip-detail", "GET"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": KEPT_OFF,
        "driver": OWN_ONLY,
    },
    **{
        ("api:trip-" + action, "POST"): {
            "anonymous": ANON3,
            "receptionist": NEVER_THEIRS,
            "manager": NEVER_THEIRS,
            "therapist": KEPT_OFF,
            "driver": OWN_ONLY,
        }
        for action in ("depart", "arrive", "complete")
    },
    # Issue 13: the desk dispatches by hand; a driver is refused before any lookup.
    **{
        ("api:trip-" + action, "POST"): {
            "anonymous": ANON3,
            "receptionist": DESK_ALL,
            "manager": DESK_ALL,
            "therapist": KEPT_OFF,
            "driver": NEVER_THEIRS,
        }
        for action in ("assign", "unassign")
    },
    ("api:driver-shift", "POST"): {
        "anonymous": 401,
        "receptionist": 403,
        "manager": 403,
        "therapist": 403,
        "driver": 200,
    },
    ("api:events", "GET"): STAFF_200,
    # Issue 15: the therapist records what they collected (once the session has started),
    # the desk verifies it; the list is the desk's and each therapist's own.
    ("api:appointment-payments", "POST"): {
        "anonymous": ANON3,
        "receptionist": (403, 403, 404),
        "manager": (403, 403, 404),
        "therapist": (201, 404, 404),
        "driver": ROLE_REFUSED_OWN,
    },
    ("api:payment-verify", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": NEVER_THEIRS,
        "driver": NEVER_THEIRS,
    },
    ("api:payment-list", "GET"): {**STAFF_200, "driver": 403},
    # Issue 15 items 3-6: the desk sends a gateway link; a manager refunds; the gateways'
    # webhooks take no login, so every caller without a valid signature gets 400.
    ("api:appointment-payment-link", "POST"): {
        "anonymous": ANON3,
        "receptionist": (201, 201, 404),
        "manager": (201, 201, 404),
        "therapist": NEVER_THEIRS,
        "driver": NEVER_THEIRS,
    },
    ("api:payment-refund", "POST"): {
        "anonymous": ANON3,
        "receptionist": NEVER_THEIRS,
        "manager": (201, 201, 404),
        "therapist": NEVER_THEIRS,
        "driver": NEVER_THEIRS,
    },
    **{
        (f"api:webhook-{gateway}", "POST"): dict.fromkeys(ROLES, 400)
        for gateway in ("razorpay", "paymongo", "fake")
    },
}

# The status an object is put in before an action, so that its rightful role gets a 200.
APPOINTMENT_ACTIONS = {
    # action: (status before, status after)
    "accept": ("pending", "confirmed"),
    "reject": ("pending", "rejected"),
    "start": ("confirmed", "in_progress"),
    "complete": ("in_progress", "completed"),
    "cancel": ("pending", "cancelled"),
    "no-show": ("confirmed", "no_show"),
    "reschedule": ("confirmed", "pending"),
    "reassign": ("confirmed", "pending"),
    "request-pickup": ("confirmed", "confirmed"),
    "payments": ("in_progress", "in_progress"),
}
TRIP_ACTIONS = {
    "depart": ("assigned", "en_route"),
    "arrive": ("en_route", "arrived"),
    "complete": ("arrived", "done"),
    "assign": ("queued", "assigned"),
    "unassign": ("assigned", "queued"),
}

# --- the world every case starts from -----------------------------------------------------------


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    day = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


@dataclass
class World:
    users: dict[str, User]  # by role; plus "other_therapist", "other_driver"
    service: Service
    other_service: Service
    client: Client
    other_client: Client
    own: Appointment  # the therapist's, driven (both legs) by the driver
    foreign: Appointment  # another therapist's, driven by another driver
    own_untransported: Appointment  # the therapist's, no transport
    crossed: Appointment  # another therapist's; the driver drives its pick-up leg
    own_trip: Trip  # the own appointment's drop-off leg
    foreign_trip: Trip  # the foreign appointment's drop-off leg
    own_payment: Payment  # cash the therapist collected on the own appointment, unverified
    foreign_payment: Payment  # the other therapist's, on the foreign appointment

    def objects(self, family: str) -> tuple[int, int]:
        """(own id, foreign id) of a kind of object, from the caller's point of view."""
        return {
            "appointment": (self.own.pk, self.foreign.pk),
            "trip": (self.own_trip.pk, self.foreign_trip.pk),
            "client": (self.client.pk, self.other_client.pk),
            "service": (self.service.pk, self.other_service.pk),
            "staff": (self.users["therapist"].pk, self.users["other_therapist"].pk),
            "payment": (self.own_payment.pk, self.foreign_payment.pk),
        }[family]


def build_world() -> World:
    service = factories.ServiceFactory(name="Swedish", duration_minutes=60, buffer_minutes=15)
    other_service = factories.ServiceFactory(name="Shiatsu", duration_minutes=30)
    users = {
        "receptionist": factories.UserFactory(role="receptionist", username="desk"),
        "manager": factories.UserFactory(role="manager", username="boss"),
        "therapist": factories.therapist(service, other_service, username="t1"),
        "other_therapist": factories.therapist(service, username="t2"),
        "driver": factories.driver(username="d1"),
        "other_driver": factories.driver(username="d2"),
    }
    client = factories.ClientFactory(name="Maria Santos")
    other_client = factories.ClientFactory(name="Jose Rizal")
    desk = users["receptionist"]

    def book(therapist: User, who: Client, hour: int, transport: bool) -> Appointment:
        return create_appointment(
            actor=desk,
            client_id=who.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=tomorrow_at(hour),
            address="12 Mabini St",
            notes="gate code 1234",
            needs_transport=transport,
        )

    own = book(users["therapist"], client, 10, transport=True)
    foreign = book(users["other_therapist"], other_client, 10, transport=True)
    own_untransported = book(users["therapist"], client, 14, transport=False)
    crossed = book(users["other_therapist"], other_client, 14, transport=True)
    for trip in own.trips.all():
        assign_trip(trip_id=trip.pk, driver_id=users["driver"].pk)
    for trip in foreign.trips.all():
        assign_trip(trip_id=trip.pk, driver_id=users["other_driver"].pk)
    assign_trip(trip_id=crossed.trips.get(leg="pickup").pk, driver_id=users["driver"].pk)
    assign_trip(trip_id=crossed.trips.get(leg="dropoff").pk, driver_id=users["other_driver"].pk)
    # Events that reach the drivers' streams: an appointment change after assignment, and
    # each driver's queue.
    for appointment in (own, foreign, crossed):
        update_appointment_details(
            actor=desk, appointment_id=appointment.pk, changes={"notes": "ring twice"}
        )
    set_shift(driver=users["driver"], on_shift=True)
    set_shift(driver=users["other_driver"], on_shift=True)
    for user in users.values():
        Token.objects.create(user=user)
    return World(
        users=users,
        service=service,
        other_service=other_service,
        client=client,
        other_client=other_client,
        own=own,
        foreign=foreign,
        own_untransported=own_untransported,
        crossed=crossed,
        own_trip=own.trips.get(leg="dropoff"),
        foreign_trip=foreign.trips.get(leg="dropoff"),
        own_payment=_collected(own, users["therapist"]),
        foreign_payment=_collected(foreign, users["other_therapist"]),
    )


def _collected(appointment: Appointment, therapist: User) -> Payment:
    # Written directly: the appointments are not started in this world (the service
    # records money only then); the matrix is about who may verify it.
    return Payment.objects.create(
        appointment=appointment, amount="100.00", method="cash", collected_by=therapist
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """One world per module, inside a transaction that each test's own (a savepoint)
    nests in and that is rolled back at the end: building it takes far longer than a
    case."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


def api(world: World, role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {world.users[role].auth_token.key}")
    return client


SNAPSHOT_MODELS = (
    Appointment,
    Trip,
    Client,
    Service,
    User,
    DriverProfile,
    WorkingHours,
    Transition,
    StreamEvent,
    StreamEventRecipient,
    IdempotencyKey,
    Token,
    Payment,
    DispatchDecision,
    Refund,
    WebhookEvent,
)


def snapshot() -> dict[str, list[dict]]:
    return {m.__name__: list(m.objects.order_by("pk").values()) for m in SNAPSHOT_MODELS}


# --- what each case sends, and what a success must have done ------------------------------------


def family_of(route: Route) -> str:
    """The router's basename: appointment, trip, client, service or staff."""
    return route.name.split(":")[-1].split("-")[0]


def action_of(route: Route) -> str:
    return route.name.split(":")[-1].split("-", 1)[1]


def request_for(route: Route, method: str, world: World, role: str) -> dict[str, Any]:
    """The body (or query) that is valid for the route, so the status shows the role's
    rights and not a validation error."""
    name = route.name
    if name == "api:token":
        if role == "anonymous":
            return {"username": "nobody", "password": "wrong"}
        return {"username": world.users[role].username, "password": PASSWORD}
    if name == "api:availability":
        return {"service": world.service.pk, "date": tomorrow_at(0).date().isoformat()}
    if name == "api:events":
        return {"after": 0}
    if name == "api:client-list" and method == "POST":
        return {"name": "Ana Reyes", "phone": "+639175550101"}
    if name == "api:service-list" and method == "POST":
        return {
            "name": "Hot stone",
            "duration_minutes": 90,
            "price": "1800.00",
            "buffer_minutes": 15,
            "active": True,
        }
    if name == "api:appointment-list" and method == "POST":
        return {
            "client": world.client.pk,
            "service": world.service.pk,
            "therapist": world.users["therapist"].pk,
            "start": tomorrow_at(17).isoformat(),
            "address": "1 Ayala Ave",
            "needs_transport": True,
        }
    if name == "api:appointment-payments":
        return {"method": "cash", "amount": "100.00"}
    if method == "PATCH":
        return {"notes": "changed by the matrix"}
    if name == "api:appointment-reschedule":
        return {"start": tomorrow_at(17).isoformat(), "reason": "client asked"}
    if name == "api:appointment-reassign":
        return {
            "therapist": world.users["other_therapist"].pk,
            "start": tomorrow_at(17).isoformat(),
            "reason": "t1 called in sick",
        }
    if name == "api:trip-assign":
        return {"driver": world.users["driver"].pk, "reason": "d2's motorbike broke"}
    if name == "api:trip-unassign":
        return {"reason": "d1's motorbike broke"}
    if name == "api:driver-shift":
        return {"on_shift": False}
    if name.startswith("api:appointment-") and method == "POST":
        return {"reason": "matrix"}
    return {}


def prepare(route: Route, world: World) -> None:
    """Put the own and foreign objects in the status the route's action starts from."""
    if not route.detail:
        return
    family = family_of(route)
    action = action_of(route)
    if family == "appointment" and action in APPOINTMENT_ACTIONS:
        before, _ = APPOINTMENT_ACTIONS[action]
        Appointment.objects.filter(pk__in=world.objects("appointment")).update(status=before)
    if family == "payment" and action == "refund":
        # Money received (verified), so that a manager's refund is a 201.
        Payment.objects.filter(pk__in=world.objects("payment")).update(
            status="succeeded", verified_by=world.users["manager"], settled_at=timezone.now()
        )
    if family == "trip" and action in TRIP_ACTIONS:
        before, _ = TRIP_ACTIONS[action]
        trips = Trip.objects.filter(pk__in=world.objects("trip"))
        if before == "queued":  # waiting for a driver: nobody holds it
            trips.update(status=before, driver=None, assigned_at=None)
        else:  # each held by the world's driver of it (again, after an assign case)
            for trip, driver in ((world.own_trip, "driver"), (world.foreign_trip, "other_driver")):
                Trip.objects.filter(pk=trip.pk).update(status=before, driver=world.users[driver])


def check_effect(route: Route, method: str, world: World, role: str, pk: int | None, body: dict):
    """A write that answered 2xx did exactly what it says."""
    name, family = route.name, family_of(route)
    if name == "api:token":
        assert body["token"] == Token.objects.get(user=world.users[role]).key
    elif name == "api:client-list":
        assert Client.objects.get(pk=body["id"]).phone == "+639175550101"
    elif name == "api:service-list":
        assert Service.objects.get(pk=body["id"]).name == "Hot stone"
    elif name == "api:appointment-list":
        created = Appointment.objects.get(pk=body["id"])
        assert (created.status, created.created_by) == ("pending", world.users[role])
        assert created.trips.count() == 2
    elif name == "api:driver-shift":
        assert body["on_shift"] is False
        assert DriverProfile.objects.get(user=world.users[role]).on_shift is False
    elif method == "PATCH":
        model = {"appointment": Appointment, "client": Client}[family]
        assert model.objects.get(pk=pk).notes == "changed by the matrix" == body["notes"]
    elif name == "api:appointment-payments":
        stored = Payment.objects.get(pk=body["id"])
        assert (stored.status, stored.collected_by) == ("pending", world.users[role])
        assert stored.appointment_id == pk
    elif name == "api:payment-verify":
        stored = Payment.objects.get(pk=pk)
        assert (stored.status, stored.verified_by) == ("succeeded", world.users[role])
        assert body["status"] == "succeeded"
    elif name == "api:appointment-payment-link":
        stored = Payment.objects.get(pk=body["id"])
        assert (stored.method, stored.status, stored.appointment_id) == ("gateway", "pending", pk)
        assert body["url"] == stored.link_url != ""
    elif name == "api:payment-refund":
        stored = Payment.objects.get(pk=pk)
        assert stored.status == "refunded" == body["payment_status"]
        assert stored.refunds.get().requested_by == world.users[role]
    elif name == "api:appointment-request-pickup":
        assert Appointment.objects.get(pk=pk).status == "confirmed" == body["status"]
        pickup = Trip.objects.get(appointment_id=pk, leg="pickup")
        assert pickup.requested_at is not None
        assert pickup.transitions.latest("id").actor == world.users[role]
    elif family == "appointment":
        _, after = APPOINTMENT_ACTIONS[action_of(route)]
        stored = Appointment.objects.get(pk=pk)
        assert stored.status == after == body["status"]
        assert stored.transitions.latest("id").actor == world.users[role]
        if action_of(route) == "reschedule":
            assert stored.start == tomorrow_at(17)
        if action_of(route) == "reassign":
            assert stored.start == tomorrow_at(17)
            assert stored.therapist == world.users["other_therapist"]
    elif family == "trip":
        _, after = TRIP_ACTIONS[action_of(route)]
        stored = Trip.objects.get(pk=pk)
        assert stored.status == after == body["status"]
        assert stored.transitions.latest("id").actor == world.users[role]
        if action_of(route) in ("assign", "unassign"):
            decision = stored.dispatch_decisions.latest("id")
            assert decision.decided_by == world.users[role]
            assert (
                decision.outcome
                == {"assign": "assigned", "unassign": "unassigned"}[action_of(route)]
            )
            assert body["driver"] == (world.users["driver"].pk if after == "assigned" else None)
    else:
        raise AssertionError(f"no effect check for {method} {route.template}: add one")


# --- the tests --------------------------------------------------------------------------------


def test_every_route_is_in_the_matrix():
    routed = {(r.name, m) for r in ROUTES.values() for m in r.methods}
    unplanned = sorted(routed - set(EXPECTED))
    stale = sorted(set(EXPECTED) - routed)
    assert not unplanned, (
        f"routes without a row in EXPECTED (who may use them, what they see): {unplanned}"
    )
    assert not stale, f"rows in EXPECTED for routes that no longer exist: {stale}"


# The contract's route table (API.md, "Resources"); the matrix covers what is routed.
CONTRACT = [
    ("POST", "/api/auth/token/"),
    ("GET", "/api/clients/"),
    ("POST", "/api/clients/"),
    ("GET", "/api/clients/1/"),
    ("PATCH", "/api/clients/1/"),
    ("GET", "/api/services/"),
    ("POST", "/api/services/"),
    ("GET", "/api/staff/"),
    ("GET", "/api/availability/"),
    ("GET", "/api/appointments/"),
    ("POST", "/api/appointments/"),
    ("GET", "/api/appointments/1/"),
    ("PATCH", "/api/appointments/1/"),
    *(
        ("POST", f"/api/appointments/1/{action}/")
        for action in ("accept", "reject", "start", "complete", "cancel", "no-show")
    ),
    ("POST", "/api/appointments/1/request-pickup/"),
    ("GET", "/api/trips/"),
    *(("POST", f"/api/trips/1/{action}/") for action in TRIP_ACTIONS),
    ("POST", "/api/drivers/me/shift/"),
    ("GET", "/api/events/"),
    ("GET", "/api/schema/"),
    ("GET", "/health/"),
]


@pytest.mark.parametrize("method, path", CONTRACT)
def test_every_contract_route_is_routed(method, path):
    match = resolve(path)
    route = next(r for r in ROUTES.values() if r.name == (match.view_name or path))
    assert method in route.methods


def matrix_cases() -> list[Any]:
    keys = sorted({(r.name, m) for r in ROUTES.values() for m in r.methods} | set(EXPECTED))
    return [
        pytest.param(name, method, role, relation, id=f"{method} {name} {role} {relation}")
        for name, method in keys
        for role in ROLES
        for relation in (RELATIONS if name not in ROUTES or ROUTES[name].detail else ("-",))
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name, method, role, relation", matrix_cases())
def test_matrix(world, name, method, role, relation):
    route = ROUTES.get(name)
    assert route is not None, f"EXPECTED has {method} {name}, which is not routed"
    assert (name, method) in EXPECTED, f"{method} {route.template} has no row in EXPECTED"
    expected = EXPECTED[(name, method)][role]
    pk = None
    if route.detail:
        expected = expected[RELATIONS.index(relation)]
    prepare(route, world)
    if route.detail:
        own, foreign = world.objects(family_of(route))
        pk = {"own": own, "foreign": foreign, "missing": MISSING_ID}[relation]
    payload = request_for(route, method, world, role)
    before = snapshot()
    client = api(world, role)
    if method == "GET":
        response = client.get(route.url(pk), payload)
    else:
        response = client.generic(
            method, route.url(pk), data=json.dumps(payload), content_type="application/json"
        )

    if name == "health" and response.status_code == 503:
        # Anyone may ask; 503 is the contract's answer when a store is down, not a refusal.
        assert response.json()["status"] == "down"
        expected = 503
    assert response.status_code == expected, (
        f"{method} {route.url(pk)} as {role} ({relation}): "
        f"expected {expected}, got {response.status_code} {response.content[:300]!r}"
    )
    if response.status_code >= 400:
        assert response.json().get("detail"), response.content[:300]
    if method == "GET" or response.status_code >= 300:
        assert snapshot() == before, f"{method} {route.url(pk)} as {role} wrote something"
    else:
        check_effect(route, method, world, role, pk, response.json())


# Methods a route does not declare answer 405 (after the role gate), and write nothing.
PROBE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def undeclared_cases() -> list[Any]:
    return [
        pytest.param(route.name, method, id=f"{method} {route.name}")
        for route in sorted(ROUTES.values(), key=lambda r: r.name)
        for method in PROBE_METHODS
        if method not in route.methods
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name, method", undeclared_cases())
def test_undeclared_methods_are_405_and_write_nothing(world, name, method):
    route = ROUTES[name]
    # A role the route lets past its gate, so the answer is about the method.
    role = "driver" if name == "api:driver-shift" else "manager"
    pk = world.objects(family_of(route))[0] if route.detail else None
    before = snapshot()
    response = api(world, role).generic(
        method, route.url(pk), data="{}", content_type="application/json"
    )
    assert response.status_code == 405, (response.status_code, response.content[:300])
    assert snapshot() == before


# --- lists return exactly the caller's scope -------------------------------------------------


def _ids(client: APIClient, url: str, **query) -> list[int]:
    response = client.get(url, query)
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["next"] is None  # everything fits on one page here
    return sorted(row["id"] for row in body["results"])


def _callers(world: World) -> dict[str, APIClient]:
    return {who: api(world, who) for who in world.users}


@pytest.mark.django_db
def test_appointment_lists_are_the_callers_scope(world):
    everything = sorted(
        [world.own.pk, world.foreign.pk, world.own_untransported.pk, world.crossed.pk]
    )
    expected = {
        "receptionist": everything,
        "manager": everything,
        "therapist": sorted([world.own.pk, world.own_untransported.pk]),
        "other_therapist": sorted([world.foreign.pk, world.crossed.pk]),
        "driver": sorted([world.own.pk, world.crossed.pk]),
        "other_driver": sorted([world.foreign.pk, world.crossed.pk]),
    }
    for who, client in _callers(world).items():
        assert _ids(client, "/api/appointments/") == expected[who], who
        # A filter narrows the scope; it never widens it.
        for user in world.users.values():
            filtered = _ids(client, "/api/appointments/", therapist=user.pk)
            assert set(filtered) <= set(expected[who]), (who, user.username)
    # The day filter keeps the scope too.
    day = tomorrow_at(0).date().isoformat()
    for who, client in _callers(world).items():
        assert _ids(client, "/api/appointments/", date=day) == expected[who], who
    # The client filter (the desk's client page, issue 13) narrows to that client's
    # appointments within the caller's scope.
    of_client = {
        world.client.pk: {world.own.pk, world.own_untransported.pk},
        world.other_client.pk: {world.foreign.pk, world.crossed.pk},
    }
    for who, caller in _callers(world).items():
        for client_id, theirs in of_client.items():
            response = caller.get("/api/appointments/", {"client": client_id})
            assert response.status_code == 200, (who, response.content[:300])
            filtered = sorted(row["id"] for row in response.json()["results"])
            assert filtered == sorted(theirs & set(expected[who])), (who, client_id)


@pytest.mark.django_db
def test_trip_lists_are_the_callers_scope(world):
    everything = sorted(Trip.objects.values_list("pk", flat=True))
    expected = {
        "receptionist": everything,
        "manager": everything,
        "driver": sorted(
            Trip.objects.filter(driver=world.users["driver"]).values_list("pk", flat=True)
        ),
        "other_driver": sorted(
            Trip.objects.filter(driver=world.users["other_driver"]).values_list("pk", flat=True)
        ),
    }
    assert len(expected["driver"]) == 3 and len(everything) == 6
    callers = _callers(world)
    for who, ids in expected.items():
        assert _ids(callers[who], "/api/trips/") == ids, who
    for who in ("therapist", "other_therapist"):
        assert callers[who].get("/api/trips/").status_code == 403


def _entitled(user: User, event: StreamEvent) -> bool:
    """Who an event concerns, read from what it is about (not from its recipient rows)."""
    data = event.data
    if event.type == "driver.queue":
        listed = {entry["driver"] for entry in data["queue"]} | set(data["left"])
        return user.pk in listed
    if event.appointment_id is not None:
        drivers = {trip["driver"] for trip in data["trips"]}
        return user.pk == data["therapist"] or user.pk in drivers
    if event.trip_id is not None:
        return user.pk in (
            data["driver"],
            Trip.objects.get(pk=event.trip_id).appointment.therapist_id,
        )
    return False


@pytest.mark.django_db
def test_event_catch_up_is_the_callers_scope(world):
    events = list(StreamEvent.objects.order_by("seq"))
    assert {e.type for e in events} >= {
        "appointment.created",
        "appointment.updated",
        "trip.assigned",
        "driver.queue",
    }
    for who, client in _callers(world).items():
        response = client.get("/api/events/", {"after": 0})
        assert response.status_code == 200, response.content[:300]
        got = [e["seq"] for e in response.json()["events"]]
        user = world.users[who]
        if user.is_desk:
            wanted = [e.seq for e in events]
        else:
            wanted = [e.seq for e in events if _entitled(user, e)]
        assert got == wanted, who
        assert wanted, f"{who} should have something in their stream"
        if user.role == "driver":
            assert all("notes" not in e["data"] for e in response.json()["events"]), who


# --- ids that name nothing, however odd ----------------------------------------------------------

ODD_IDS = ("0", "-1", "abc", "1.5", "9" * 30, "%20", "1e3")


def odd_id_cases() -> list[Any]:
    return [
        pytest.param(route.name, method, odd, id=f"{method} {route.name} {odd!r}")
        for route in sorted(ROUTES.values(), key=lambda r: r.name)
        if route.detail
        for method in route.methods
        for odd in ODD_IDS
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name, method, odd", odd_id_cases())
def test_odd_ids_are_404_and_write_nothing(world, name, method, odd):
    route = ROUTES[name]
    # A role the route lets act on its own object, so only the id can refuse.
    role = next(
        role
        for role, expected in EXPECTED[(name, method)].items()
        if isinstance(expected, tuple) and 200 <= expected[0] < 300
    )
    client = api(world, role)
    payload = request_for(route, method, world, role)
    before = snapshot()
    url = route.template.format(pk=odd)
    if method == "GET":
        response = client.get(url, payload)
    else:
        response = client.generic(
            method, url, data=json.dumps(payload), content_type="application/json"
        )
    assert response.status_code == 404, (url, response.status_code, response.content[:300])
    assert response.json().get("detail")
    assert snapshot() == before


# --- what a role sees of an object it may see ---------------------------------------------


@pytest.mark.django_db
def test_a_driver_does_not_get_the_desks_notes_over_rest(world):
    client = api(world, "driver")
    detail = client.get(f"/api/appointments/{world.own.pk}/").json()
    listed = client.get("/api/appointments/").json()["results"]
    streamed = client.get("/api/events/", {"after": 0}).json()["events"]
    assert all("notes" not in e["data"] for e in streamed)  # what the stream already does
    assert "notes" not in detail
    assert all("notes" not in row for row in listed)
