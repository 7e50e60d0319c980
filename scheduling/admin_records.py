"""The admin's read-only pages of records the services write: the transition log, the
stream, idempotency keys, standing bookings, visits, dispatch and therapist-choice
decisions, notifications, payments and the periodic tasks' last runs. Registered on the
managers' site when scheduling/admin.py imports this module."""

from __future__ import annotations

from django.contrib import admin

from scheduling.admin_site import ReadOnlyModelAdmin, site
from scheduling.models import (
    DispatchDecision,
    EventCounter,
    IdempotencyKey,
    Notification,
    Payment,
    PeriodicRun,
    Series,
    StreamEvent,
    StreamEventRecipient,
    StreamRetention,
    TherapistChoice,
    Transition,
    Visit,
)

# --- logs and the stream ---------------------------------------------------------------------


@admin.register(Transition, site=site)
class TransitionAdmin(ReadOnlyModelAdmin):
    list_display = (
        "at",
        "appointment",
        "trip",
        "action",
        "from_status",
        "to_status",
        "actor",
        "on_behalf_of",
    )
    list_filter = ("action", "to_status")
    list_select_related = ("appointment", "trip", "actor", "on_behalf_of")
    search_fields = ("=appointment__id", "=trip__id", "actor__username", "reason")
    date_hierarchy = "at"


@admin.register(StreamEvent, site=site)
class StreamEventAdmin(ReadOnlyModelAdmin):
    list_display = ("seq", "type", "appointment_id", "trip_id", "created_at")
    list_filter = ("type",)
    search_fields = ("=seq", "=appointment__id", "=trip__id")
    date_hierarchy = "created_at"


@admin.register(StreamEventRecipient, site=site)
class StreamEventRecipientAdmin(ReadOnlyModelAdmin):
    list_display = ("event", "user")
    list_select_related = ("event", "user")
    search_fields = ("=event__seq", "user__username")


@admin.register(EventCounter, site=site)
class EventCounterAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "last_seq")


@admin.register(StreamRetention, site=site)
class StreamRetentionAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "pruned_through", "pruned_at")


@admin.register(IdempotencyKey, site=site)
class IdempotencyKeyAdmin(ReadOnlyModelAdmin):
    list_display = ("created_at", "user", "key", "status_code")
    list_select_related = ("user",)
    search_fields = ("=key", "user__username")
    date_hierarchy = "created_at"


# --- background work: dispatch decisions and notifications ----------------------------------


@admin.register(DispatchDecision, site=site)
class DispatchDecisionAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "decided_at", "trip", "outcome", "driver", "decided_by", "skipped_count")
    list_filter = ("outcome",)
    list_select_related = ("trip", "driver", "decided_by")
    search_fields = ("=trip__id", "driver__username")
    date_hierarchy = "decided_at"

    @admin.display(description="skipped")
    def skipped_count(self, obj: DispatchDecision) -> int:
        return len(obj.skipped)


@admin.register(Series, site=site)
class SeriesAdmin(ReadOnlyModelAdmin):
    """Standing bookings (services/series.py): booked, moved and cancelled through the
    desk and the API, so that every occurrence meets the booking checks."""

    list_display = ("id", "first_start", "every_weeks", "count", "until", "created_by")
    list_select_related = ("created_by",)
    date_hierarchy = "first_start"


@admin.register(Visit, site=site)
class VisitAdmin(ReadOnlyModelAdmin):
    """Couples and group visits (services/visits.py): booked and cancelled through the desk
    and the API, so that every session meets the booking checks, all or nothing."""

    list_display = ("id", "start", "client", "needs_transport", "created_by")
    list_select_related = ("client", "created_by")
    search_fields = ("=id", "client__name")
    date_hierarchy = "start"


@admin.register(TherapistChoice, site=site)
class TherapistChoiceAdmin(ReadOnlyModelAdmin):
    """How each "any free therapist" booking was decided (services/choosing.py)."""

    list_display = ("id", "decided_at", "appointment", "therapist", "decided_by")
    list_select_related = ("therapist", "decided_by")
    search_fields = ("=appointment__id", "therapist__username")
    date_hierarchy = "decided_at"


@admin.register(Notification, site=site)
class NotificationAdmin(ReadOnlyModelAdmin):
    list_display = (
        "id",
        "created_at",
        "kind",
        "channel",
        "audience",
        "status",
        "attempts",
        "appointment",
    )
    list_filter = ("status", "kind", "channel", "audience")
    list_select_related = ("appointment",)
    search_fields = ("=id", "=appointment__id", "=trip__id", "=key")
    date_hierarchy = "created_at"


# Read-only: money is recorded, verified and settled through services/payments.py only.
@admin.register(Payment, site=site)
class PaymentAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "created_at", "appointment", "method", "amount", "currency", "status")
    list_filter = ("status", "method", "gateway")
    list_select_related = ("appointment",)
    search_fields = ("=id", "=appointment__id", "reference", "gateway_payment_id")
    date_hierarchy = "created_at"


@admin.register(PeriodicRun, site=site)
class PeriodicRunAdmin(ReadOnlyModelAdmin):
    """When each periodic task last started (what /health/ reads for beat)."""

    list_display = ("task", "last_run_at")
