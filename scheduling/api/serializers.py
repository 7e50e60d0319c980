"""Shapes of requests and responses. No business rule lives here: input serializers
check types and sizes only, the services decide everything else."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from scheduling.api import fields as strict
from scheduling.limits import (
    FIRST_YEAR,
    LAST_YEAR,
    NAME_MAX,
    PHONE_MAX,
    SEARCH_MAX,
    TEXT_MAX,
    YEARS_TEXT,
)
from scheduling.models import Appointment, AppointmentStatus, Client, Service, Trip, User
from scheduling.realtime.events import shaped_for

YEARS = (FIRST_YEAR, LAST_YEAR)


class AwareDateTimeField(strict.Patterned, serializers.DateTimeField):
    """ISO 8601 with an offset: a time without one is ambiguous, so it is refused."""

    pattern = f"^{strict.YEAR}-"

    default_error_messages = {
        "naive": "Give the time with its UTC offset, e.g. 2030-05-01T14:00:00+08:00.",
        "out_of_range": f"Give {YEARS_TEXT}.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                self.fail("invalid", format="YYYY-MM-DDThh:mm[:ss]±hh:mm")
            if timezone.is_naive(parsed):
                self.fail("naive")
            if not YEARS[0] <= parsed.year <= YEARS[1]:
                self.fail("out_of_range")
        return super().to_internal_value(value)


class DayField(strict.Patterned, serializers.DateField):
    """A calendar day the business could work on (and that date arithmetic survives)."""

    pattern = f"^{strict.YEAR}-[0-9]{{2}}-[0-9]{{2}}$"

    default_error_messages = {"out_of_range": f"Give {YEARS_TEXT}."}

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if not YEARS[0] <= day.year <= YEARS[1]:
            self.fail("out_of_range")
        return day


# Ids are bigints; anything larger can name nothing and must not reach the database.
MAX_ID = 2**63 - 1


def ident(**kwargs) -> serializers.IntegerField:
    return strict.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def text(**kwargs) -> serializers.CharField:
    return strict.CharField(max_length=TEXT_MAX, allow_blank=True, **kwargs)


# --- output ---------------------------------------------------------------------------------


class ClientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Client
        fields = ["id", "name", "phone", "email", "address", "area", "notes"]


class ServiceSerializer(serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0)

    class Meta:
        model = Service
        fields = ["id", "name", "duration_minutes", "price", "buffer_minutes", "active"]
        extra_kwargs = {
            "duration_minutes": {"min_value": 1, "max_value": 24 * 60},
            "buffer_minutes": {"min_value": 0, "max_value": 24 * 60},
            "name": {"max_length": 120},
        }


class StaffSerializer(serializers.ModelSerializer):
    vehicle = serializers.SerializerMethodField()
    on_shift = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "role", "vehicle", "on_shift"]

    def get_vehicle(self, user: User) -> str | None:
        profile = _driver_profile(user)
        return profile.vehicle if profile else None

    def get_on_shift(self, user: User) -> bool | None:
        profile = _driver_profile(user)
        return profile.on_shift if profile else None


def _driver_profile(user: User):
    return getattr(user, "driver_profile", None) if user.role == "driver" else None


class TripSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trip
        fields = [
            "id",
            "appointment",
            "leg",
            "window_start",
            "window_end",
            "status",
            "driver",
            "passengers",
            "visit",
        ]
        extra_kwargs = {
            "passengers": {"help_text": "Therapists carried: a visit's trip carries them all."},
            "visit": {"help_text": "The visit this trip is shared by, or null."},
        }


class AppointmentSerializer(serializers.ModelSerializer):
    trips = TripSerializer(many=True, read_only=True)

    def to_representation(self, instance):
        # The same shaping as the live stream: a driver gets the address and the times,
        # not the desk's notes.
        data = super().to_representation(instance)
        request = self.context.get("request")
        return shaped_for(request.user, data) if request is not None else data

    class Meta:
        model = Appointment
        fields = [
            "id",
            "client",
            "service",
            "therapist",
            "start",
            "end",
            "status",
            "address",
            "notes",
            "price",
            "payment_status",
            "needs_transport",
            "response_deadline",
            "travel_minutes",
            "area",
            "busy_from",
            "busy_until",
            "series",
            "visit",
            "trips",
        ]
        extra_kwargs = {
            "series": {"help_text": "The standing booking this is an occurrence of, or null."},
            "visit": {"help_text": "The couples or group visit this is a session of, or null."},
            "response_deadline": {
                "help_text": "When the therapist must answer by; null for a series' later "
                "occurrences (the first occurrence's answer covers them)."
            },
            "travel_minutes": {"help_text": "One way, base to client, as booked."},
            "busy_from": {"help_text": "The therapist leaves base (start - travel)."},
            "busy_until": {"help_text": "The therapist is back (end + buffer + travel)."},
        }


class SeriesRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    appointments = serializers.ListField(
        child=serializers.IntegerField(), help_text="Every occurrence booked, in start order."
    )


class SkippedSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    reason = serializers.CharField(help_text="therapist_busy, not_working, no_driver, invalid…")
    detail = serializers.CharField()


class SeriesBookingSerializer(AppointmentSerializer):
    """A repeat's answer: its first occurrence, the series, and with skip_conflicts the
    dates left out."""

    series = SeriesRefSerializer()
    skipped = SkippedSerializer(many=True, required=False)

    class Meta(AppointmentSerializer.Meta):
        fields = [*AppointmentSerializer.Meta.fields, "skipped"]


# A booking's 201: one appointment, or with repeat the series' first occurrence.
CREATED_APPOINTMENT = PolymorphicProxySerializer(
    component_name="AppointmentCreated",
    serializers=[AppointmentSerializer, SeriesBookingSerializer],
    resource_type_field_name=None,
)


class EventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    type = serializers.CharField()
    # The stubs see this as replacing Serializer.data; DRF's metaclass takes declared
    # fields out of the class body, so at run time the property is untouched.
    data = serializers.JSONField()  # type: ignore[assignment]


class EventPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="Pass as ?after= to continue.")
    more = serializers.BooleanField(help_text="True when more events are waiting.")


class TherapistStartsSerializer(serializers.Serializer):
    therapist = serializers.IntegerField()
    name = serializers.CharField()
    starts = serializers.ListField(child=serializers.DateTimeField())
    no_driver = serializers.ListField(
        child=serializers.DateTimeField(),
        help_text="With needs_transport: starts the therapist could make but no driver "
        "could carry (empty otherwise).",
    )


class AvailabilitySerializer(serializers.Serializer):
    service = serializers.IntegerField()
    date = serializers.DateField()
    travel_minutes = serializers.IntegerField(help_text="One way, as a booking would get.")
    needs_transport = serializers.BooleanField()
    therapists = TherapistStartsSerializer(many=True)


class ShiftSerializer(serializers.Serializer):
    on_shift = serializers.BooleanField()
    available_since = serializers.DateTimeField(allow_null=True, read_only=True)
    queue_position = serializers.IntegerField(allow_null=True, read_only=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)


# --- input ----------------------------------------------------------------------------------


class ServiceInput(strict.InputSerializer):
    name = strict.CharField(max_length=120)
    duration_minutes = strict.IntegerField(min_value=1, max_value=24 * 60)
    price = strict.Money(min_value=0)
    buffer_minutes = strict.IntegerField(min_value=0, max_value=24 * 60, required=False)
    active = strict.BooleanField(required=False)


class ShiftInput(strict.InputSerializer):
    on_shift = strict.BooleanField()


class ClientInput(strict.InputSerializer):
    name = strict.CharField(max_length=NAME_MAX)
    phone = strict.CharField(max_length=PHONE_MAX)
    email = strict.EmailField(required=False, allow_blank=True, max_length=254)
    address = text(required=False)
    area = ident(required=False, allow_null=True, help_text="Service area (sets the travel time).")
    notes = text(required=False)


class ClientPatch(ClientInput):
    """The same fields as creation, each optional, and the client's preferences; any
    other field is refused by name."""

    closed = True
    preferences = strict.Preferences(required=False)


class RepeatInput(strict.InputSerializer):
    one_of = ("count", "until")
    every_weeks = strict.ChoiceField(choices=[1, 2, 4])
    count = strict.IntegerField(
        required=False, min_value=2, max_value=26, help_text="2 to 26 occurrences."
    )
    until = DayField(required=False, help_text="The last day an occurrence may fall on.")

    def validate(self, attrs):
        if ("count" in attrs) == ("until" in attrs):
            raise serializers.ValidationError({"count": ["Give either count or until."]})
        return attrs

    def run_validation(self, data=serializers.empty):
        # The error body maps each field to a list of messages (api.md, "Errors"): a
        # nested field's message is kept under `repeat`, prefixed with its name.
        try:
            return super().run_validation(data)
        except serializers.ValidationError as error:
            detail = error.detail
            if not isinstance(detail, dict):
                raise
            raise serializers.ValidationError(
                [
                    str(m) if name == "non_field_errors" else f"{name}: {m}"
                    for name, messages in detail.items()
                    for m in (messages if isinstance(messages, list) else [messages])
                ]
            ) from None


class AppointmentInput(strict.InputSerializer):
    client = ident()
    service = ident()
    therapist = ident(
        required=False,
        allow_null=True,
        help_text="Omitted or null: the best free therapist by the fairness rule.",
    )
    start = AwareDateTimeField()
    address = text(required=False, default="")
    notes = text(required=False, default="")
    needs_transport = strict.BooleanField(required=False, default=False)
    area = ident(
        required=False,
        allow_null=True,
        help_text="A service area for this booking; else the client's, else the default.",
    )
    repeat = RepeatInput(
        required=False, help_text="Book a standing appointment: every 1, 2 or 4 weeks."
    )
    skip_conflicts = strict.BooleanField(
        required=False,
        default=False,
        help_text="With repeat: book the free dates and list the others as skipped.",
    )


class AppointmentPatch(strict.InputSerializer):
    """Only these two fields; any other is refused by name."""

    closed = True
    address = text(required=False)
    notes = text(required=False)


class ActionInput(strict.InputSerializer):
    reason = text(required=False, default="")
    on_behalf = strict.BooleanField(
        required=False,
        default=False,
        help_text="The desk takes the therapist's (or driver's) action for them, confirmed "
        "by phone; the history records both (receptionists and managers only).",
    )


SCOPE_HELP = (
    "this (default), following (this occurrence and the series' later ones) or all "
    "(every occurrence not yet finished)."
)


class CancelInput(ActionInput):
    scope = strict.ChoiceField(
        choices=["this", "following", "all"], required=False, default="this", help_text=SCOPE_HELP
    )


class RescheduleInput(strict.InputSerializer):
    start = AwareDateTimeField()
    reason = text(required=False, default="")
    scope = strict.ChoiceField(
        choices=["this", "following", "all"], required=False, default="this", help_text=SCOPE_HELP
    )


class AvailabilityQuery(strict.InputSerializer):
    service = ident()
    date = DayField()
    therapist = ident(required=False)
    needs_transport = strict.BooleanField(required=False, default=False)
    client = ident(required=False, help_text="Whose address: their area sets the travel.")
    area = ident(required=False, help_text="A service area; overrides the client's.")


class AppointmentFilter(strict.InputSerializer):
    date = DayField(required=False)
    status = strict.ChoiceField(choices=AppointmentStatus.values, required=False)
    therapist = ident(required=False)
    client = ident(required=False, help_text="One client's appointments (issue 13).")


class EventsQuery(strict.InputSerializer):
    after = strict.IntegerField(min_value=0, max_value=MAX_ID, required=False, default=0)
    limit = strict.IntegerField(min_value=1, max_value=1000, required=False, default=500)


class StaffQuery(strict.InputSerializer):
    role = strict.ChoiceField(
        choices=["therapist", "driver", "receptionist", "manager"], required=False
    )


class ClientQuery(strict.InputSerializer):
    q = strict.CharField(max_length=SEARCH_MAX, required=False, allow_blank=True)


class LoginInput(strict.InputSerializer):
    username = strict.CharField(max_length=150)
    password = strict.CharField(
        max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )
