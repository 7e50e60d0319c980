"""Staff members: a user with a role, the role's profile and, in the field, weekly hours."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import time
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from scheduling import states
from scheduling.errors import ValidationFailed
from scheduling.models import (
    DriverProfile,
    Role,
    Service,
    TherapistProfile,
    User,
    Vehicle,
    WorkingHours,
)
from scheduling.phones import normalize_phone

# Roles that work in the field, and so are booked or dispatched within weekly hours.
FIELD_ROLES = frozenset({states.THERAPIST, states.DRIVER})
SEATS = {Vehicle.MOTORCYCLE: 1, Vehicle.CAR: 4}
HOURS_PATTERN = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
T = TypeVar("T")


@dataclass(frozen=True)
class Hours:
    start: time
    end: time


def create_staff(
    *,
    role: str,
    username: str,
    password: str,
    first_name: str = "",
    last_name: str = "",
    phone: str = "",
    service_ids: Iterable[int] = (),
    vehicle: str | None = None,
    hours: str | None = None,
) -> User:
    """A new staff member with their role's profile; therapists and drivers get working
    hours on all seven weekdays. Every problem is reported at once, and nothing is
    written unless all is well."""
    errors: dict[str, list[str]] = {}
    user = User(
        username=(username or "").strip(),
        role=role,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        # The managers' admin site goes by role; the flag also opens Django's stock pages.
        is_staff=role == states.MANAGER,
    )
    _collect(errors, "role", _check_role, role)
    _collect(errors, "username", _check_username, user.username)
    _collect(errors, "password", _check_password, password, user)
    user.phone = _collect(errors, "phone", _clean_phone, phone) or ""
    services = _collect(errors, "services", _services_for, role, list(service_ids)) or []
    vehicle = _collect(errors, "vehicle", _vehicle_for, role, vehicle)
    weekly = _collect(errors, "hours", _hours_for, role, hours)
    _collect(errors, "user", _check_fields, user, list(errors))
    if errors:
        raise ValidationFailed(_summary(errors), errors)
    user.set_password(password)
    return _save(user, services=services, vehicle=vehicle, weekly=weekly)


def parse_hours(text: str) -> Hours:
    """'HH:MM-HH:MM' on a 24-hour clock, the end after the start (no overnight shifts:
    working hours are wall-clock periods within one day)."""
    match = HOURS_PATTERN.fullmatch((text or "").strip())
    if match is None:
        raise ValidationFailed.on("hours", f"'{text}' is not in the form HH:MM-HH:MM.")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    try:
        start, end = time(start_h, start_m), time(end_h, end_m)
    except ValueError:
        raise ValidationFailed.on("hours", f"'{text}' is not a time of day.") from None
    if end <= start:
        raise ValidationFailed.on("hours", f"In '{text}' the end is not after the start.")
    return Hours(start, end)


def default_hours() -> Hours:
    raw = settings.SCHEDULING["DEFAULT_WORKING_HOURS"]
    try:
        return parse_hours(raw)
    except ValidationFailed as exc:
        raise ImproperlyConfigured(f"DEFAULT_WORKING_HOURS: {exc.message}") from exc


# --- checks: each returns the clean value or raises ValidationFailed ----------------------


def _collect(
    errors: dict[str, list[str]], field: str, check: Callable[..., T], *args: object
) -> T | None:
    """Run one check and file its failure, so that every problem is reported at once."""
    try:
        return check(*args)
    except ValidationFailed as exc:
        for name, messages in (exc.errors or {field: [exc.message]}).items():
            errors.setdefault(name, []).extend(messages)
        return None


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationFailed.on(
            "role", f"Unknown role '{role}'; choose one of {', '.join(Role.values)}."
        )


def _check_username(username: str) -> None:
    if not username:
        raise ValidationFailed.on("username", "A username is required.")
    # Case-insensitive, so 'Ana' and 'ana' cannot become two logins for the desk to mix up.
    owner = User.objects.filter(username__iexact=username).first()
    if owner is not None:
        raise ValidationFailed.on(
            "username",
            f"The username '{username}' is already taken (user #{owner.pk}, "
            f"{owner.effective_role}); nothing was changed.",
        )


def _check_password(password: str, user: User) -> None:
    if not password:
        raise ValidationFailed.on("password", "A password is required.")
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationFailed("The password is too weak.", {"password": exc.messages}) from None


def _clean_phone(phone: str) -> str:
    return normalize_phone(phone) if (phone or "").strip() else ""


def _services_for(role: str, service_ids: list[int]) -> list[Service]:
    if not service_ids:
        return []
    if role != states.THERAPIST:
        raise ValidationFailed.on("services", "Only therapists perform services.")
    try:
        wanted = [int(pk) for pk in service_ids]
    except (TypeError, ValueError):
        raise ValidationFailed.on("services", "Service ids are whole numbers.") from None
    found = {s.pk: s for s in Service.objects.filter(pk__in=wanted)}
    missing = [str(pk) for pk in wanted if pk not in found]
    if missing:
        raise ValidationFailed.on(
            "services", f"There is no service with id {', '.join(dict.fromkeys(missing))}."
        )
    return list(found.values())


def _vehicle_for(role: str, vehicle: str | None) -> Vehicle | None:
    if role != states.DRIVER:
        if vehicle is not None:
            raise ValidationFailed.on("vehicle", "Only drivers have a vehicle.")
        return None
    vehicle = vehicle or Vehicle.MOTORCYCLE
    if vehicle not in Vehicle.values:
        raise ValidationFailed.on(
            "vehicle", f"Unknown vehicle '{vehicle}'; choose one of {', '.join(Vehicle.values)}."
        )
    return Vehicle(vehicle)


def _hours_for(role: str, hours: str | None) -> Hours | None:
    if role not in FIELD_ROLES:
        if hours is not None:
            raise ValidationFailed.on("hours", "Only therapists and drivers have working hours.")
        return None
    return parse_hours(hours) if hours is not None else default_hours()


def _check_fields(user: User, failed: Iterable[str]) -> None:
    """Lengths and the username's allowed characters, as the model declares them
    (fields that already failed are not reported twice)."""
    try:
        user.full_clean(exclude=["password", "role", *failed], validate_unique=False)
    except DjangoValidationError as exc:
        raise ValidationFailed("Some fields are invalid.", exc.message_dict) from None


def _summary(errors: dict[str, list[str]]) -> str:
    return "Cannot create the staff member: " + " ".join(
        message for messages in errors.values() for message in messages
    )


# --- writing ----------------------------------------------------------------------------


def _save(
    user: User, *, services: list[Service], vehicle: Vehicle | None, weekly: Hours | None
) -> User:
    try:
        with transaction.atomic():
            user.save()
            _create_profile(user, services=services, vehicle=vehicle)
            if weekly is not None:
                _add_weekly_hours(user, weekly)
    except IntegrityError:
        # Someone took the username between the check and the insert.
        if User.objects.filter(username__iexact=user.username).exists():
            raise ValidationFailed.on(
                "username",
                f"The username '{user.username}' is already taken; nothing was changed.",
            ) from None
        raise
    return user


def _create_profile(user: User, *, services: list[Service], vehicle: Vehicle | None) -> None:
    if user.role == states.THERAPIST:
        profile = TherapistProfile.objects.create(user=user)
        profile.services.set(services)
    elif user.role == states.DRIVER:
        vehicle = vehicle or Vehicle.MOTORCYCLE  # _vehicle_for gives a driver one already
        DriverProfile.objects.create(user=user, vehicle=vehicle, seats=SEATS[vehicle])


def ensure_profile(*, user: User, with_default_hours: bool) -> None:
    """Give a therapist or driver the profile `create_staff` would have (for one made, or
    whose role was changed, in the admin); `with_default_hours` also gives the business's
    weekly hours to one who has none. What already exists is left alone."""
    if user.role == states.THERAPIST:
        TherapistProfile.objects.get_or_create(user=user)
    elif user.role == states.DRIVER:
        DriverProfile.objects.get_or_create(
            user=user, defaults={"vehicle": Vehicle.MOTORCYCLE, "seats": SEATS[Vehicle.MOTORCYCLE]}
        )
    else:
        return
    if with_default_hours and not user.working_hours.exists():
        _add_weekly_hours(user, default_hours())


def _add_weekly_hours(user: User, weekly: Hours) -> None:
    WorkingHours.objects.bulk_create(
        WorkingHours(staff=user, weekday=day, start=weekly.start, end=weekly.end)
        for day in range(7)
    )
