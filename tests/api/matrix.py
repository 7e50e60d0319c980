"""The role matrix as data: every route under /api/ (and /health/) as the URL conf has
it, the status each role gets from it (EXPECTED: add a row here for every route or method
you add; tests/api/test_api_matrix.py fails on a route without one), and the world the
cases run against (one of each role, own and foreign objects). The matrix test and the
schema test (tests/api/test_api_schema.py) share it; the `world` fixture that builds it
once per module is in tests/api/conftest.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

from scheduling.models import (
    Appointment,
    Client,
    DriverProfile,
    Payment,
    Service,
    Trip,
    User,
    Visit,
)
from scheduling.services.appointments import create_appointment, update_appointment_details
from scheduling.services.trips import assign_trip, set_shift
from scheduling.services.visits import SessionAsk, book_visit
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
    # Issue 14: couples and group visits. The desk books and cancels (others are kept off
    # before any lookup); a therapist reads a visit they have a session in, a driver one
    # whose trip they hold.
    ("api:visit-list", "POST"): {**DESK_ONLY, "receptionist": 201, "manager": 201},
    ("api:visit-detail", "GET"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": OWN_ONLY,
        "driver": OWN_ONLY,
    },
    ("api:visit-cancel", "POST"): {
        "anonymous": ANON3,
        "receptionist": DESK_ALL,
        "manager": DESK_ALL,
        "therapist": KEPT_OFF,
        "driver": KEPT_OFF,
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

    # The visits (issue 14), booked on first use in each case (inside its savepoint, so
    # rolled back with it): the other families' scope tests see the world without them.
    visits: tuple[int, int] = (0, 0)

    def objects(self, family: str) -> tuple[int, int]:
        """(own id, foreign id) of a kind of object, from the caller's point of view."""
        if family == "visit":
            return _booked_visits(self)
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


def _booked_visits(world: World) -> tuple[int, int]:
    """(own, foreign): the therapist's couples visit with another therapist, both legs
    driven by the driver; and the other therapist's, driven by the other driver. Two
    days ahead, clear of the appointments; the drivers have cars with two seats."""
    if Visit.objects.filter(pk__in=world.visits).count() == 2:
        return world.visits
    DriverProfile.objects.filter(
        user__in=[world.users["driver"], world.users["other_driver"]]
    ).update(vehicle="car", seats=2)
    start = tomorrow_at(10) + timedelta(days=2)
    pair = []
    for therapist, client, driver in (
        ("therapist", world.client, "driver"),
        ("other_therapist", world.other_client, "other_driver"),
    ):
        partner = factories.therapist(world.service, username=f"partner-of-{therapist}")
        visit = book_visit(
            actor=world.users["receptionist"],
            client_id=client.pk,
            start=start,
            sessions=[
                SessionAsk(world.service.pk, world.users[therapist].pk),
                SessionAsk(world.service.pk, partner.pk),
            ],
            needs_transport=True,
            notes="gate code 1234",
        )
        for trip in visit.trips.all():
            assign_trip(trip_id=trip.pk, driver_id=world.users[driver].pk)
        pair.append(visit.pk)
    world.visits = (pair[0], pair[1])
    return world.visits


def _collected(appointment: Appointment, therapist: User) -> Payment:
    # Written directly: the appointments are not started in this world (the service
    # records money only then); the matrix is about who may verify it.
    return Payment.objects.create(
        appointment=appointment, amount="100.00", method="cash", collected_by=therapist
    )


def family_of(route: Route) -> str:
    """The router's basename: appointment, trip, client, service or staff."""
    return route.name.split(":")[-1].split("-")[0]


def action_of(route: Route) -> str:
    return route.name.split(":")[-1].split("-", 1)[1]


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
