"""The desk's forms: they read and type what was typed; the services decide the rest.

Nothing here repeats a business rule. Whether a client, service or therapist exists,
whether a start is free, in working time, on the step or too far ahead: the booking
services answer that, in their own words, and the views put the answer beside the field.
The forms only make sure the services are called with values of the right type, and that
what is shown again after an error cannot break the page (a year 10000, a start on a day
other than the one chosen).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.utils import timezone

from scheduling.domain import local_date
from scheduling.limits import FIRST_YEAR, LAST_YEAR, NAME_MAX, PHONE_MAX, TEXT_MAX
from scheduling.models import ServiceArea
from scheduling.services.travel import default_minutes

# The days the desk can page through or book on. Not a booking rule (the services keep
# those): outside this range date arithmetic itself breaks (9999-12-31 has no next day).
FIRST_DAY = date(FIRST_YEAR, 1, 1)
LAST_DAY = date(LAST_YEAR, 12, 31)


def sensible_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise forms.ValidationError(
            f"Check the year: {value.year} is not a year the desk books in.", code="year"
        )
    return value


def id_field(label: str, what: str, **kwargs) -> forms.IntegerField:
    """An id chosen from a list. Typed, not looked up: the service says if it exists."""
    message = f"Choose {what}."
    return forms.IntegerField(
        label=label,
        min_value=1,
        error_messages={"required": message, "invalid": message, "min_value": message},
        **kwargs,
    )


class DayField(forms.DateField):
    widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    default_error_messages = {"invalid": "Enter a date like 2030-05-01.", "required": "Pick a day."}

    def validate(self, value: date | None) -> None:
        super().validate(value)
        if value is not None:
            sensible_day(value)


class StartField(forms.CharField):
    """A start time as offered on the page: an ISO date-time with its offset."""

    default_error_messages = {
        "required": "Pick a start time from the free times shown.",
        "invalid": "Pick a start time from the free times shown.",
    }

    # A CharField in, a datetime out, as Django's own date and time fields return.
    def to_python(self, value: Any) -> datetime | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        try:
            start = datetime.fromisoformat(text)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        if timezone.is_naive(start) or not FIRST_DAY <= start.date() <= LAST_DAY:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return start


# What the mixin is mixed into, for the type checker only.
if TYPE_CHECKING:
    _Form = forms.BaseForm
else:
    _Form = object


class StartOnDayMixin(_Form):
    """The start must be one of the chosen day's: the list on the page is that day's."""

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        if data is None:  # a clean() that returns nothing leaves cleaned_data as it is
            data = self.cleaned_data
        start, day = data.get("start"), data.get("date")
        if start is not None and day is not None and local_date(start) != day:
            self.add_error(
                "start",
                f"That time is on {local_date(start):%a %-d %b}, not on the day chosen "
                f"({day:%a %-d %b}). Pick one of the times shown.",
            )
        return data


class AppointmentForm(StartOnDayMixin, forms.Form):
    client = id_field("Client", "a client: search by name or phone, or add a new one")
    service = id_field("Service", "a service")
    date = DayField(label="Day")
    # Left empty: any free therapist, by the fairness rule (services/choosing.py).
    therapist = id_field("Therapist", "a therapist", required=False)
    start = StartField(label="Start time")
    address = forms.CharField(
        label="Address",
        required=False,
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Where the session takes place. Left empty, the client's address is used.",
    )
    notes = forms.CharField(
        label="Notes for the therapist",
        required=False,
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    needs_transport = forms.BooleanField(
        label="Needs transport (a driver takes the therapist there and back)", required=False
    )
    # Left empty: the client's area, else the default travel (the booking service decides).
    area = id_field("Area", "an area from the list", required=False)
    # A standing booking (services/series.py decides the counts and dates).
    every_weeks = forms.TypedChoiceField(
        label="Repeat",
        required=False,
        coerce=int,
        empty_value=None,
        choices=[
            ("", "Does not repeat"),
            (1, "Every week"),
            (2, "Every 2 weeks"),
            (4, "Every 4 weeks"),
        ],
        error_messages={"invalid_choice": "Choose how often it repeats from the list."},
    )
    count = forms.IntegerField(
        label="Number of dates",
        required=False,
        min_value=1,
        max_value=1000,
        help_text="2 to 26, the first included. Or give the last day instead.",
        error_messages={"invalid": "Enter a number of dates, like 8."},
    )
    until = DayField(label="Or until (the last day)", required=False)
    skip_conflicts = forms.BooleanField(
        label="Book the free dates and leave out the ones that clash", required=False
    )


class ClientForm(forms.Form):
    """A new client, added from the booking form. The service checks name and phone."""

    name = forms.CharField(label="Name", max_length=NAME_MAX, required=False)
    phone = forms.CharField(
        label="Phone",
        max_length=PHONE_MAX,
        required=False,
        help_text="Local (0917 123 4567) or international (+63 917 123 4567).",
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    address = forms.CharField(
        label="Home address",
        max_length=TEXT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    area = id_field(
        "Area",
        "an area from the list",
        required=False,
        help_text="Where the address is: it sets the therapist's travel to them.",
    )

    prefix = "new"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The areas offered now, to choose from (the service checks the one sent).
        self.fields["area"].widget = forms.Select(
            choices=[("", f"Not known: the default travel ({default_minutes()} min)")]
            + [
                (a.pk, f"{a.name} ({a.travel_minutes} min each way)")
                for a in ServiceArea.objects.active()
            ]
        )


def scope_field() -> forms.ChoiceField:
    """Which dates of a standing booking an action takes (services/series_scopes.py)."""
    return forms.ChoiceField(
        label="Which dates",
        required=False,
        initial="this",
        choices=[
            ("this", "This date only"),
            ("following", "This date and the later ones"),
            ("all", "Every date not yet done"),
        ],
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose which dates from the list."},
    )


class RescheduleForm(StartOnDayMixin, forms.Form):
    date = DayField(label="New day")
    start = StartField(label="New start time")
    reason = forms.CharField(
        label="Reason (optional)",
        required=False,
        max_length=TEXT_MAX,
        widget=forms.TextInput(),
    )
    # Moving a standing booking's dates together: each by as many days, to the new time.
    scope = scope_field()

    prefix = "reschedule"


class ReasonForm(forms.Form):
    """Cancel and no-show: the reason goes into the appointment's history."""

    reason = forms.CharField(
        label="Reason", max_length=TEXT_MAX, required=False, widget=forms.TextInput()
    )
    # Cancelling an occurrence of a standing booking (services/series_scopes.py).
    scope = scope_field()

    def __init__(self, *args, reason_required: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["reason"]
        field.required = reason_required
        field.error_messages["required"] = "Say why, for the appointment's history."
        if not reason_required:
            field.label = "Reason (optional)"


class CollectionForm(forms.Form):
    """What a therapist collected at the visit. The amount stays text: the payments
    service reads it as money (and refuses a float, a third decimal place, a negative)."""

    method = forms.ChoiceField(
        label="How the client paid",
        choices=[("cash", "Cash"), ("ewallet", "E-wallet (GCash, Maya)")],
        initial="cash",
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose cash or e-wallet.",
            "invalid_choice": "Choose cash or e-wallet.",
        },
    )
    amount = forms.CharField(
        label="Amount",
        max_length=20,
        error_messages={"required": "Give the amount collected, such as 1500.00."},
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    reference = forms.CharField(
        label="E-wallet reference",
        max_length=64,
        required=False,
        help_text="The reference number on the client's GCash or Maya receipt.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
