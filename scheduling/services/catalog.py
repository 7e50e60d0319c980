"""The services the business sells."""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction

from scheduling.errors import ValidationFailed
from scheduling.models import Service


def create_service(
    *,
    name: str,
    duration_minutes: int,
    price: Decimal,
    buffer_minutes: int = 0,
    active: bool = True,
) -> Service:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed.on("name", "A name is required.")
    service = Service(
        name=name,
        duration_minutes=duration_minutes,
        price=price,
        buffer_minutes=buffer_minutes,
        active=active,
    )
    try:
        with transaction.atomic():
            service.save()
    except IntegrityError:
        if Service.objects.filter(name=name).exists():
            raise ValidationFailed.on(
                "name", f"There is already a service called {name}."
            ) from None
        raise
    return service
