"""Strict input fields: a value of the type the OpenAPI document says, or a 400 naming
the field (docs/api.md, "Conventions").

DRF's own fields coerce: a CharField takes 12 as "12", a BooleanField takes "true", 1 and
"on", an IntegerField takes "7" and 7.5 ("7.0" too), a ChoiceField takes "2" for 2, a
DecimalField takes "" as a number error but " 1e3 " as 1000. A client that reads the
schema must be able to trust that what it does not allow is refused, so these take
exactly what the schema shows (tests/api/test_api_schema.py holds them to it with every
Schemathesis check, tests/api/test_api_strict_fields.py one ugly input at a time).

A query string carries only text, so there an integer is ASCII digits and a boolean is
`true` or `false`; an empty parameter (`?status=`) is a value like any other and is
refused, not read as absent (DRF reads an HTML form's empty field as absent). Which of
the two a field reads is known from its serializer's data: the view passes a QueryDict
for the query string and the parsed JSON for a body.

The patterns are the schema's and the check's at once (`pattern` below, and the
OpenAPI extensions in scheduling/api/schema.py print them)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from scheduling.limits import FIRST_YEAR, LAST_YEAR
from scheduling.models import Channel

# What Python's str.strip() (and so DRF's trim_whitespace) removes: a string of only these
# is blank, whatever a regex engine's \s says.
_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Text: no NUL (DRF refuses it; PostgreSQL cannot store it), and, when it may not be
# blank, at least one character that is neither NUL nor space.
ANY_TEXT = "^[^\x00]*$"
NOT_BLANK = f"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"

INTEGER_TEXT = re.compile(r"-?[0-9]+")
# A header value as it arrives (Latin-1, as WSGI reads it) that str.isprintable() takes:
# no control characters, no DEL to NBSP, no soft hyphen. The Idempotency-Key's rule.
PRINTABLE_HEADER = "^[^\x00-\x1f\x7f-\xa0\xad]{0,255}$"


def _years(first: int, last: int) -> str:
    """The year range as a pattern (a whole millennium, as scheduling/limits.py has it)."""
    if first % 1000 or last != first + 999:
        raise ValueError(f"no year pattern for {first}-{last}")
    return f"{first // 1000}[0-9]{{3}}"


YEAR = _years(FIRST_YEAR, LAST_YEAR)
QUERY_BOOLEANS = {"true": True, "false": False}


def in_query_string(field: serializers.Field) -> bool:
    """The field is read from a query string (a QueryDict), not from a JSON body."""
    return isinstance(getattr(field.root, "initial_data", None), QueryDict)


class StrictField(serializers.Field):
    """A query parameter given empty is given: `?status=` is refused, not skipped."""

    def get_value(self, dictionary: Any) -> Any:
        if isinstance(dictionary, QueryDict) and self.field_name is not None:
            return dictionary.get(self.field_name, empty)
        return super().get_value(dictionary)


class CharField(StrictField, serializers.CharField):
    """A JSON string; a number, boolean, object or array is refused, not written down."""

    default_error_messages = {"not_a_string": "Must be a string."}

    @property
    def pattern(self) -> str:
        return ANY_TEXT if self.allow_blank or not self.trim_whitespace else NOT_BLANK

    def run_validation(self, data: Any = empty) -> Any:
        # Before DRF's blank check, which would read str(0) as text.
        if data is not empty and data is not None and not isinstance(data, str):
            self.fail("not_a_string")
        return super().run_validation(data)


class EmailField(CharField, serializers.EmailField):
    """A JSON string that is an e-mail address."""


class BooleanField(StrictField, serializers.BooleanField):
    """JSON true or false; in a query string `true` or `false`."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if in_query_string(self):
            if isinstance(data, str) and data in QUERY_BOOLEANS:
                return QUERY_BOOLEANS[data]
        elif isinstance(data, bool):
            return data
        self.fail("invalid")


class IntegerField(StrictField, serializers.IntegerField):
    """A JSON integer (not true, not "7", not 7.5); in a query string ASCII digits."""

    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data: Any) -> int:
        if in_query_string(self):
            if not isinstance(data, str) or not INTEGER_TEXT.fullmatch(data):
                self.fail("invalid")
            if len(data) > self.MAX_STRING_LENGTH:
                self.fail("max_string_length")
            return int(data)
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            return data
        # JSON Schema counts 7.0 as an integer, so it is one.
        if isinstance(data, float) and data.is_integer():
            return int(data)
        self.fail("invalid")


class ChoiceField(StrictField, serializers.ChoiceField):
    """One of the choices as the schema's enum writes it: 2 is not "2", true is not 1."""

    def to_internal_value(self, data: Any) -> Any:
        if in_query_string(self):
            return super().to_internal_value(data)
        for choice in self.choices:
            if _json_type(choice) is type(data) and choice == data:
                return choice
        if data == "" and self.allow_blank:
            return ""
        self.fail("invalid_choice", input=data)


def _json_type(value: Any) -> type:
    """The JSON type a choice is written as (a TextChoices member is a string)."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind
    return type(value)


class Money(StrictField, serializers.DecimalField):
    """An amount as a decimal string, "1500.00": digits, at most two places, no sign, no
    exponent, no spaces. With `numbers=True` a JSON number is taken too, read as its
    decimal text (docs/api.md, "Payments"), never as binary floating point."""

    default_error_messages = {
        "invalid": 'Give the amount as a decimal string, e.g. "1500.00".',
        "string": 'Give the amount as a decimal string, e.g. "1500.00", not a number.',
    }

    def __init__(self, *, numbers: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 10)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(**kwargs)
        self.numbers = numbers
        places = self.decimal_places
        assert places is not None and places >= 1 and self.max_digits is not None
        whole = self.max_digits - places
        fraction = rf"(\.[0-9]{{1,{places}}})?"
        if self.min_value is None or Decimal(self.min_value) == 0:
            body = rf"(0|[1-9][0-9]{{0,{whole - 1}}}){fraction}"
        else:
            # Positive: the smallest amount is one unit of the last place.
            assert Decimal(self.min_value) == Decimal(1).scaleb(-places), self.min_value
            body = _positive_fraction(whole, places)
        self.pattern = f"^({body})$"
        self._pattern = re.compile(self.pattern)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, str):
            if not self._pattern.fullmatch(data):
                self.fail("invalid")
        elif not self.numbers:
            self.fail("string")
        elif isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


def _positive_fraction(whole: int, places: int) -> str:
    """1 and up with up to `places` places, or 0.<digits> that are not all zero (no
    lookahead: the schema's pattern must mean the same in every regex engine)."""
    fraction = rf"(\.[0-9]{{1,{places}}})?"
    below_one = "|".join(
        rf"0\.{'0' * zeros}[1-9][0-9]{{0,{places - zeros - 1}}}" for zeros in range(places)
    )
    return rf"[1-9][0-9]{{0,{whole - 1}}}{fraction}|{below_one}"


# An input body or query (no docstring: the schema would print it on every input).
# `closed`: the schema says additionalProperties: false (the view refuses unknown fields
# by name); `one_of`: exactly one of these fields is given (the serializer's validate
# refuses both and neither). scheduling/api/schema.py's InputSchema prints both.
class InputSerializer(serializers.Serializer):
    closed: bool = False
    one_of: tuple[str, ...] = ()


class Patterned(StrictField):
    """A field whose text must also match `pattern` (the schema shows it)."""

    pattern: str


@extend_schema_field(
    {
        "type": "object",
        "description": "channel: how to reach the client; therapist: the preferred "
        "therapist's id (an active therapist), offered first by any-therapist booking.",
        "properties": {
            "channel": {"type": "string", "enum": list(Channel.values), "nullable": True},
            "therapist": {
                "type": "integer",
                "minimum": 1,
                "maximum": 2**63 - 1,
                "nullable": True,
            },
        },
    }
)
class Preferences(serializers.JSONField):
    """A client's preferences: a JSON object, checked by the service (clients.py)."""

    # Braces doubled: DRF formats the message.
    default_error_messages = {"invalid": 'Give an object, e.g. {{"channel": "sms"}}.'}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            self.fail("invalid")
        return super().to_internal_value(data)
