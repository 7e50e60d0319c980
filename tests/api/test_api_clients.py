"""Clients, services and staff endpoints."""

from __future__ import annotations

import pytest

from scheduling.models import Client, Service
from tests import factories
from tests.factories import api

pytestmark = pytest.mark.django_db


def test_create_search_and_patch_a_client(desk):
    created = api(desk).post(
        "/api/clients/", {"name": "Maria Santos", "phone": "0917 123 4567"}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["phone"] == "+639171234567"
    found = api(desk).get("/api/clients/?q=4567").json()["results"]
    assert [c["name"] for c in found] == ["Maria Santos"]
    url = f"/api/clients/{created.json()['id']}/"
    patched = api(desk).patch(url, {"notes": "Prefers mornings"}, format="json")
    assert patched.status_code == 200 and patched.json()["notes"] == "Prefers mornings"
    refused = api(desk).patch(url, {"id": 99, "phone_digits": "1"}, format="json")
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"id", "phone_digits"}
    assert Client.objects.get().notes == "Prefers mornings"


def test_duplicate_phone_names_the_owner(desk):
    api(desk).post("/api/clients/", {"name": "Maria", "phone": "09171234567"}, format="json")
    again = api(desk).post(
        "/api/clients/", {"name": "Other", "phone": "+639171234567"}, format="json"
    )
    assert again.status_code == 400
    assert "Maria" in again.json()["errors"]["phone"][0]


@pytest.mark.parametrize("role", ["therapist", "driver"])
def test_field_staff_cannot_use_the_address_book(role):
    user = factories.UserFactory(role=role)
    assert api(user).get("/api/clients/").status_code == 403
    assert api(user).get("/api/staff/").status_code == 403


def test_only_managers_create_services(desk, manager):
    body = {
        "name": "Thai",
        "duration_minutes": 90,
        "price": "1500.00",
        "buffer_minutes": 15,
        "active": True,
    }
    assert api(desk).post("/api/services/", body, format="json").status_code == 403
    created = api(manager).post("/api/services/", body, format="json")
    assert created.status_code == 201 and created.json()["price"] == "1500.00"
    dup = api(manager).post("/api/services/", body, format="json")
    assert dup.status_code == 400 and "name" in dup.json()["errors"]
    for bad in (
        {"price": "-1"},
        {"duration_minutes": 0},
        {"duration_minutes": -30},
        {"buffer_minutes": 10**9},
        {"price": "1e400"},
    ):
        refused = api(manager).post("/api/services/", {**body, "name": "X", **bad}, format="json")
        assert refused.status_code == 400, (bad, refused.content)
    assert Service.objects.count() == 1
    assert api(factories.UserFactory(role="therapist")).get("/api/services/").status_code == 200


def test_staff_filter_by_role(desk, therapist):
    driver = factories.driver()
    body = api(desk).get("/api/staff/?role=driver").json()["results"]
    assert [(s["id"], s["vehicle"], s["on_shift"]) for s in body] == [
        (driver.pk, "motorcycle", False)
    ]
    therapists = api(desk).get("/api/staff/?role=therapist").json()["results"]
    assert [(s["id"], s["vehicle"]) for s in therapists] == [(therapist.pk, None)]
    assert api(desk).get("/api/staff/?role=king").status_code == 400


def test_shift_on_and_off(desk):
    driver = factories.driver()
    on = api(driver).post("/api/drivers/me/shift/", {"on_shift": True}, format="json")
    assert on.status_code == 200 and on.json()["on_shift"] is True
    assert on.json()["queue_position"] == 1
    off = api(driver).post("/api/drivers/me/shift/", {"on_shift": False}, format="json")
    assert off.json() == {"on_shift": False, "available_since": None, "queue_position": None}
    assert (
        api(desk).post("/api/drivers/me/shift/", {"on_shift": True}, format="json").status_code
        == 403
    )
    assert (
        api(driver)
        .post("/api/drivers/me/shift/", {"on_shift": "yes please"}, format="json")
        .status_code
        == 400
    )
