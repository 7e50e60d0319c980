"""Client and service edits in the admin go through the services (issue 13 item 6)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from scheduling.models import Client, Service, User
from tests import factories

pytestmark = pytest.mark.django_db


def url(model, view: str, *args) -> str:
    return reverse(f"admin:scheduling_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def manager_client(client, manager):
    client.force_login(User.objects.get(pk=manager.pk))
    return client


def client_form(**changes) -> dict:
    return {"name": "Liza Garcia", "phone": "0917 765 4321", "preferences": "{}", **changes}


def test_adding_a_client_goes_through_create_client(manager_client):
    response = manager_client.post(url(Client, "add"), client_form(name="  Liza Garcia  "))
    assert response.status_code == 302, response.content.decode()[:3000]
    client = Client.objects.get()
    # The service's normalisation and name clean-up, not the admin's.
    assert (client.name, client.phone) == ("Liza Garcia", "+639177654321")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"phone": "12"}, "phone", ""),
        ({"name": "   "}, "name", ""),
        ({"preferences": '{"channel": "pigeon"}'}, "preferences", "The channel must be one of"),
    ],
)
def test_what_the_client_service_refuses_is_shown_on_the_form(
    manager_client, changes, field, message
):
    response = manager_client.post(url(Client, "add"), client_form(**changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field])
    assert not Client.objects.exists()


def test_a_duplicate_phone_names_its_owner(manager_client, client_record):
    response = manager_client.post(url(Client, "add"), client_form(phone="0917 123 4567"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert f"already belongs to {client_record.name}" in " ".join(errors["phone"])
    assert Client.objects.count() == 1


def test_editing_a_client_goes_through_update_client(manager_client, client_record):
    data = {
        "name": client_record.name,
        "phone": "0918 000 1111",
        "email": "",
        "address": "5 Rizal St",
        "notes": "",
        "preferences": '{"channel": "sms"}',
    }
    response = manager_client.post(url(Client, "change", client_record.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    client_record.refresh_from_db()
    assert client_record.phone == "+639180001111" and client_record.address == "5 Rizal St"
    assert client_record.phone_digits == "639180001111"
    other = factories.ClientFactory(phone="+639181112222")
    response = manager_client.post(
        url(Client, "change", client_record.pk), {**data, "phone": other.phone}
    )
    assert response.status_code == 200
    client_record.refresh_from_db()
    assert client_record.phone == "+639180001111"


def test_adding_a_service_goes_through_create_service(manager_client):
    data = {
        "name": " Hot stone ",
        "duration_minutes": 90,
        "buffer_minutes": 15,
        "price": "2500.00",
        "active": "on",
    }
    response = manager_client.post(url(Service, "add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    service = Service.objects.get()
    assert (service.name, service.price) == ("Hot stone", Decimal("2500.00"))
    again = manager_client.post(url(Service, "add"), {**data, "name": "Hot stone"})
    assert again.status_code == 200
    assert Service.objects.count() == 1


def test_editing_a_service_goes_through_update_service(manager_client):
    stone = factories.ServiceFactory(name="Hot stone", duration_minutes=90, price="2500.00")
    factories.ServiceFactory(name="Swedish")
    data = {
        "name": "  Hot stone deluxe ",
        "duration_minutes": 120,
        "buffer_minutes": 15,
        "price": "3000.00",
        "active": "on",
    }
    response = manager_client.post(url(Service, "change", stone.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    stone.refresh_from_db()
    # The service's name clean-up, not the admin's.
    assert (stone.name, stone.duration_minutes, stone.price) == (
        "Hot stone deluxe",
        120,
        Decimal("3000.00"),
    )

    taken = manager_client.post(url(Service, "change", stone.pk), {**data, "name": "Swedish"})
    assert taken.status_code == 200
    assert "There is already a service called Swedish." in taken.content.decode()
    stone.refresh_from_db()
    assert stone.name == "Hot stone deluxe"
