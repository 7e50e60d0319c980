"""The strict input fields (scheduling/api/fields.py), one ugly input at a time.

Each value below is one DRF's own fields would have coerced (12 read as "12", "true" as
true, "7" as 7, "2" as the choice 2, a JSON number as a price) or skipped (an empty
query parameter). Each must be a 400 whose `errors` names the field, and nothing may be
written. The well-formed request next to each ugly one is answered 2xx, so the refusal
is the ugly value's doing.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.exceptions import ValidationError

from scheduling.api.fields import NOT_BLANK, PRINTABLE_HEADER, Money
from scheduling.models import Appointment, Client, Payment, Service, StreamEvent, Transition
from tests import factories

pytestmark = pytest.mark.django_db

TABLES = (Appointment, Client, Payment, Service, StreamEvent, Transition)


def counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + ", ".join(f'(SELECT count(*) FROM "{m._meta.db_table}")' for m in TABLES)
        )
        row = cursor.fetchone()
    return {m.__name__: n for m, n in zip(TABLES, row, strict=True)}


def refused(response, field: str, *, by_input_check: bool = True) -> dict[str, Any]:
    """A 400 naming `field`; refused by the input checks, its detail repeats the field's
    first message (a service's refusal says its own sentence)."""
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert field in body["errors"], body
    assert body["detail"].startswith(f"{field}: ") or not by_input_check, body
    return body


@pytest.fixture
def appointment(book, tomorrow_at) -> Appointment:
    return book(tomorrow_at(10))


@pytest.fixture
def desk_api(desk):
    return factories.api(desk)


@pytest.fixture
def manager_api(manager):
    return factories.api(manager)


# --- bodies: (path, well-formed body, field, ugly value, status of the well-formed one) ----


def _bodies(appointment: Appointment, therapist) -> list[tuple[str, str, dict, str, Any]]:
    detail = f"/api/appointments/{appointment.pk}/"
    return [
        # A JSON number for text: DRF's CharField writes 0 down as "0".
        ("patch", detail, {"notes": "ok"}, "notes", 0),
        ("patch", detail, {"address": "12 Mabini"}, "address", 12.5),
        ("patch", detail, {"notes": "ok"}, "notes", True),
        ("patch", detail, {"notes": "ok"}, "notes", ["a"]),
        ("post", f"{detail}cancel/", {"reason": "asked"}, "reason", 7),
        # Booleans: only JSON true and false.
        ("post", f"{detail}cancel/", {"on_behalf": False}, "on_behalf", 0),
        ("post", f"{detail}cancel/", {"on_behalf": False}, "on_behalf", "true"),
        ("post", f"{detail}cancel/", {"on_behalf": False}, "on_behalf", "false"),
        # Choices as the schema's enum writes them.
        ("post", f"{detail}cancel/", {"scope": "this"}, "scope", ["this"]),
        ("post", f"{detail}cancel/", {"scope": "this"}, "scope", ""),
    ]


@pytest.mark.parametrize("index", range(10))
def test_an_ugly_body_value_is_a_400_naming_the_field(
    index, appointment, therapist, desk_api, tomorrow_at
):
    method, path, good, field, ugly = _bodies(appointment, therapist)[index]
    before = counts()
    response = getattr(desk_api, method)(path, {**good, field: ugly}, format="json")
    refused(response, field)
    assert counts() == before
    assert getattr(desk_api, method)(path, good, format="json").status_code == 200


def test_a_string_is_a_string_in_every_text_field(desk_api, client_record):
    before = counts()
    for field in ("name", "phone", "email", "address", "notes"):
        body = {"name": "Rosa", "phone": "+639181112222", field: 63918111}
        refused(desk_api.post("/api/clients/", body, format="json"), field)
    assert counts() == before


def test_a_blank_name_is_refused_and_the_schema_says_so(desk_api):
    response = desk_api.post("/api/clients/", {"name": " \t", "phone": "+639181112222"}, "json")
    refused(response, "name")
    assert not re.fullmatch(NOT_BLANK, " \t\u3000")
    assert re.fullmatch(NOT_BLANK, " Rosa ")


@pytest.mark.parametrize("ugly", [1, "1", 1.5, "yes", None])
def test_a_driver_goes_on_shift_with_true_only(ugly, db):
    driver = factories.driver(username="dan")
    api = factories.api(driver)
    refused(api.post("/api/drivers/me/shift/", {"on_shift": ugly}, format="json"), "on_shift")
    driver.driver_profile.refresh_from_db()
    assert driver.driver_profile.on_shift is False
    assert api.post("/api/drivers/me/shift/", {"on_shift": True}, format="json").status_code == 200


@pytest.mark.parametrize("ugly", ["1", 1.5, True, "2.0"])
def test_an_id_is_a_json_integer(ugly, desk_api, client_record, service, therapist, tomorrow_at):
    before = counts()
    body = {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "start": tomorrow_at(14).isoformat(),
    }
    refused(desk_api.post("/api/appointments/", {**body, "service": ugly}, "json"), "service")
    assert counts() == before


def test_an_integral_float_is_an_integer_as_json_schema_says(
    desk_api, client_record, service, therapist, tomorrow_at
):
    body = {
        "client": client_record.pk,
        "service": float(service.pk),
        "therapist": therapist.pk,
        "start": tomorrow_at(14).isoformat(),
    }
    assert desk_api.post("/api/appointments/", body, format="json").status_code == 201


@pytest.mark.parametrize("ugly", ["2", 2.5, True, "every"])
def test_a_repeat_choice_is_the_enum_value_itself(
    ugly, desk_api, client_record, service, therapist, tomorrow_at
):
    before = counts()
    body = {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "start": tomorrow_at(14).isoformat(),
        "repeat": {"every_weeks": ugly, "count": 2},
    }
    refused(desk_api.post("/api/appointments/", body, format="json"), "repeat")
    assert counts() == before


# --- money ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ugly", [900, 900.5, "", " 900", "9e2", "-1", "900.001", "0900", "NaN"])
def test_a_price_is_a_decimal_string(ugly, manager_api):
    before = counts()
    body = {"name": "Shiatsu", "duration_minutes": 60, "price": ugly}
    refused(manager_api.post("/api/services/", body, format="json"), "price")
    assert counts() == before
    response = manager_api.post("/api/services/", {**body, "price": "900.00"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["price"] == "900.00"


def test_a_price_of_zero_is_a_price(manager_api):
    body = {"name": "Free trial", "duration_minutes": 15, "price": "0"}
    assert manager_api.post("/api/services/", body, format="json").status_code == 201


@pytest.mark.parametrize("good", ["0.01", "0.5", "1500", "1500.00", "99999999.99"])
def test_the_money_pattern_takes_what_the_field_takes(good):
    field = Money(min_value=Decimal("0.01"), numbers=True)
    assert re.fullmatch(field.pattern, good)
    assert field.run_validation(good) == Decimal(good)


@pytest.mark.parametrize("ugly", ["0", "0.00", "0.001", "100000000", "1.", ".5", "+1", "1,000"])
def test_the_money_pattern_refuses_what_the_field_refuses(ugly):
    field = Money(min_value=Decimal("0.01"), numbers=True)
    assert not re.fullmatch(field.pattern, ugly)
    with pytest.raises(ValidationError):
        field.run_validation(ugly)


def test_a_payment_amount_may_be_a_json_number_as_documented(therapist, appointment):
    # Money is recorded once the session has started (the state machine is not the point).
    Appointment.objects.filter(pk=appointment.pk).update(status="in_progress")
    api = factories.api(therapist)
    path = f"/api/appointments/{appointment.pk}/payments/"
    before = counts()
    for ugly in (True, "1e3", "", [100]):
        refused(api.post(path, {"method": "cash", "amount": ugly}, format="json"), "amount")
    assert counts() == before
    response = api.post(path, {"method": "cash", "amount": 100.5}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "100.50"


# --- query strings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=", "status"),
        ("status=Pending", "status"),
        ("therapist=", "therapist"),
        ("therapist=1.0", "therapist"),
        ("therapist=%201", "therapist"),
        ("therapist=%2B1", "therapist"),
        ("date=", "date"),
        ("date=1999-12-31", "date"),
        ("page_size=", "page_size"),
        ("page_size=ten", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=-5", "page_size"),
        ("page_size=1.5", "page_size"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(query, field, desk_api, appointment):
    refused(desk_api.get(f"/api/appointments/?{query}"), field)


def test_page_size_is_a_whole_number_and_past_the_maximum_the_maximum(desk_api, appointment):
    assert desk_api.get("/api/appointments/?page_size=007").status_code == 200
    assert desk_api.get(f"/api/appointments/?page_size={10**40}").status_code == 200


@pytest.mark.parametrize("ugly", ["1", "yes", "True", "", "on"])
def test_a_query_boolean_is_true_or_false(ugly, desk_api, service, tomorrow_at):
    day = tomorrow_at(0).date().isoformat()
    path = f"/api/availability/?service={service.pk}&date={day}"
    refused(desk_api.get(f"{path}&needs_transport={ugly}"), "needs_transport")
    assert desk_api.get(f"{path}&needs_transport=true").status_code == 200
    assert desk_api.get(f"{path}&needs_transport=false").status_code == 200


# --- unknown fields ---------------------------------------------------------------------------


def test_unknown_fields_in_a_patch_are_refused_by_name_and_the_schema_closes_it(
    desk_api, appointment, client_record
):
    before = counts()
    response = desk_api.patch(
        f"/api/appointments/{appointment.pk}/", {"start": "2030-01-01T10:00:00+08:00"}, "json"
    )
    refused(response, "start", by_input_check=False)
    response = desk_api.patch(f"/api/clients/{client_record.pk}/", {"vip": True}, "json")
    refused(response, "vip", by_input_check=False)
    assert counts() == before
    schema = desk_api.get("/api/schema/?format=json").json()
    parts = schema["components"]["schemas"]
    assert parts["PatchedAppointmentPatchRequest"]["additionalProperties"] is False
    assert parts["PatchedClientPatchRequest"]["additionalProperties"] is False
    assert "preferences" in parts["PatchedClientPatchRequest"]["properties"]


def test_unknown_fields_in_a_post_are_ignored_as_documented(desk_api):
    body = {"name": "Rosa", "phone": "+639181112222", "vip": True}
    assert desk_api.post("/api/clients/", body, format="json").status_code == 201


def test_the_idempotency_key_pattern_is_the_views_printable_rule():
    """The schema's pattern for the header says what `key.isprintable()` says, for every
    character a header can carry (Latin-1, as WSGI reads it)."""
    for code in range(256):
        char = chr(code)
        assert bool(re.fullmatch(PRINTABLE_HEADER, char)) == char.isprintable(), hex(code)
    assert re.fullmatch(PRINTABLE_HEADER, "k" * 255)
    assert not re.fullmatch(PRINTABLE_HEADER, "k" * 256)


def test_a_key_the_schema_refuses_is_refused(
    desk_api, client_record, service, therapist, tomorrow_at
):
    before = counts()
    body = {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "start": tomorrow_at(14).isoformat(),
    }
    for key in ("k" * 256, "tab\there"):
        response = desk_api.post(
            "/api/appointments/", body, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        refused(response, "Idempotency-Key")
    assert counts() == before
