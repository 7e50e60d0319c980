"""Every error case of API.md ("Errors") on every write endpoint and every GET filter.

However malformed the request, the answer is a 4xx with a JSON body carrying `detail`
(and `errors` for a 400), never a 5xx, and nothing is written: the rows of every table a
request could touch are counted before and after.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, partial
from string import Formatter
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling.models import (
    Appointment,
    Client,
    IdempotencyKey,
    Service,
    StreamEvent,
    Transition,
    Trip,
)
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.trips import assign_trip
from tests import factories

pytestmark = pytest.mark.django_db

TABLES = (Appointment, Trip, Transition, StreamEvent, Client, Service, IdempotencyKey)
MB = 1_000_000
HUGE = 10**30
ABSENT = 999_999
NO_ROUTE = "No such API route."


# --- harness ------------------------------------------------------------------------------


def counts() -> dict[str, int]:
    """Rows per table, in one round trip."""
    selects = ", ".join(f'(SELECT count(*) FROM "{m._meta.db_table}")' for m in TABLES)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {selects}")
        row = cursor.fetchone()
    return {m.__name__: n for m, n in zip(TABLES, row, strict=True)}


_clients: dict[int | None, APIClient] = {}


@pytest.fixture(autouse=True)
def _fresh_clients():
    yield
    _clients.clear()


def as_user(user) -> APIClient:
    """A client that returns a 500 as a response (to assert on) instead of raising.

    One per user and test: a client builds the middleware chain on first use, and
    WhiteNoise's (finders on, in tests) stats every static file each time.
    """
    key = None if user is None else user.pk
    if key not in _clients:
        client = APIClient(raise_request_exception=False)
        if user is not None:
            client.force_authenticate(user)
        _clients[key] = client
    return _clients[key]


def assert_error(response, status: int, *fields: str) -> dict:
    """`status`, a JSON object with a non-empty `detail`, and for a 400 `errors` naming
    each of `fields`."""
    assert response.status_code == status, (response.status_code, response.content[:400])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if status == 400:
        assert isinstance(body.get("errors"), dict), body
        for field in fields:
            assert field in body["errors"], (field, body)
            assert all(isinstance(m, str) for m in body["errors"][field]), body
    return body


def local_iso(instant: datetime) -> str:
    return timezone.localtime(instant).isoformat()


class World:
    """Staff of every role, clients, and appointments in the states the tests need, each
    made on first use (most tests need a few of them).

    The therapist, each visit holding her 2 h 45 from leaving base to being back (45
    minutes' travel each way, the hour, the 15-minute buffer): 09:00 `appointment`
    (pending, with transport; its drop-off `trip` is assigned to `driver`, who works all
    day), 11:45 `cancelled`, 17:15 `later` (pending). Free: 14:30 (`free_start`, to
    create) and the cancelled one's 11:45 (`reschedule_start`: cancelled time is free).
    """

    anonymous = None

    def __init__(self, desk, manager, service, therapist, client, at) -> None:
        self.desk, self.manager, self.service = desk, manager, service
        self.therapist, self.client, self.at = therapist, client, at
        self.free_start, self.reschedule_start = at(14, 30), at(11, 45)

    def book(self, start, **fields) -> Appointment:
        return create_appointment(
            actor=self.desk,
            client_id=self.client.pk,
            service_id=self.service.pk,
            therapist_id=self.therapist.pk,
            start=start,
            **fields,
        )

    @cached_property
    def other_therapist(self):
        return factories.therapist(self.service, username="ben")

    @cached_property
    def driver(self):
        return factories.driver(username="dan")

    @cached_property
    def other_driver(self):
        return factories.driver(username="dora")

    @cached_property
    def other_client(self):
        return factories.ClientFactory(phone="+639181234567")

    @cached_property
    def inactive_service(self):
        return factories.ServiceFactory(name="Retired", active=False)

    @cached_property
    def appointment(self) -> Appointment:
        _ = self.driver  # hired first: capacity is checked at booking
        appointment = self.book(self.at(9), needs_transport=True)
        dropoff = appointment.trips.get(leg="dropoff")
        assign_trip(trip_id=dropoff.pk, driver_id=self.driver.pk)
        return appointment

    @cached_property
    def trip(self) -> Trip:
        return self.appointment.trips.get(leg="dropoff")

    @cached_property
    def queued_trip(self) -> Trip:
        return self.appointment.trips.get(leg="pickup")

    @cached_property
    def cancelled(self) -> Appointment:
        appointment = self.book(self.at(11, 45))
        act_on_appointment(actor=self.desk, appointment_id=appointment.pk, action="cancel")
        return appointment

    @cached_property
    def later(self) -> Appointment:
        return self.book(self.at(17, 15))

    def everything(self) -> World:
        for name in dir(type(self)):
            if isinstance(getattr(type(self), name), cached_property):
                getattr(self, name)
        return self


@pytest.fixture
def world(desk, manager, service, therapist, client_record, tomorrow_at) -> World:
    return World(desk, manager, service, therapist, client_record, tomorrow_at)


@pytest.fixture
def unchanged(world) -> Callable[[], None]:
    """Call it after the requests: every table has the rows it had before them."""
    world.everything()
    before = counts()

    def check() -> None:
        assert counts() == before

    return check


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: Callable[[World], str]
    actor: str  # an attribute of the world
    body: Callable[[World], dict]  # a valid body

    def prepare(self, w, data: bytes | None = None, content_type="application/json"):
        """The request, ready to send: every object it names exists already."""
        client = as_user(getattr(w, self.actor))
        if data is None:
            data = json.dumps(self.body(w)).encode()
        return partial(getattr(client, self.method), self.url(w), data, content_type=content_type)

    def send(self, w, data: bytes | None = None, content_type="application/json"):
        return self.prepare(w, data, content_type)()


def appointment_action(action: str, actor: str) -> Endpoint:
    return Endpoint(
        "post",
        lambda w: f"/api/appointments/{w.appointment.pk}/{action}/",
        actor,
        lambda w: {"reason": "client called"},
    )


def trip_action(action: str) -> Endpoint:
    return Endpoint("post", lambda w: f"/api/trips/{w.trip.pk}/{action}/", "driver", lambda w: {})


def booking_body(w: World) -> dict:
    _ = w.driver  # with transport, a driver who works then must exist (capacity is checked)
    return {
        "client": w.client.pk,
        "service": w.service.pk,
        "therapist": w.therapist.pk,
        "start": w.free_start.isoformat(),
        "address": "12 Mabini St, Makati",
        "notes": "Bring oil",
        "needs_transport": True,
    }


ENDPOINTS: dict[str, Endpoint] = {
    "clients.create": Endpoint(
        "post",
        lambda w: "/api/clients/",
        "desk",
        lambda w: {
            "name": "Juan Dela Cruz",
            "phone": "+639171110000",
            "email": "juan@example.com",
            "address": "1 Rizal Ave, Makati",
            "notes": "Prefers mornings",
        },
    ),
    "clients.patch": Endpoint(
        "patch", lambda w: f"/api/clients/{w.client.pk}/", "desk", lambda w: {"notes": "VIP"}
    ),
    "services.create": Endpoint(
        "post",
        lambda w: "/api/services/",
        "manager",
        lambda w: {
            "name": "Hot stone",
            "duration_minutes": 90,
            "price": "1500.00",
            "buffer_minutes": 15,
            "active": True,
        },
    ),
    "appointments.create": Endpoint(
        "post", lambda w: "/api/appointments/", "desk", lambda w: booking_body(w)
    ),
    "appointments.patch": Endpoint(
        "patch",
        lambda w: f"/api/appointments/{w.appointment.pk}/",
        "desk",
        lambda w: {"notes": "Gate code 1234", "address": "14 Mabini St"},
    ),
    "appointments.accept": appointment_action("accept", "therapist"),
    "appointments.reject": appointment_action("reject", "therapist"),
    "appointments.start": appointment_action("start", "therapist"),
    "appointments.complete": appointment_action("complete", "therapist"),
    "appointments.cancel": appointment_action("cancel", "desk"),
    "appointments.no-show": appointment_action("no-show", "desk"),
    "appointments.reschedule": Endpoint(
        "post",
        lambda w: f"/api/appointments/{w.appointment.pk}/reschedule/",
        "desk",
        lambda w: {"start": w.reschedule_start.isoformat(), "reason": "client asked"},
    ),
    "trips.depart": trip_action("depart"),
    "trips.arrive": trip_action("arrive"),
    "trips.complete": trip_action("complete"),
    "drivers.shift": Endpoint(
        "post", lambda w: "/api/drivers/me/shift/", "driver", lambda w: {"on_shift": True}
    ),
    "auth.token": Endpoint(
        "post",
        lambda w: "/api/auth/token/",
        "anonymous",
        lambda w: {"username": "desk", "password": "pw"},
    ),
}
# Endpoints whose body is optional (an action's reason).
ACTIONS = {
    name
    for name in ENDPOINTS
    if name.startswith(("appointments.", "trips."))
    and name.split(".")[1] not in {"create", "patch", "reschedule"}
}
# What a valid body gets: most succeed; some actions are not allowed from the fixture's
# status, which is itself the contract's invalid-transition case.
VALID_OUTCOME = {
    "clients.create": 201,
    "services.create": 201,
    "appointments.create": 201,
    "appointments.start": 409,
    "appointments.complete": 409,
    "appointments.no-show": 409,
    "trips.arrive": 409,
    "trips.complete": 409,
}


def problem(response, status: int, *fields: str) -> str | None:
    """What is wrong with `response` as the contract's error `status`, or None."""
    try:
        assert_error(response, status, *fields)
    except AssertionError as exc:
        return str(exc)[:300]
    return None


def check_all(w, cases) -> None:
    """Send each (label, send) case; collect every answer that is not the expected error
    or that wrote something, and fail once with all of them."""
    before = counts()
    problems = []
    for label, send, status, fields in cases:
        issue = problem(send(), status, *fields)
        if issue is None and counts() != before:
            issue = f"wrote rows: {before} -> {counts()}"
        if issue:
            problems.append(f"{label}: {issue}")
    assert not problems, "\n".join(problems)


# --- every write endpoint: its valid body works (so the failures below are the input's) --


@pytest.mark.parametrize("name", ENDPOINTS)
def test_valid_body_is_accepted(world, name):
    response = ENDPOINTS[name].send(world)
    expected = VALID_OUTCOME.get(name, 200)
    assert response.status_code == expected, response.content[:400]
    if expected == 409:
        assert response.json()["code"] == "invalid_transition"


# --- malformed bodies: 400, never 5xx, nothing written --------------------------------------

MALFORMED = {
    "truncated": b'{"notes": "x"',
    "not-json": b"{not json}",
    "single-quotes": b"{'notes': 'x'}",
    "trailing-comma": b'{"notes": "x",}',
    "non-utf8": b"\xff\xfe\x00garbage",
    "non-utf8-in-string": b'{"notes": "\xff\xfe"}',
    "nan": b'{"notes": NaN}',
    "infinity": b'{"price": Infinity}',
    "list-of-ints": b"[1, 2]",
    "list-of-objects": b'[{"notes": "x"}]',
    "string": b'"text"',
    "number": b"42",
    "true": b"true",
    # Falsy values that are not objects (see the pinned bug below for actions).
    "list": b"[]",
    "empty-string": b'""',
    "zero": b"0",
    "false": b"false",
    "null": b"null",
}
FALSY = ("list", "empty-string", "zero", "false", "null")
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("name", ENDPOINTS)
def test_malformed_body_is_400_and_nothing_written(world, name):
    endpoint = ENDPOINTS[name]
    kinds = [k for k in MALFORMED if not (name in ACTIONS and k in FALSY)]
    check_all(
        world,
        [(k, endpoint.prepare(world, MALFORMED[k]), 400, ()) for k in kinds],
    )


@pytest.mark.parametrize("kind", FALSY)
@pytest.mark.parametrize("name", ["appointments.accept", "trips.depart"])
def test_falsy_non_object_body_on_an_action_is_400(world, name, kind):
    check_all(world, [(kind, ENDPOINTS[name].prepare(world, MALFORMED[kind]), 400, ())])


@pytest.mark.parametrize("name", ["clients.create", "appointments.create", "auth.token"])
def test_deeply_nested_json_is_400(world, name):
    check_all(world, [("deep", ENDPOINTS[name].prepare(world, DEEP), 400, ())])


def test_body_over_the_upload_limit_is_400(world):
    data = b'{"notes": "' + b"x" * 3 * MB + b'"}'  # Django's limit is 2.5 MB
    check_all(
        world,
        [(n, e.prepare(world, data), 400, ()) for n, e in ENDPOINTS.items()],
    )


def _multipart(body: dict) -> bytes:
    return encode_multipart(BOUNDARY, {k: str(v) for k, v in body.items()})


CONTENT_TYPES = {
    "form": ("application/x-www-form-urlencoded", lambda body: urlencode(body).encode()),
    "multipart": (MULTIPART_CONTENT, _multipart),
    "text": ("text/plain", lambda body: json.dumps(body).encode()),
    "xml": ("application/xml", lambda body: b"<notes>x</notes>"),
}


def test_wrong_content_type_is_415_and_nothing_written(world):
    cases = []
    for name, endpoint in ENDPOINTS.items():
        body = endpoint.body(world) or {"reason": "x"}  # non-empty, so it is parsed
        for kind, (content_type, encode) in CONTENT_TYPES.items():
            send = endpoint.prepare(world, encode(body), content_type=content_type)
            cases.append((f"{name} {kind}", send, 415, ()))
    check_all(world, cases)


# --- wrong, missing and absurd fields: 400 naming the field ----------------------------------

MISSING = object()
NUL = "a\x00b"
SURROGATE = "\ud800"

FIELD_CASES = {
    "clients.create": {
        "name": [MISSING, None, "", "   ", [], {}, True, "x" * 201, "x" * MB, NUL],
        "phone": [MISSING, None, "", "not a phone", "12", HUGE, "+63" + "9" * 40, NUL, []],
        "email": ["nope", "a" * 300 + "@example.com", 42, NUL],
        "address": ["x" * MB, NUL, SURROGATE, ["x"], {"a": 1}, None],
        "notes": ["x" * MB, NUL, [], None],
    },
    "clients.patch": {
        "name": ["", "   ", None, "x" * MB, NUL, []],
        "phone": ["", "not a phone", None, NUL],
        "email": ["nope", NUL],
        "address": ["x" * MB, NUL, {}],
        "notes": ["x" * MB, NUL, None],
    },
    "services.create": {
        "name": [MISSING, "", "  ", "x" * 121, "x" * MB, NUL, None],
        "duration_minutes": [MISSING, -30, 0, 24 * 60 + 1, HUGE, -HUGE, "abc", 1.5, None],
        "price": [
            MISSING,
            "-1.00",
            -1,
            -HUGE,
            "abc",
            HUGE,
            "1e400",
            "NaN",
            "Infinity",
            "-Infinity",
            "1.999",
            None,
            [],
        ],
        "buffer_minutes": [-5, -HUGE, HUGE, 24 * 60 + 1, "abc", None],
        "active": ["maybe", [], None],
    },
    "appointments.create": {
        "client": [MISSING, None, "abc", 0, -1, HUGE, ABSENT, 1.5, 1e308, True, [1], {}],
        "service": [MISSING, None, "abc", -1, HUGE, ABSENT],
        # Omitted or null books any free therapist (docs/api.md), so neither is an error.
        "therapist": ["abc", 0, HUGE, ABSENT],
        "start": [
            MISSING,
            None,
            "",
            "yesterday",
            "2030-05-01T10:00:00",  # no offset
            "2030-02-30T10:00:00+08:00",
            "2030-05-01T10:00:00+99:00",
            "10000-01-01T10:00:00+08:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "2020-01-01T10:00:00+08:00",  # the past
            "2999-12-31T10:00:00+08:00",  # beyond the booking horizon
            1_700_000_000,
            NUL,
        ],
        "address": ["x" * MB, NUL, SURROGATE, ["x"], {"a": 1}, None],
        "notes": ["x" * MB, NUL, [], None],
        "needs_transport": ["maybe", 2, [], None],
    },
    "appointments.patch": {
        "notes": ["x" * MB, NUL, None, ["x"]],
        "address": ["x" * MB, NUL, {}, None],
        "status": ["completed"],
        "price": ["0.00"],
        "therapist": [1],
        "start": ["2030-05-01T10:00:00+08:00"],
        "payment_status": ["paid"],
    },
    "appointments.reschedule": {
        "start": [
            MISSING,
            None,
            "tomorrow",
            "2030-05-01T10:00:00",
            "10000-01-01T10:00:00+08:00",
            "9999-12-31T23:59:59-14:00",
            "2020-01-01T10:00:00+08:00",
            HUGE,
        ],
        "reason": ["x" * MB, NUL, ["x"], None],
    },
    "drivers.shift": {"on_shift": [MISSING, None, "maybe", 2, [], {}, "x" * MB]},
    "auth.token": {
        "username": [MISSING, None, "", [], "x" * MB, NUL],
        "password": [MISSING, None, "", {}, "x" * MB, NUL],
    },
    **{
        f"appointments.{action}": {"reason": ["x" * MB, NUL, ["x"], {}, None]}
        for action in ("accept", "reject", "start", "complete", "cancel", "no-show")
    },
    **{
        f"trips.{action}": {"reason": ["x" * MB, NUL, [], None]}
        for action in ("depart", "arrive", "complete")
    },
}


@pytest.mark.parametrize("name", FIELD_CASES)
def test_bad_field_is_400_naming_it_and_nothing_written(world, name):
    endpoint = ENDPOINTS[name]
    cases = []
    for field, values in FIELD_CASES[name].items():
        for value in values:
            body = endpoint.body(world)
            if value is MISSING:
                body.pop(field)
            else:
                body[field] = value
            label = f"{field}={'<missing>' if value is MISSING else repr(value)[:30]}"
            send = endpoint.prepare(world, json.dumps(body).encode())
            cases.append((label, send, 400, (field,)))
    check_all(world, cases)


def test_unknown_and_unsuitable_ids_are_400(world):
    body = ENDPOINTS["appointments.create"].body(world)
    client = as_user(world.desk)
    changes = [
        ({"service": world.inactive_service.pk}, "service"),  # no longer offered
        ({"therapist": world.desk.pk}, "therapist"),  # not a therapist
        ({"therapist": factories.therapist(world.inactive_service).pk}, "therapist"),
        ({"client": ABSENT}, "client"),
    ]
    check_all(
        world,
        [
            (
                str(change),
                partial(client.post, "/api/appointments/", {**body, **change}, format="json"),
                400,
                (field,),
            )
            for change, field in changes
        ],
    )


def test_duplicate_phone_and_service_name_are_400(world):
    desk, manager = as_user(world.desk), as_user(world.manager)
    client_body = {**ENDPOINTS["clients.create"].body(world), "phone": world.client.phone}
    service_body = {**ENDPOINTS["services.create"].body(world), "name": world.service.name}
    url = f"/api/clients/{world.other_client.pk}/"
    check_all(
        world,
        [
            (
                "new client",
                partial(desk.post, "/api/clients/", client_body, format="json"),
                400,
                ("phone",),
            ),
            (
                "patched client",
                partial(desk.patch, url, {"phone": world.client.phone}, format="json"),
                400,
                ("phone",),
            ),
            (
                "service",
                partial(manager.post, "/api/services/", service_body, format="json"),
                400,
                ("name",),
            ),
        ],
    )


def test_emoji_and_other_unicode_are_data_not_errors(world):
    desk = as_user(world.desk)
    name = "Ana 💆‍♀️ Núñez 王"
    client = desk.post("/api/clients/", {"name": name, "phone": "+639171110009"}, format="json")
    assert client.status_code == 201 and client.json()["name"] == name
    booking = {**ENDPOINTS["appointments.create"].body(world), "notes": "🙏 gate 🔑 #4"}
    created = desk.post("/api/appointments/", booking, format="json")
    assert created.status_code == 201 and created.json()["notes"] == "🙏 gate 🔑 #4"
    assert desk.get("/api/clients/", {"q": "💆"}).status_code == 200


# --- conflicts: 409 with what is in the way -------------------------------------------------


def test_overlapping_booking_is_409_with_the_contract_body(world, unchanged):
    body = {**ENDPOINTS["appointments.create"].body(world), "start": world.at(10, 30).isoformat()}
    response = as_user(world.desk).post("/api/appointments/", body, format="json")
    assert response.status_code == 409
    payload = response.json()
    assert set(payload) == {"code", "detail", "reason", "conflicts"}
    assert payload["code"] == "conflict" and payload["detail"]
    assert payload["reason"] == "therapist_busy"
    blocking = world.appointment
    assert payload["conflicts"] == [
        {
            "appointment": blocking.pk,
            "start": local_iso(blocking.busy_from),  # travel there included
            "end": local_iso(blocking.busy_until),  # buffer and travel back included
        }
    ]
    for item in payload["conflicts"]:  # ISO 8601 with an offset
        assert datetime.fromisoformat(item["start"]).utcoffset() is not None
    unchanged()


def test_reschedule_into_a_taken_slot_is_409_naming_it(world, unchanged):
    url = f"/api/appointments/{world.appointment.pk}/reschedule/"
    body = {"start": world.at(16, 30).isoformat()}
    response = as_user(world.desk).post(url, body, format="json")
    assert response.status_code == 409
    payload = response.json()
    assert set(payload) == {"code", "detail", "reason", "conflicts"}
    assert (payload["code"], payload["reason"]) == ("conflict", "therapist_busy")
    assert [c["appointment"] for c in payload["conflicts"]] == [world.later.pk]
    assert set(payload["conflicts"][0]) == {"appointment", "start", "end"}
    unchanged()


def test_outside_working_hours_is_409_conflict(world, unchanged):
    body = {**ENDPOINTS["appointments.create"].body(world), "start": world.at(21).isoformat()}
    response = as_user(world.desk).post("/api/appointments/", body, format="json")
    assert response.status_code == 409
    payload = response.json()
    assert payload["code"] == "conflict" and payload["detail"]
    assert payload["reason"] == "not_working"
    assert payload["conflicts"] == []
    unchanged()


# --- invalid transitions: 409 with the current status ---------------------------------------

TRANSITIONS = [
    ("therapist", "appointment", "start", "pending"),
    ("therapist", "appointment", "complete", "pending"),
    ("desk", "appointment", "no-show", "pending"),
    ("desk", "cancelled", "cancel", "cancelled"),
    ("therapist", "cancelled", "accept", "cancelled"),
    ("therapist", "cancelled", "reject", "cancelled"),
    ("desk", "cancelled", "reschedule", "cancelled"),
    ("driver", "trip", "arrive", "assigned"),
    ("driver", "trip", "complete", "assigned"),
]


def test_action_from_the_wrong_status_is_409_with_it(world, unchanged):
    problems = []
    for actor, target, action, current in TRANSITIONS:
        obj = getattr(world, target)
        kind = "trips" if target == "trip" else "appointments"
        body = {"start": world.reschedule_start.isoformat()} if action == "reschedule" else {}
        url = f"/api/{kind}/{obj.pk}/{action}/"
        response = as_user(getattr(world, actor)).post(url, body, format="json")
        payload = response.json()
        expected = {
            "code": "invalid_transition",
            "detail": payload.get("detail"),
            "status": current,
        }
        if response.status_code != 409 or payload != expected or not payload["detail"]:
            problems.append(f"{actor} {action} {target}: {response.status_code} {payload}")
    assert not problems, "\n".join(problems)
    unchanged()


# --- role not allowed: 403 {"detail"}; outside scope or absent: 404 {"detail"} ---------------

FORBIDDEN = [
    ("therapist", "post", "/api/appointments/", "create"),
    ("driver", "post", "/api/appointments/", "create"),
    ("desk", "post", "/api/appointments/{appointment}/accept/", None),
    ("manager", "post", "/api/appointments/{appointment}/reject/", None),
    ("desk", "post", "/api/appointments/{appointment}/start/", None),
    ("therapist", "post", "/api/appointments/{appointment}/cancel/", None),
    ("driver", "post", "/api/appointments/{appointment}/cancel/", None),
    ("driver", "post", "/api/appointments/{appointment}/accept/", None),
    ("therapist", "post", "/api/appointments/{appointment}/reschedule/", "reschedule"),
    ("driver", "patch", "/api/appointments/{appointment}/", "patch"),
    ("therapist", "post", "/api/clients/", "client"),
    ("driver", "patch", "/api/clients/{client}/", "patch"),
    ("desk", "post", "/api/services/", "service"),
    ("therapist", "post", "/api/services/", "service"),
    ("desk", "post", "/api/trips/{trip}/depart/", None),
    ("manager", "post", "/api/trips/{trip}/depart/", None),
    ("therapist", "post", "/api/trips/{trip}/depart/", None),
    ("desk", "post", "/api/drivers/me/shift/", "shift"),
    ("therapist", "post", "/api/drivers/me/shift/", "shift"),
    ("therapist", "get", "/api/clients/", None),
    ("driver", "get", "/api/clients/{client}/", None),
    ("therapist", "get", "/api/staff/", None),
    ("driver", "get", "/api/availability/?service={service}&date=2030-05-01", None),
    ("therapist", "get", "/api/trips/", None),
    # An action the role may never take: 403 before the id is even looked up.
    ("desk", "post", "/api/appointments/987654321/accept/", None),
    ("other_driver", "post", "/api/appointments/{appointment}/cancel/", None),
    ("other_therapist", "post", "/api/appointments/{appointment}/reschedule/", "reschedule"),
    ("manager", "post", "/api/trips/987654321/arrive/", None),
]
OUT_OF_SCOPE = [
    ("other_therapist", "get", "/api/appointments/{appointment}/"),
    ("other_therapist", "patch", "/api/appointments/{appointment}/"),
    ("other_therapist", "post", "/api/appointments/{appointment}/accept/"),
    ("other_therapist", "post", "/api/appointments/{appointment}/reject/"),
    ("other_driver", "get", "/api/appointments/{appointment}/"),
    ("other_driver", "patch", "/api/appointments/{appointment}/"),
    ("other_driver", "post", "/api/trips/{trip}/depart/"),
    ("other_driver", "get", "/api/trips/{trip}/"),
    ("driver", "post", "/api/trips/{queued_trip}/depart/"),  # assigned to nobody
]
ABSENT_IDS = [ABSENT, HUGE, -1, 0, "abc", "%00", "1.5"]
DETAIL_ROUTES = [
    ("desk", "get", "/api/appointments/{id}/"),
    ("desk", "patch", "/api/appointments/{id}/"),
    ("therapist", "post", "/api/appointments/{id}/accept/"),
    ("desk", "post", "/api/appointments/{id}/cancel/"),
    ("desk", "post", "/api/appointments/{id}/reschedule/"),
    ("desk", "get", "/api/clients/{id}/"),
    ("desk", "patch", "/api/clients/{id}/"),
    ("desk", "get", "/api/services/{id}/"),
    ("desk", "get", "/api/staff/{id}/"),
    ("driver", "post", "/api/trips/{id}/depart/"),
    ("desk", "get", "/api/trips/{id}/"),
]


def fill(url: str, w: World, **more) -> str:
    """`url` with its {placeholders} filled; only the objects it names are made."""
    ids = {
        "appointment": lambda: w.appointment.pk,
        "client": lambda: w.client.pk,
        "trip": lambda: w.trip.pk,
        "queued_trip": lambda: w.queued_trip.pk,
        "service": lambda: w.service.pk,
    }
    names = {name for _, name, _, _ in Formatter().parse(url) if name}
    return url.format(**{n: more[n] if n in more else ids[n]() for n in names})


def body_for(kind: str | None, w) -> dict:
    return {
        None: {"start": w.reschedule_start.isoformat(), "notes": "x"},
        "create": ENDPOINTS["appointments.create"].body(w),
        "reschedule": {"start": w.reschedule_start.isoformat()},
        "patch": {"notes": "x"},
        "client": ENDPOINTS["clients.create"].body(w),
        "service": ENDPOINTS["services.create"].body(w),
        "shift": {"on_shift": True},
    }[kind]


def request(w, actor: str, method: str, url: str, body: dict | None = None):
    client = as_user(getattr(w, actor))
    if method == "get":
        return partial(client.get, url)
    return partial(getattr(client, method), url, body or {}, format="json")


def detail_only(status: int):
    def check(response) -> str | None:
        if response.status_code != status:
            return f"{response.status_code} {response.content[:200]!r}"
        body = response.json()
        if set(body) != {"detail"} or not body["detail"]:
            return f"body {body}"
        return None

    return check


def check_each(w, cases, check) -> None:
    before = counts()
    problems = [f"{label}: {issue}" for label, send in cases if (issue := check(send()))]
    assert not problems, "\n".join(problems)
    assert counts() == before


def test_role_not_allowed_is_403_detail_only(world):
    cases = [
        (
            f"{actor} {method} {url}",
            request(world, actor, method, fill(url, world), body_for(kind, world)),
        )
        for actor, method, url, kind in FORBIDDEN
    ]
    check_each(world, cases, detail_only(403))


def test_outside_scope_is_404_detail_only(world):
    cases = [
        (
            f"{actor} {method} {url}",
            request(world, actor, method, fill(url, world), body_for(None, world)),
        )
        for actor, method, url in OUT_OF_SCOPE
    ]
    check_each(world, cases, detail_only(404))


@pytest.mark.parametrize("actor, method, url", DETAIL_ROUTES)
def test_absent_object_is_404_detail_only(world, actor, method, url):
    cases = [
        (str(ident), request(world, actor, method, url.format(id=ident), body_for(None, world)))
        for ident in ABSENT_IDS
    ]
    check_each(world, cases, detail_only(404))


def json_404(response) -> str | None:
    if response.status_code != 404:
        return f"{response.status_code} {response.content[:200]!r}"
    if not response["Content-Type"].startswith("application/json"):
        return f"content type {response['Content-Type']}"
    return None if response.json().get("detail") else f"body {response.content[:200]!r}"


def test_unknown_route_is_json_404(world):
    routes = [
        ("get", "/api/nothing-here/"),
        ("post", "/api/nothing-here/"),
        ("get", "/api/"),
        ("post", "/api/appointments/{appointment}/fly/"),
        ("post", "/api/trips/{trip}/cancel/"),  # the desk cancels appointments, not trips
        ("get", "/api/appointments/{appointment}/trips/"),
        ("get", "/api/appointments.json"),
        ("get", "/api/" + "x" * 2_000 + "/"),
        ("get", "/api/%00/"),
    ]
    # Real ids written so that only Python's int() reads them as numbers: ids are ASCII
    # digits, so these name no object.
    for url, pk in [
        ("/api/appointments/{}/", world.appointment.pk),
        ("/api/clients/{}/", world.client.pk),
        ("/api/trips/{}/", world.trip.pk),
    ]:
        routes += [
            ("get", url.format(str(pk).translate(FULLWIDTH))),
            ("get", url.format(str(pk).translate(ARABIC_INDIC))),
            ("get", url.format(f"+{pk}")),
            ("get", url.format(f"0_{pk}")),
        ]
    cases = [(f"{m} {u[:60]}", request(world, "desk", m, fill(u, world))) for m, u in routes]
    check_each(world, cases, json_404)


FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_method_not_allowed_is_405_json(world):
    routes = [
        ("desk", "delete", "/api/appointments/{appointment}/"),
        ("desk", "put", "/api/appointments/{appointment}/"),
        ("desk", "delete", "/api/clients/{client}/"),
        ("desk", "put", "/api/clients/{client}/"),
        ("manager", "patch", "/api/services/{service}/"),
        ("manager", "delete", "/api/services/{service}/"),
        ("desk", "post", "/api/staff/"),
        ("desk", "post", "/api/trips/"),
        ("desk", "get", "/api/appointments/{appointment}/cancel/"),
        ("driver", "put", "/api/drivers/me/shift/"),
        ("desk", "post", "/api/events/"),
        ("desk", "post", "/api/availability/"),
        ("anonymous", "get", "/api/auth/token/"),
    ]
    cases = [(f"{a} {m} {u}", request(world, a, m, fill(u, world))) for a, m, u in routes]

    def check(response) -> str | None:
        if response.status_code != 405:
            return f"{response.status_code} {response.content[:200]!r}"
        return None if response.json().get("detail") else "no detail"

    check_each(world, cases, check)


def test_request_pickup_errors(world):
    """The action API.md lists last: its errors have the contract's shapes too."""
    world.everything()

    def pickup(actor: str, appointment_id) -> tuple[int, dict]:
        url = f"/api/appointments/{appointment_id}/request-pickup/"
        response = as_user(getattr(world, actor)).post(url)
        return response.status_code, response.json()

    before = counts()
    status, body = pickup("therapist", world.appointment.pk)  # pending: not yet
    assert status != 404 or body.get("detail") != NO_ROUTE, "no route for request-pickup"
    assert (status, body) == (
        409,
        {"code": "invalid_transition", "detail": body["detail"], "status": "pending"},
    )
    status, body = pickup("therapist", world.later.pk)  # no transport booked
    assert status == 400 and body["detail"] and body["errors"], body
    for actor, target, expected in [
        ("driver", world.appointment.pk, 403),  # sees it (drives it), may not ask
        ("other_therapist", world.appointment.pk, 404),
        ("other_driver", world.appointment.pk, 404),
        ("desk", ABSENT, 404),
        ("desk", "abc", 404),
    ]:
        status, body = pickup(actor, target)
        assert status == expected and set(body) == {"detail"}, (actor, status, body)
    assert counts() == before


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_request_pickup_with_a_malformed_body_is_400(world, data):
    appointment = world.appointment
    act_on_appointment(actor=world.therapist, appointment_id=appointment.pk, action="accept")
    url = f"/api/appointments/{appointment.pk}/request-pickup/"
    response = as_user(world.therapist).post(url, data, content_type="application/json")
    assert_error(response, 400)


# --- GET filters -----------------------------------------------------------------------------

BAD_QUERIES = [
    ("/api/appointments/", "date=2030-13-45", "date"),
    ("/api/appointments/", "date=2030-02-30", "date"),
    ("/api/appointments/", "date=10000-01-01", "date"),
    ("/api/appointments/", "date=9999-12-31", "date"),
    ("/api/appointments/", "date=0001-01-01", "date"),
    ("/api/appointments/", "date=1999-12-31", "date"),
    ("/api/appointments/", "date=tomorrow", "date"),
    ("/api/appointments/", "date=%00", "date"),
    ("/api/appointments/", "date=%ff%fe", "date"),
    ("/api/appointments/", "date=" + "9" * 100_000, "date"),
    ("/api/appointments/", "status=bogus", "status"),
    ("/api/appointments/", "status=PENDING", "status"),
    ("/api/appointments/", "status=%00", "status"),
    ("/api/appointments/", "status=" + "x" * 100_000, "status"),
    ("/api/appointments/", "therapist=abc", "therapist"),
    ("/api/appointments/", "therapist=-1", "therapist"),
    ("/api/appointments/", "therapist=0", "therapist"),
    ("/api/appointments/", f"therapist={HUGE}", "therapist"),
    ("/api/appointments/", "therapist=1.5", "therapist"),
    ("/api/appointments/", "therapist=" + "9" * 100_000, "therapist"),
    ("/api/availability/", "date=2030-05-01", "service"),
    ("/api/availability/", "service={service}", "date"),
    ("/api/availability/", "service=abc&date=2030-05-01", "service"),
    ("/api/availability/", "service=-1&date=2030-05-01", "service"),
    ("/api/availability/", f"service={HUGE}&date=2030-05-01", "service"),
    ("/api/availability/", f"service={ABSENT}&date=2030-05-01", "service"),
    ("/api/availability/", "service={service}&date=2030-13-01", "date"),
    ("/api/availability/", "service={service}&date=9999-12-31", "date"),
    ("/api/availability/", "service={service}&date=0001-01-01", "date"),
    ("/api/availability/", "service={service}&date=%00", "date"),
    ("/api/availability/", "service={service}&date=2030-05-01&therapist=abc", "therapist"),
    ("/api/availability/", "service={service}&date=2030-05-01&therapist=0", "therapist"),
    ("/api/availability/", f"service={{service}}&date=2030-05-01&therapist={HUGE}", "therapist"),
    (
        "/api/availability/",
        "service={service}&date=2030-05-01&needs_transport=maybe",
        "needs_transport",
    ),
    (
        "/api/availability/",
        "service={service}&date=2030-05-01&needs_transport=2",
        "needs_transport",
    ),
    ("/api/availability/", "service={service}&date=2030-05-01&client=abc", "client"),
    ("/api/availability/", f"service={{service}}&date=2030-05-01&client={ABSENT}", "client"),
    ("/api/availability/", f"service={{service}}&date=2030-05-01&client={HUGE}", "client"),
    ("/api/availability/", "service={service}&date=2030-05-01&area=abc", "area"),
    ("/api/availability/", "service={service}&date=2030-05-01&area=0", "area"),
    ("/api/availability/", f"service={{service}}&date=2030-05-01&area={ABSENT}", "area"),
    ("/api/availability/", f"service={{service}}&date=2030-05-01&area={HUGE}", "area"),
    ("/api/events/", "after=-1", "after"),
    ("/api/events/", "after=abc", "after"),
    ("/api/events/", "after=1.5", "after"),
    ("/api/events/", f"after={HUGE}", "after"),
    ("/api/events/", "after=%00", "after"),
    ("/api/events/", "limit=0", "limit"),
    ("/api/events/", "limit=-5", "limit"),
    ("/api/events/", "limit=1001", "limit"),
    ("/api/events/", f"limit={HUGE}", "limit"),
    ("/api/clients/", "q=" + "x" * 101, "q"),
    ("/api/clients/", "q=" + "x" * MB, "q"),
    ("/api/clients/", "q=a%00b", "q"),
    ("/api/staff/", "role=bogus", "role"),
    ("/api/staff/", "role=%00", "role"),
]


def test_bad_query_parameter_is_400_naming_it(world):
    desk = as_user(world.desk)
    cases = [
        (f"{url}?{query[:40]}", partial(desk.get, f"{url}?{fill(query, world)}"), 400, (field,))
        for url, query, field in BAD_QUERIES
    ]
    check_all(world, cases)


def test_availability_for_an_unknown_therapist_is_400(world):
    url = f"/api/availability/?service={world.service.pk}&date=2030-05-01&therapist={ABSENT}"
    assert_error(as_user(world.desk).get(url), 400, "therapist")


def test_odd_but_valid_queries_are_200(world):
    urls = [
        "/api/appointments/?therapist={absent}",  # a filter: no rows, not an error
        "/api/appointments/?date=2030-05-01&status=pending&therapist={therapist}",
        "/api/appointments/?page_size={huge}",
        "/api/clients/?q=%ff%fe",
        "/api/clients/?q=%ed%a0%80",  # an encoded lone surrogate
        "/api/clients/?q=%F0%9F%92%86",
        "/api/events/?after=0&limit=1000",
        "/api/availability/?service={service}&date=2999-12-31",
        "/api/availability/?service={service}&date=2030-05-01&needs_transport=true",
        "/api/availability/?service={service}&date=2030-05-01&needs_transport=false",
        "/api/availability/?service={service}&date=2030-05-01&client={client}",
    ]
    desk = as_user(world.desk)
    for url in urls:
        url = fill(url, world, absent=ABSENT, therapist=world.therapist.pk, huge=HUGE)
        response = desk.get(url)
        assert response.status_code == 200, (url, response.content[:300])


def test_garbage_cursor_and_too_many_parameters_are_json_4xx(world):
    desk = as_user(world.desk)
    for url in ("/api/appointments/", "/api/clients/", "/api/trips/", "/api/staff/"):
        response = desk.get(url, {"cursor": "not-a-cursor\x00"})
        assert 400 <= response.status_code < 500, (url, response.status_code)
        assert response.json()["detail"]
    query = "&".join(f"p{i}=1" for i in range(1_500))  # Django's limit is 1,000 fields
    for url in ("/api/appointments/", "/api/events/", "/api/clients/"):
        assert_error(desk.get(f"{url}?{query}"), 400)
