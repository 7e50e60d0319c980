"""The role matrix, generated from the URL conf.

Every route under /api/ (and /health/) × every role × own / foreign / missing object
answers the status API.md promises, and a refused call writes nothing. The routes come
from `get_resolver()`, the expectations from the EXPECTED table in tests/api/matrix.py: a
route (or a method on it) added later without a row there fails
`test_every_route_is_in_the_matrix`, so nothing reaches the API without someone deciding
who may use it and what they see.
List endpoints are checked to return exactly the caller's scope.

Own / foreign: a therapist's own appointment vs another therapist's; a driver's own
appointment (they drive one of its trips) and trip vs another driver's. The desk sees
everything, so its "foreign" object is simply another one it can see. Missing is an id
that names nothing: 404 for a role that may use the route, 403 for a role kept off the
route altogether, 401 for anonymous callers on every route that needs a login.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.urls import resolve
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
    Visit,
    WebhookEvent,
    WorkingHours,
)
from tests.api.matrix import (
    APPOINTMENT_ACTIONS,
    EXPECTED,
    MISSING_ID,
    PASSWORD,
    RELATIONS,
    ROLES,
    ROUTES,
    TRIP_ACTIONS,
    Route,
    World,
    action_of,
    family_of,
    prepare,
    tomorrow_at,
)


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
    Visit,
)


def snapshot() -> dict[str, list[dict]]:
    return {m.__name__: list(m.objects.order_by("pk").values()) for m in SNAPSHOT_MODELS}


# --- what each case sends, and what a success must have done ------------------------------------


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
    if name == "api:visit-list" and method == "POST":
        return {
            "client": world.client.pk,
            "start": (tomorrow_at(17) + timedelta(days=1)).isoformat(),
            "needs_transport": False,
            "sessions": [
                {"service": world.service.pk, "therapist": world.users["therapist"].pk},
                {"service": world.service.pk, "therapist": world.users["other_therapist"].pk},
            ],
        }
    if name == "api:visit-cancel":
        return {"reason": "matrix"}
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
    elif name == "api:visit-list":
        created = Visit.objects.get(pk=body["id"])
        assert created.created_by == world.users[role]
        assert [a["visit"] for a in body["appointments"]] == [created.pk] * 2
        assert created.sessions.filter(status="pending").count() == 2
    elif name == "api:visit-cancel":
        assert set(Visit.objects.get(pk=pk).sessions.values_list("status", flat=True)) == {
            "cancelled"
        }
        assert {a["status"] for a in body["appointments"]} == {"cancelled"}
        assert {t["status"] for t in body["trips"]} == {"cancelled"}
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
        "routes without a row in EXPECTED, tests/api/matrix.py (who may use them, what they "
        f"see): {unplanned}"
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
    ("POST", "/api/visits/"),
    ("GET", "/api/visits/1/"),
    ("POST", "/api/visits/1/cancel/"),
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
