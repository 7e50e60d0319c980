"""Error bodies for the OpenAPI document (the shapes of API.md, "Errors")."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

_detail = {"detail": serializers.CharField()}

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
                    ],
                    required=False,
                ),
                "failures": serializers.ListField(
                    required=False,
                    help_text="series_conflict: each occurrence that cannot be booked or moved.",
                    child=inline_serializer(
                        "OccurrenceFailure",
                        {
                            "start": serializers.DateTimeField(),
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
