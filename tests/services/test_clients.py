"""Clients: E.164 phones, unique, searchable by name or phone fragment."""

from __future__ import annotations

import pytest

from scheduling.errors import ValidationFailed
from scheduling.models import Client
from scheduling.services.clients import create_client, update_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "typed", ["0917 123 4567", "+63 917 123 4567", "(0917) 123-4567", "639171234567"]
)
def test_phone_is_stored_in_e164(typed):
    client = create_client(name="Maria Santos", phone=typed)
    assert client.phone == "+639171234567"
    assert client.phone_digits == "639171234567"


@pytest.mark.parametrize("typed", ["", "hello", "12", "0917", "+1 555", "9" * 40])
def test_bad_phones_are_refused_on_the_phone_field(typed):
    with pytest.raises(ValidationFailed) as caught:
        create_client(name="Maria Santos", phone=typed)
    assert "phone" in caught.value.errors
    assert not Client.objects.exists()


def test_phone_is_unique_and_the_owner_is_named():
    first = create_client(name="Maria Santos", phone="09171234567")
    with pytest.raises(ValidationFailed, match=f"Maria Santos \\(client #{first.pk}\\)"):
        create_client(name="Someone Else", phone="+63 917 123 4567")
    assert Client.objects.count() == 1


def test_name_is_required():
    with pytest.raises(ValidationFailed) as caught:
        create_client(name="   ", phone="09171234567")
    assert caught.value.errors == {"name": ["A name is required."]}


def test_update_normalises_and_refuses_unknown_fields():
    client = create_client(name="Maria Santos", phone="09171234567")
    update_client(client=client, phone="0918 765 4321", notes="Prefers mornings")
    client.refresh_from_db()
    assert (client.phone, client.phone_digits) == ("+639187654321", "639187654321")
    with pytest.raises(ValidationFailed) as caught:
        update_client(client=client, id=5)
    assert "id" in caught.value.errors


@pytest.fixture
def book():
    return [
        create_client(name="Maria Santos", phone="09171234567"),
        create_client(name="José Dela Cruz", phone="09181112222"),
        create_client(name="Anna Santiago", phone="09995554444"),
    ]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("santos", ["Maria Santos"]),
        ("SANT", ["Anna Santiago", "Maria Santos"]),
        ("dela", ["José Dela Cruz"]),
        ("4567", ["Maria Santos"]),  # last digits, as read off a caller ID
        ("0917 123", ["Maria Santos"]),  # typed nationally, with a space
        ("+63 999", ["Anna Santiago"]),
        ("12", []),  # too few digits to mean a phone, and no name contains it
        ("", []),
        ("   ", []),
        ("zzz", []),
    ],
)
def test_search_by_name_or_phone_fragment(book, query, expected):
    assert [c.name for c in Client.objects.search(query)] == expected
