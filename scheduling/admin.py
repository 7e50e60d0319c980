"""The managers' admin: every model, on a site only managers may enter.

The role is the authority in this product, not Django's per-model permissions: managers
(superusers included) may use every page here, and nobody else may log in. Status changes
go through the services and their state machines, so statuses, the transition log and
the event stream are read-only here, and nothing is hard-deleted except schedule entries
(hours, breaks, time off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from scheduling.admin_forms import ClientForm, SavedByService, ServiceForm
from scheduling.admin_site import ManagerModelAdmin, ManagerOnly, ReadOnly, ReadOnlyModelAdmin, site
from scheduling.errors import ValidationFailed
from scheduling.models import (
    Appointment,
    Break,
    Client,
    DriverProfile,
    Payment,
    Role,
    Service,
    ServiceArea,
    TherapistProfile,
    TimeOff,
    Transition,
    Trip,
    User,
    WorkingHours,
)
from scheduling.models.people import ClientQuerySet
from scheduling.phones import normalize_phone
from scheduling.services.appointments import DETAIL_FIELDS, update_appointment_details
from scheduling.services.staff import ensure_profile

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

__all__ = ["site"]  # config/urls.py mounts it


# --- forms --------------------------------------------------------------------------------


class WeekdayField(forms.TypedChoiceField):
    def __init__(self, **kwargs) -> None:
        kwargs.pop("max_value", None)
        kwargs.pop("min_value", None)
        super().__init__(choices=list(enumerate(WEEKDAYS)), coerce=int, **kwargs)


# What the mixins are mixed into, for the type checker only.
if TYPE_CHECKING:
    _Admin = admin.options.BaseModelAdmin[Any]
else:
    _Admin = object


class WeekdayChoices(_Admin):
    """Weekdays stored as 0-6 are picked by name."""

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "weekday":
            return WeekdayField(label="Weekday", help_text="", required=True)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


def clean_phone_value(value: str, *, required: bool) -> str:
    if not value and not required:
        return ""
    try:
        return normalize_phone(value)
    except ValidationFailed as exc:
        raise ValidationError(exc.message) from None


class StaffChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):  # type: ignore[name-defined]  # the stubs declare no Meta
        model = User

    def clean_phone(self) -> str:
        return clean_phone_value(self.cleaned_data.get("phone", ""), required=False)


class StaffCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):  # type: ignore[name-defined]  # as above
        model = User
        fields = ("username", "role", "first_name", "last_name", "phone")

    def clean_phone(self) -> str:
        return clean_phone_value(self.cleaned_data.get("phone", ""), required=False)


# --- staff ----------------------------------------------------------------------------------


class TherapistProfileInline(ManagerOnly, admin.StackedInline):
    model = TherapistProfile
    can_delete = False
    filter_horizontal = ("services",)


class DriverProfileInline(ManagerOnly, admin.StackedInline):
    model = DriverProfile
    can_delete = False
    fields = ("vehicle", "seats", "on_shift", "available_since")
    # Queue state belongs to the shift service and the dispatcher.
    readonly_fields = ("on_shift", "available_since")


class WorkingHoursInline(WeekdayChoices, ManagerOnly, admin.TabularInline):
    model = WorkingHours
    deletable = True
    extra = 0


class BreakInline(WeekdayChoices, ManagerOnly, admin.TabularInline):
    model = Break
    deletable = True
    extra = 0


class TimeOffInline(ManagerOnly, admin.TabularInline):
    model = TimeOff
    deletable = True
    extra = 0


FIELD_INLINES: dict[str, list[type[admin.options.InlineModelAdmin[Any, Any]]]] = {
    Role.THERAPIST: [TherapistProfileInline, WorkingHoursInline, BreakInline, TimeOffInline],
    Role.DRIVER: [DriverProfileInline, WorkingHoursInline, BreakInline, TimeOffInline],
}


@admin.register(User, site=site)
class StaffAdmin(ManagerOnly, DjangoUserAdmin):
    form = StaffChangeForm
    add_form = StaffCreationForm
    list_display = ("username", "full_name", "role", "phone", "is_active", "last_login")
    list_filter = ("role", "is_active", "is_superuser")
    search_fields = ("username", "first_name", "last_name", "email", "phone")
    ordering = ("username",)
    filter_horizontal = ()
    readonly_fields = ("last_login", "date_joined")
    # Deactivate (is_active) instead: appointments and logs keep pointing at the person.
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Role", {"fields": ("role", "phone", "is_active", "is_superuser")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "role",
                    "first_name",
                    "last_name",
                    "phone",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )

    @admin.display(description="name", ordering="last_name")
    def full_name(self, obj: User) -> str:
        return obj.get_full_name()

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list[Any]:
        if obj is None:
            return []
        return FIELD_INLINES.get(obj.role, [])

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the inlines, so a profile filled in on the page is the one kept.
        ensure_profile(
            user=form.instance, with_default_hours=not change or "role" in form.changed_data
        )


class StaffProfileAdmin(ManagerModelAdmin):
    autocomplete_fields = ("user",)
    list_select_related = ("user",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
    ordering = ("user__username",)


@admin.register(TherapistProfile, site=site)
class TherapistProfileAdmin(StaffProfileAdmin):
    list_display = ("user", "service_names", "service_count")
    list_filter = ("services",)
    filter_horizontal = ("services",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("services")
            .annotate(service_count=Count("services"))
        )

    @admin.display(description="services")
    def service_names(self, obj: TherapistProfile) -> str:
        return ", ".join(s.name for s in obj.services.all())

    @admin.display(description="count", ordering="service_count")
    def service_count(self, obj: TherapistProfile) -> int:
        count: int = getattr(obj, "service_count")  # annotated by get_queryset  # noqa: B009
        return count


@admin.register(DriverProfile, site=site)
class DriverProfileAdmin(StaffProfileAdmin):
    list_display = ("user", "vehicle", "seats", "on_shift", "available_since")
    list_filter = ("vehicle", "on_shift")
    readonly_fields = ("on_shift", "available_since")


class ScheduleAdmin(WeekdayChoices, ManagerModelAdmin):
    deletable = True
    autocomplete_fields = ("staff",)
    list_select_related = ("staff",)
    search_fields: ClassVar[tuple[str, ...]] = (
        "staff__username",
        "staff__first_name",
        "staff__last_name",
    )


@admin.register(WorkingHours, site=site)
class WorkingHoursAdmin(ScheduleAdmin):
    list_display = ("staff", "weekday_name", "start", "end")
    list_filter = ("weekday", "staff__role")
    ordering = ("staff__username", "weekday", "start")

    @admin.display(description="weekday", ordering="weekday")
    def weekday_name(self, obj: WorkingHours) -> str:
        return WEEKDAYS[obj.weekday]


@admin.register(Break, site=site)
class BreakAdmin(WorkingHoursAdmin):
    pass


@admin.register(TimeOff, site=site)
class TimeOffAdmin(ScheduleAdmin):
    list_display = ("staff", "start", "end", "reason")
    list_filter = ("staff__role",)
    date_hierarchy = "start"
    search_fields = (*ScheduleAdmin.search_fields, "reason")


# --- clients and catalogue -------------------------------------------------------------------


@admin.register(Client, site=site)
class ClientAdmin(SavedByService, ManagerModelAdmin):
    # Saved by create_client/update_client (admin_forms.py): one phone normalisation.
    form = ClientForm
    list_display = ("name", "phone", "email", "address", "area", "created_at")
    list_select_related = ("area",)
    list_filter = (("area", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name", "email", "address")
    search_help_text = "Name, email, address, or any 3+ digits of the phone number."
    readonly_fields = ("created_at", "updated_at")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            # Phone fragments the way the desk searches them: digits only, any spacing.
            results = results | cast(ClientQuerySet, queryset).search(search_term)
        return results, may_have_duplicates


@admin.register(Service, site=site)
class ServiceAdmin(SavedByService, ManagerModelAdmin):
    form = ServiceForm  # added through create_service (admin_forms.py)
    list_display = ("name", "duration_minutes", "buffer_minutes", "price", "active")
    list_filter = ("active",)
    search_fields = ("name", "description")


@admin.register(ServiceArea, site=site)
class ServiceAreaAdmin(ManagerModelAdmin):
    """Where clients live and how far it is. A change moves no booking already made: each
    appointment keeps the travel minutes it was booked with."""

    list_display = ("name", "travel_minutes", "active", "client_count")
    list_filter = ("active",)
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(clients_here=Count("clients"))

    @admin.display(description="Clients", ordering="clients_here")
    def client_count(self, area: ServiceArea) -> int:
        count: int = getattr(area, "clients_here")  # annotated by get_queryset  # noqa: B009
        return count


# --- appointments and trips -------------------------------------------------------------------


class TripInline(ReadOnly, admin.TabularInline):
    model = Trip
    fields = ("leg", "window_start", "window_end", "status", "driver", "assigned_at")
    readonly_fields = fields
    extra = 0


class TransitionInline(ReadOnly, admin.TabularInline):
    model = Transition
    fk_name = "appointment"
    fields = ("at", "action", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields
    extra = 0


class PaymentInline(ReadOnly, admin.TabularInline):
    # Money moves through services/payments.py (the therapist records, the desk verifies on
    # the appointment's page); the appointment's payment_status is derived from these rows.
    model = Payment
    fields = (
        "created_at",
        "method",
        "amount",
        "currency",
        "status",
        "reference",
        "collected_by",
        "verified_by",
        "settled_at",
    )
    readonly_fields = fields
    extra = 0


@admin.register(Appointment, site=site)
class AppointmentAdmin(ManagerModelAdmin):
    list_display = (
        "id",
        "start",
        "service",
        "therapist",
        "client",
        "status",
        "needs_transport",
        "price",
        "payment_status",
    )
    list_filter = (
        "status",
        "payment_status",
        "needs_transport",
        "service",
        ("therapist", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("service", "therapist", "client")
    search_fields = (
        "=id",
        "client__name",
        "client__phone_digits",
        "therapist__username",
        "therapist__first_name",
        "therapist__last_name",
    )
    date_hierarchy = "start"
    show_full_result_count = False
    inlines = (PaymentInline, TripInline, TransitionInline)
    # Booking, times, status and money go through the services (overlap checks, state
    # machine, transition log, stream events): only address and notes are edited here.
    # payment_status is derived from the payments (services/payments.py), never set by hand.
    readonly_fields = (
        "payment_status",
        "client",
        "service",
        "therapist",
        "start",
        "end",
        "blocked_until",
        "travel_minutes",
        "area",
        "busy_from",
        "busy_until",
        "status",
        "needs_transport",
        "price",
        "response_deadline",
        "created_by",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Appointment, form, change: bool) -> None:
        # Through the services, as every change: the row lock, and the stream event that
        # tells the dashboards (and the API's cached pages) when it commits.
        changed = {name: form.cleaned_data[name] for name in form.changed_data}
        details = {k: v for k, v in changed.items() if k in DETAIL_FIELDS}
        if details:
            # The admin site lets only signed-in staff this far.
            actor = cast(User, request.user)
            update_appointment_details(actor=actor, appointment_id=obj.pk, changes=details)


@admin.register(Trip, site=site)
class TripAdmin(ReadOnlyModelAdmin):
    list_display = (
        "id",
        "appointment",
        "leg",
        "window_start",
        "window_end",
        "status",
        "driver",
        "passengers",
    )
    list_filter = ("status", "leg", ("driver", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("appointment", "driver")
    search_fields = ("=id", "=appointment__id", "driver__username", "driver__last_name")
    date_hierarchy = "window_start"


# The read-only record pages register themselves on the same site.
from scheduling import admin_gateways, admin_records  # noqa: E402, F401
