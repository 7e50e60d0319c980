"""Error bodies for the OpenAPI document (the shapes of API.md, "Errors"), and what the
strict input fields accept."""

from decimal import Decimal

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

_detail: dict[str, serializers.Field] = {"detail": serializers.CharField()}

ERRORS = {
    400: OpenApiResponse(
        inline_serializer(
            "ValidationError",
            {
                **_detail,
                "errors": serializers.DictField(
                    child=serializers.ListField(child=serializers.CharField())
                ),
            },
        ),
        description="Malformed or invalid input; nothing was written.",
    ),
    401: OpenApiResponse(inline_serializer("Unauthenticated", _detail)),
    403: OpenApiResponse(inline_serializer("Forbidden", _detail)),
    404: OpenApiResponse(inline_serializer("NotFound", _detail)),
    409: OpenApiResponse(
        inline_serializer(
            "ConflictError",
            {
                **_detail,
                "code": serializers.ChoiceField(choices=["conflict", "invalid_transition"]),
                "status": serializers.CharField(required=False),
                "reason": serializers.ChoiceField(
                    choices=[
                        "therapist_busy",
                        "not_working",
                        "no_driver",
                        "driver_busy",
                        "no_therapist",
                        "off_shift",
                        "vehicle",
                        "needed_later",
                        "series_conflict",
                        "visit_conflict",
                        "part_of_visit",
                    ],
                    required=False,
                ),
                "failures": serializers.ListField(
                    required=False,
                    help_text="series_conflict: each occurrence that cannot be booked or "
                    "moved (with its start); visit_conflict: each session of the visit that "
                    "cannot be booked (with its session, service and therapist).",
                    child=inline_serializer(
                        "Failure",
                        {
                            "start": serializers.DateTimeField(required=False),
                            "session": serializers.IntegerField(
                                required=False, help_text="The session's place, from 0."
                            ),
                            "service": serializers.IntegerField(required=False),
                            "therapist": serializers.IntegerField(
                                required=False,
                                allow_null=True,
                                help_text="null: no therapist could be chosen.",
                            ),
                            "reason": serializers.CharField(),
                            "detail": serializers.CharField(),
                            "appointment": serializers.IntegerField(required=False),
                        },
                    ),
                ),
                "conflicts": serializers.ListField(
                    required=False,
                    child=inline_serializer(
                        "ConflictItem",
                        {
                            "appointment": serializers.IntegerField(allow_null=True),
                            "trip": serializers.IntegerField(required=False),
                            "leg": serializers.ChoiceField(
                                choices=["dropoff", "pickup"], required=False
                            ),
                            "start": serializers.DateTimeField(),
                            "end": serializers.DateTimeField(),
                        },
                    ),
                ),
            },
        ),
        description="The time is taken (the therapist, or no driver can carry the legs), "
        "or the action is not allowed from the status.",
    ),
    429: OpenApiResponse(inline_serializer("TooManyRequests", _detail)),
}

KEY_REUSED = OpenApiResponse(
    inline_serializer("KeyReused", _detail),
    description="The Idempotency-Key was used before with a different request.",
)

STREAM_PRUNED = OpenApiResponse(
    inline_serializer(
        "StreamPruned",
        {
            **_detail,
            "code": serializers.ChoiceField(choices=["stream_pruned"]),
            "pruned_through": serializers.IntegerField(),
            "last_seq": serializers.IntegerField(),
        },
    ),
    description="`after` is older than the events kept: reload, then continue after last_seq.",
)


# --- what the strict input fields accept (scheduling/api/fields.py) --------------------------
# The schema shows each field's own pattern, so what it allows is what the field takes.


class StrictTextSchema(OpenApiSerializerFieldExtension):
    target_class = "scheduling.api.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and "pattern" not in schema:
            schema["pattern"] = self.target.pattern
        return schema


class PatternedSchema(OpenApiSerializerFieldExtension):
    """A field with a `pattern` of its own (the calendar fields' year range)."""

    target_class = "scheduling.api.fields.Patterned"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["pattern"] = self.target.pattern
        return schema


class MoneySchema(OpenApiSerializerFieldExtension):
    target_class = "scheduling.api.fields.Money"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        text = {"type": "string", "pattern": field.pattern, "example": "1500.00"}
        if direction != "request" or not field.numbers:
            return text
        places = Decimal(1).scaleb(-field.decimal_places)
        number = {
            "type": "number",
            "multipleOf": float(places),
            "minimum": float(field.min_value if field.min_value is not None else 0),
            "maximum": float(Decimal(10) ** (field.max_digits - field.decimal_places) - places),
        }
        return {"oneOf": [text, number]}


class InputSchema(OpenApiSerializerExtension):
    """additionalProperties: false for bodies whose unknown fields are refused, and
    `one_of` as the JSON Schema oneOf of the requireds."""

    target_class = "scheduling.api.fields.InputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if self.target.closed:
            schema["additionalProperties"] = False
        if self.target.one_of:
            schema["oneOf"] = [{"required": [name]} for name in self.target.one_of]
        return schema
