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
    service = Service(
        name=_name(name),
        duration_minutes=duration_minutes,
        price=price,
        buffer_minutes=buffer_minutes,
        active=active,
    )
    return _saved(service)


def update_service(
    *,
    service: Service,
    name: str | None = None,
    duration_minutes: int | None = None,
    price: Decimal | None = None,
    buffer_minutes: int | None = None,
    active: bool | None = None,
) -> Service:
    """Change what is given (None leaves a field as it is). Bookings already made keep
    the duration and price they were booked with (the appointment holds its own)."""
    if name is not None:
        service.name = _name(name)
    if duration_minutes is not None:
        service.duration_minutes = duration_minutes
    if price is not None:
        service.price = price
    if buffer_minutes is not None:
        service.buffer_minutes = buffer_minutes
    if active is not None:
        service.active = active
    return _saved(service)


def _name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed.on("name", "A name is required.")
    return name


def _saved(service: Service) -> Service:
    try:
        with transaction.atomic():
            service.save()
    except IntegrityError:
        taken = Service.objects.filter(name=service.name).exclude(pk=service.pk)
        if taken.exists():
            raise ValidationFailed.on(
                "name", f"There is already a service called {service.name}."
            ) from None
        raise
    return service
