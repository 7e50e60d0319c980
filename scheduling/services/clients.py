"""Clients: the desk's address book. Phones are stored in E.164 and are unique."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from scheduling.errors import ValidationFailed
from scheduling.models import Channel, Client, ServiceArea, User
from scheduling.phones import normalize_phone
from scheduling.services.travel import area_by_id

EDITABLE = ("name", "phone", "email", "address", "area", "notes", "preferences")


def create_client(
    *,
    name: str,
    phone: str,
    email: str = "",
    address: str = "",
    notes: str = "",
    preferences: dict[str, object] | None = None,
    area: int | None = None,
) -> Client:
    client = Client(
        name=_clean_name(name),
        phone=normalize_phone(phone),
        email=email,
        address=address,
        area=_area(area),
        notes=notes,
        preferences=_clean_preferences(preferences or {}),
    )
    _save_unique(client)
    return client


def update_client(*, client: Client, **changes: Any) -> Client:
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValidationFailed(
            f"Cannot change {', '.join(sorted(unknown))}.",
            {field: ["This field cannot be changed."] for field in unknown},
        )
    if "name" in changes:
        changes["name"] = _clean_name(changes["name"])
    if "phone" in changes:
        changes["phone"] = normalize_phone(changes["phone"])
    if "area" in changes:
        changes["area"] = _area(changes["area"])
    if "preferences" in changes:
        changes["preferences"] = _clean_preferences(changes["preferences"])
    for field, value in changes.items():
        setattr(client, field, value)
    _save_unique(client)
    return client


def _area(area_id: int | None) -> ServiceArea | None:
    """The service area named by id (None: no area, the default travel applies)."""
    return None if area_id is None else area_by_id(area_id)


def _clean_preferences(preferences: object) -> dict[str, object]:
    """A JSON object; its `channel`, when given, one the notifications can use; its
    `therapist`, when given, an active therapist's id."""
    if not isinstance(preferences, dict):
        raise ValidationFailed.on("preferences", 'Give an object, e.g. {"channel": "sms"}.')
    channel = preferences.get("channel")
    if channel is not None and channel not in Channel.values:
        choices = ", ".join(Channel.values)
        raise ValidationFailed.on("preferences", f"The channel must be one of {choices}.")
    therapist = preferences.get("therapist")
    if therapist is not None and not _is_therapist(therapist):
        raise ValidationFailed.on(
            "preferences",
            f"The preferred therapist must be a therapist's id; {therapist!r} is not.",
        )
    return preferences


def _is_therapist(value: object) -> bool:
    """An id (a JSON integer) of an active therapist: "any therapist" offers them first."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        return False
    return bool(User.objects.therapists().filter(pk=value).exists())


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed.on("name", "A name is required.")
    return name


def _save_unique(client: Client) -> None:
    # The unique index decides; a pre-check would race with another desk typing the same.
    try:
        with transaction.atomic():
            client.save()
    except IntegrityError:
        owner = Client.objects.filter(phone=client.phone).exclude(pk=client.pk).first()
        if owner is None:
            raise
        raise ValidationFailed.on(
            "phone", f"{client.phone} already belongs to {owner.name} (client #{owner.pk})."
        ) from None
