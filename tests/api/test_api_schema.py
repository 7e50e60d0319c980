"""Schemathesis against /api/schema/, in process, as every role.

Every operation the schema documents is fuzzed (schemathesis's examples, coverage and
fuzzing phases, positive and negative data) as each role: anonymous, receptionist,
manager, therapist and driver, each with a real token. Operations on one object are also
sent with an id the role can see, so real objects, not only 404s, meet the response
schemas. A stateful run per staff role follows the links schemathesis infers (a list's
ids into detail routes and actions, a create's id into its actions), methods the
operation does not declare included.

Every check Schemathesis has runs (`--checks all`: CHECKS below, built from its
registry, so a check a later Schemathesis adds runs too): no 5xx; a documented status,
content type, headers and body; data the schema refuses is refused (the strict input
fields, scheduling/api/fields.py); data it allows is accepted; an undeclared method is a
405 with Allow; a missing required header is refused; the auth the schema declares is
enforced (the request is sent again without it); and the stateful resource checks.
Data the schema allows may still be refused only by a rule no schema can state (an id
that names nothing, a past time, wrong credentials, a signature...): those refusals are
listed, each with its reason, in DOMAIN_REFUSALS, and any other refusal fails.

The app runs in the test's own thread and database connection (Django's
close_old_connections is unhooked for the duration, as Django's test client does), so
each test's writes are rolled back like any other test's.

Known gaps in the schema (a status the API really returns and the contract promises, but
the operation does not document) are listed in SCHEMA_GAPS: the fuzzer tolerates exactly
those, and `test_the_schema_documents_every_status_the_matrix_sees` pins each as a strict
xfail, so fixing the schema turns it into a failure that asks for the entry's removal.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck
from schemathesis.checks import CHECKS as ALL_CHECKS
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import TestPhase
from schemathesis.specs.openapi import checks as openapi_checks
from schemathesis.specs.openapi.checks import (
    RejectedPositiveData,
    positive_data_acceptance,
    status_code_conformance,
)

from config.wsgi import application
from scheduling.api import health
from tests.api.matrix import (
    EXPECTED,
    PASSWORD,
    ROLES,
    ROUTES,
    World,
    build_world,
    family_of,
    prepare,
    tomorrow_at,
)

# Schemathesis fuzzes every operation as every role: about two minutes of CPU, so it is
# left out of `make test-fast` (make test runs it on both passes).
pytestmark = pytest.mark.slow

CONFIG = schemathesis.Config.from_dict(
    {
        # Same examples on every run, so a red CI is reproducible on a laptop.
        "generation": {"deterministic": True, "with-security-parameters": False},
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

# Statuses the API returns (see the role matrix) that the operation does not document.
# Each entry is a schema bug, pinned by test_the_schema_documents_every_status_the_matrix_sees.
SCHEMA_GAPS: dict[tuple[str, str], frozenset[int]] = {}
GAPS_REASON = (
    "bug: the operation does not document its error responses (scheduling/api/views.py "
    "leaves the mixins' list/retrieve without extend_schema(responses={..., **ERRORS}))"
)


def _schema_path(template: str) -> str:
    """The URL conf's `{pk}` is the schema's `{id}`."""
    return template.replace("{pk}", "{id}")


def no_server_error(ctx, response, case) -> bool | None:
    """not_a_server_error, except the health check's documented 503 (a store is down)."""
    if case.operation.path == "/health/" and response.status_code == 503:
        return None
    return not_a_server_error(ctx, response, case)


def documented_status(ctx, response, case) -> bool | None:
    """status_code_conformance, less the gaps pinned in SCHEMA_GAPS."""
    gaps = SCHEMA_GAPS.get((case.method.upper(), case.operation.path), frozenset())
    if response.status_code in gaps:
        return None
    return status_code_conformance(ctx, response, case)


@dataclass(frozen=True)
class Refusal:
    """A schema-valid request the API refuses by a rule no schema can state."""

    operation: str  # "METHOD /path" as the schema writes it, a regular expression
    status: int
    field: str  # the `errors` key the body names, a regular expression
    message: str  # a regular expression the field's message matches
    why: str


# Every schema-valid request the API may refuse (positive_data_acceptance), in one place.
# Each is a documented 400 (docs/api.md, "Conventions" and "Errors", and the route's own
# section) for a value whose fault no schema can state: a row that does not exist, a
# secret that does not match, a rule of the services that weighs one value against the
# clock or the database. Anything else refused is a failure.
ANY = r"^(GET|POST|PATCH) /api/"
DOMAIN_REFUSALS = (
    Refusal(
        ANY,
        400,
        "(client|service|therapist|area|driver)",
        r"^There is no [a-z ]+ with id \d+\.$",
        "an id that names nothing (api.md, Errors: ids that name nothing are a 400)",
    ),
    Refusal(
        r"^POST /api/appointments/",
        400,
        "(service|therapist)",
        r" is no longer offered\.$| does not perform | already has this appointment",
        "the service is retired, or the therapist does not perform it or has it already",
    ),
    Refusal(
        r"^POST /api/appointments/",
        400,
        "start",
        r"^That time has already passed\.$|^That is too (far ahead|soon)|"
        r"^Start times are every \d+ minutes",
        "a start measured against the clock, the travel time and the slot step",
    ),
    Refusal(
        r"^POST /api/visits/$",
        400,
        r"(client|area|start|sessions\[\d\]\.(service|therapist))",
        r"^There is no [a-z ]+ with id \d+\.$| is no longer offered\.$| does not perform |"
        r" already has session \d|^That time has already passed\.$|^That is too (far ahead|soon)|"
        r"^Start times are every \d+ minutes",
        "a visit's sessions as a single booking's (ids that name nothing, a retired "
        "service, a therapist who does not perform it or is named twice) and its start",
    ),
    Refusal(
        r"^POST /api/appointments/$",
        400,
        "(count|until)",
        r"^A series has \d+ to \d+ occurrences",
        "a repeat's until counted from its start",
    ),
    Refusal(
        r"^POST /api/appointments/\{id\}/(reschedule|cancel)/$",
        400,
        "scope",
        r"is not part of a series",
        "a series scope on a single booking",
    ),
    Refusal(
        r"^POST /api/appointments/\{id\}/request-pickup/$",
        400,
        "appointment",
        r"^This appointment has no transport\.$",
        "a pickup for an appointment booked without transport (the row, not the request)",
    ),
    Refusal(
        r"^(POST|PATCH) /api/clients/",
        400,
        "phone",
        r" is not a phone number\.$| already belongs to ",
        "a number no numbering plan has, or another client's (phones are unique)",
    ),
    Refusal(
        r"^(POST|PATCH) /api/clients/",
        400,
        "email",
        r"^Enter a valid email address\.$",
        "Django's address check (a domain with a dot and a 2+ letter top level) is "
        "narrower than JSON Schema's `email` format, and is the desk form's too",
    ),
    Refusal(
        r"^PATCH /api/clients/\{id\}/$",
        400,
        "preferences",
        r"^The preferred therapist must be a therapist's id",
        "an id that names no active therapist",
    ),
    Refusal(
        r"^POST /api/services/$",
        400,
        "name",
        r"^There is already a service called ",
        "service names are unique",
    ),
    Refusal(
        r"^POST /api/(appointments/\{id\}/payments|payments/\{id\}/refund)/$",
        400,
        "(amount|reference)",
        r" is still to be collected\.$| can be refunded\.$|needs its reference number",
        "more than is due or refundable, or an e-wallet transfer without its reference",
    ),
    Refusal(
        r"^POST /api/auth/token/$",
        400,
        "non_field_errors",
        r"^Wrong username or password\.$",
        "wrong credentials",
    ),
    Refusal(
        r"^POST /api/payments/webhooks/\w+/$",
        400,
        "signature",
        r"header is missing|does not match|malformed|No webhook secret is configured",
        "the signature is the credential: only the gateway can compute it",
    ),
)


def documented_refusal(response, case) -> Refusal | None:
    operation = f"{case.method.upper()} {case.operation.path}"
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    errors = body.get("errors") if response.status_code == 400 else None
    for refusal in DOMAIN_REFUSALS:
        if refusal.status != response.status_code or not re.search(refusal.operation, operation):
            continue
        if isinstance(errors, dict):
            for name, messages in errors.items():
                if re.fullmatch(refusal.field, name) and any(
                    re.search(refusal.message, str(m)) for m in messages
                ):
                    return refusal
    return None


def accepts_valid_data(ctx, response, case) -> bool | None:
    """positive_data_acceptance, less exactly the refusals in DOMAIN_REFUSALS."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if documented_refusal(response, case) is None:
            raise
        return None


# Every check Schemathesis has (`--checks all`), three of them narrowed as above.
NARROWED = {
    "not_a_server_error": no_server_error,
    "status_code_conformance": documented_status,
    "positive_data_acceptance": accepts_valid_data,
}
CHECKS = [
    NARROWED.get(name) or getattr(openapi_checks, name) for name in ALL_CHECKS.get_all_names()
]
assert len(CHECKS) >= 14, [check.__name__ for check in CHECKS]  # 4.32.5 has 14


# Generated examples per operation in the fuzzing phase (the examples and coverage phases
# send what the schema implies). Each example goes out once per role, and again with real
# ids and data where the operation takes them.
MAX_EXAMPLES = 10
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """The role matrix's world (two therapists, two drivers, appointments with trips,
    stream events), built once and rolled back at the end of the module."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


@pytest.fixture
def in_process(world, db, settings) -> Iterator[World]:
    """The WSGI app on this test's connection, with rate limits out of the fuzzer's way
    (their 429 is documented, but a limited fuzzer tests nothing)."""
    settings.API_RATE_LIMITS = {name: (10**9, 60) for name in settings.API_RATE_LIMITS}
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield world
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def headers_for(world: World, role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    return {"Authorization": f"Token {world.users[role].auth_token.key}"}


PHONES = itertools.count(1)
ROUTES_BY_PATH = {_schema_path(route.template): route for route in ROUTES.values()}


def with_real_data(case, world: World):
    """A copy of the case pointed at objects that exist (the therapist's own appointment
    and its driver's trip, a client, a service...), with them put in the status the action
    starts from; None when nothing would change. Generated ids almost never exist, so
    without this the response schemas would mostly meet 404s and 400s.

    The copy's containers are replaced, never edited in place, so schemathesis sees the
    change and judges the copy afresh: a case generated as invalid (a malformed id, say)
    may be valid once the real id is in, and the negative-data check must know it."""
    route = ROUTES_BY_PATH.get(case.operation.path)
    if route is None:
        return None
    real = case.derive()
    changed = False
    if route.detail:
        prepare(route, world)
        real.path_parameters = {
            **(case.path_parameters or {}),
            # As the wire carries it: schemathesis judges the copy against the schema.
            "id": str(world.objects(family_of(route))[0]),
        }
        changed = True
    body = dict(case.body) if isinstance(case.body, dict) else None
    if route.name == "api:appointment-list" and case.method == "POST" and body is not None:
        # A valid booking: the first is 201, the rest 409 with the conflict listed.
        body.update(
            client=world.client.pk,
            service=world.service.pk,
            therapist=world.users["therapist"].pk,
            start=tomorrow_at(16).isoformat(),
        )
        real.body = body
        changed = True
    elif (
        route.name == "api:appointment-list"
        and case.method == "GET"
        and isinstance(case.query, dict)
        and "client" in case.query
    ):
        # The client's page's filter, on a client who has appointments (issue 13).
        real.query = {**case.query, "client": world.client.pk}
        changed = True
    elif route.name == "api:visit-list" and case.method == "POST" and body is not None:
        # A valid couples visit (issue 14): the first is 201, the rest 409 naming sessions.
        body.update(
            client=world.client.pk,
            start=tomorrow_at(16, 45).isoformat(),  # the therapist is back from 14:00
            sessions=[
                {"service": world.service.pk, "therapist": world.users["therapist"].pk},
                {"service": world.service.pk, "therapist": None},
            ],
        )
        real.body = body
        changed = True
    elif route.name == "api:client-list" and case.method == "POST" and body is not None:
        body["phone"] = f"+63918{next(PHONES):07d}"  # a new, valid number each time
        real.body = body
        changed = True
    elif route.name == "api:appointment-reschedule" and body is not None:
        body["start"] = tomorrow_at(16).isoformat()
        real.body = body
    elif route.name == "api:appointment-reassign" and body is not None:
        # Another therapist who performs the service and is free then (issue 13).
        body.update(therapist=world.users["other_therapist"].pk, start=tomorrow_at(16).isoformat())
        real.body = body
    elif route.name == "api:token" and body is not None:
        body.update(username=world.users["driver"].username, password=PASSWORD)
        real.body = body
        changed = True
    elif route.name == "api:availability" and isinstance(case.query, dict):
        real.query = {
            **case.query,
            "service": world.service.pk,
            "date": tomorrow_at(0).date().isoformat(),
        }
        changed = True
    return real if changed else None


# The coverage phase sends every boundary and invalid value the schema implies (hundreds
# of cases per operation). They probe validation, which only a role let past the gate
# reaches: the manager (who may do all a receptionist may) and the two scoped roles.
# Examples and fuzzed cases go out as every role.
GATE_PASSING_ROLES = ("manager", "therapist", "driver")


def roles_for(case) -> tuple[str, ...]:
    phase = getattr(getattr(case.meta, "phase", None), "name", None)
    return GATE_PASSING_ROLES if phase == TestPhase.COVERAGE else ROLES


@pytest.mark.django_db
@schema.parametrize()
@SETTINGS
def test_every_operation_as_every_role(case, in_process):
    world = in_process
    failures = []

    def each_role(case, roles) -> None:
        for role in roles:
            try:
                case.call_and_validate(headers=headers_for(world, role), checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # every role's verdict
                failures.append(f"--- as {role}: {case.method} {case.formatted_path}\n{exc}")

    roles = roles_for(case)
    each_role(case, roles)
    real = with_real_data(case, world)
    if real is not None:
        # Anonymous callers learn nothing more from a real id.
        each_role(real, tuple(role for role in roles if role != "anonymous"))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


# --- stateful: links between operations, one role per run ----------------------------------

# Links are inferred by schemathesis (a list's or a create's ids into the detail routes and
# actions). Each role walks the part of the API it works in, with valid data only, so the
# chains go on past the first step: the therapist lists, reads, edits and acts on their
# appointments, the driver on their trips, the desk books and edits. (Anonymous callers
# have no chains to follow: every step would be a 401, which the fuzzing above covers.)
STATEFUL_SCOPE = {
    "receptionist": r"^/api/(appointments|clients|staff)/",
    "manager": r"^/api/(appointments|clients|services)/",
    "therapist": r"^/api/appointments/",
    "driver": r"^/api/(trips|appointments)/",
}
STATEFUL_SCHEMA = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    application,
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                "deterministic": True,
                "with-security-parameters": False,
                "mode": "positive",
            },
            "phases": {"stateful": {"max-steps": 10}},
        }
    ),
)


def _workflow(world: World, role: str) -> type:
    base = STATEFUL_SCHEMA.include(path_regex=STATEFUL_SCOPE[role]).as_state_machine()

    class AsRole(base):  # type: ignore[misc, valid-type]
        # Each scenario starts from the same database: its writes are undone at its end.
        # Otherwise a replayed scenario (Hypothesis replays to shrink) meets what the
        # first run wrote (a phone now taken, a slot now booked), answers differently,
        # and the rules it can choose from change under it.
        def setup(self) -> None:
            self._scenario = transaction.atomic()
            self._scenario.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self._scenario.__exit__(None, None, None)

        def get_call_kwargs(self, case) -> dict[str, Any]:
            return {"headers": headers_for(world, role)}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            # The role's token as explicit auth: ignored_auth then probes without it.
            case.validate_response(
                response,
                checks=CHECKS,
                headers=headers_for(world, role),
                transport_kwargs=kwargs or None,
            )

    AsRole.__name__ = f"As{role.title()}"
    return AsRole


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(STATEFUL_SCOPE))
def test_stateful_links_as_each_role(in_process, role):
    workflow = _workflow(in_process, role)
    workflow.run(settings=hypothesis.settings(SETTINGS, max_examples=12, stateful_step_count=8))


# --- the schema itself ------------------------------------------------------------------------


def _documented() -> dict[tuple[str, str], set[int]]:
    raw = schema.raw_schema
    return {
        (method.upper(), path): {int(code) for code in operation["responses"]}
        for path, operations in raw["paths"].items()
        for method, operation in operations.items()
    }


UNDOCUMENTED_ROUTES = {"api:schema", "api:docs"}  # the schema and its viewer


def test_every_api_route_is_documented():
    documented = _documented()
    missing = sorted(
        (method, _schema_path(route.template))
        for route in ROUTES.values()
        if route.name not in UNDOCUMENTED_ROUTES
        for method in route.methods
        if (method, _schema_path(route.template)) not in documented
    )
    assert not missing, f"routed but not in /api/schema/: {missing}"


def _matrix_statuses(name: str, method: str) -> set[int]:
    seen: set[int] = set()
    for status in EXPECTED[(name, method)].values():
        seen |= set(status) if isinstance(status, tuple) else {status}
    return seen


def status_cases() -> list[Any]:
    cases = []
    for name, method in sorted(EXPECTED):
        if name in UNDOCUMENTED_ROUTES:
            continue
        key = (method, _schema_path(ROUTES[name].template))
        marks = [pytest.mark.xfail(strict=True, reason=GAPS_REASON)] if key in SCHEMA_GAPS else []
        cases.append(pytest.param(name, method, marks=marks, id=f"{key[0]} {key[1]}"))
    return cases


@pytest.mark.parametrize("name, method", status_cases())
def test_the_schema_documents_every_status_the_matrix_sees(name, method):
    key = (method, _schema_path(ROUTES[name].template))
    undocumented = _matrix_statuses(name, method) - _documented()[key]
    assert not undocumented, f"{key[0]} {key[1]} does not document {sorted(undocumented)}"


def test_every_refusal_tolerated_is_of_an_operation_that_documents_it():
    """DOMAIN_REFUSALS stays honest: each entry names operations the schema has, and each
    of those documents the refusal's status (so the tolerance is the contract's)."""
    documented = _documented()
    for refusal in DOMAIN_REFUSALS:
        operations = [
            key for key in documented if re.search(refusal.operation, f"{key[0]} {key[1]}")
        ]
        assert operations, refusal
        for key in operations:
            assert refusal.status in documented[key], (refusal.why, key)


def test_schema_gaps_are_exactly_the_known_ones():
    """SCHEMA_GAPS stays honest: each entry is still missing from the schema, and names
    statuses the API really answers on that operation (or, for the bad cursor, may)."""
    documented = _documented()
    for key, gaps in SCHEMA_GAPS.items():
        assert key in documented, key
        assert not gaps & documented[key], (key, sorted(gaps & documented[key]))


@pytest.mark.django_db
def test_health_documents_the_body_of_its_503(in_process, monkeypatch):
    def down() -> str:
        raise ConnectionError("cache unreachable")

    monkeypatch.setitem(health.CHECKS, "cache", down)
    case = schema["/health/"]["GET"].Case()
    response = case.call()
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    case.validate_response(response, checks=CHECKS)  # documented status, type and body so far
    documented = schema.raw_schema["paths"]["/health/"]["get"]["responses"]["503"]
    assert "application/json" in documented.get("content", {}), documented
