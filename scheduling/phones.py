"""Phone numbers: stored in E.164, searched by digits."""

import phonenumbers
from django.conf import settings

from scheduling.errors import ValidationFailed

# Numbers written without a country code are read as local to the business.
DEFAULT_REGION_BY_ZONE = {"Asia/Manila": "PH"}


def default_region() -> str:
    return getattr(settings, "PHONE_DEFAULT_REGION", None) or DEFAULT_REGION_BY_ZONE.get(
        settings.TIME_ZONE, "PH"
    )


def normalize_phone(raw: str) -> str:
    """`raw` as E.164 (+639171234567), or ValidationFailed on the `phone` field."""
    text = (raw or "").strip()
    if not text:
        raise ValidationFailed.on("phone", "A phone number is required.")
    if len(text) > 32:
        raise ValidationFailed.on("phone", "That is too long to be a phone number.")
    try:
        number = phonenumbers.parse(text, default_region())
    except phonenumbers.NumberParseException:
        raise ValidationFailed.on("phone", f"'{text}' is not a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed.on("phone", f"'{text}' is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def digits_only(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())
