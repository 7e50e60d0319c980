from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from scheduling.domain import busy_range, local_day_bounds
from scheduling.states import ACTIVE_APPOINTMENT_STATUSES, AppointmentStatus


class PaymentStatus(models.TextChoices):
    """Derived from the appointment's payments (services/payments.py), never set by hand."""

    UNPAID = "unpaid"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid"
    REFUNDED = "refunded"


class AppointmentQuerySet(models.QuerySet):
    def active(self) -> AppointmentQuerySet:
        return self.filter(status__in=ACTIVE_APPOINTMENT_STATUSES)

    def with_paid(self) -> AppointmentQuerySet:
        """Each appointment with `paid`: the money its payments brought in and the business
        kept (`PaymentQuerySet.settled_total`, per row, in the same query)."""
        from scheduling.models.payments import Payment

        kept = Payment.objects.filter(appointment=OuterRef("pk")).kept_per_appointment()
        money: models.DecimalField[Decimal, Decimal] = models.DecimalField(
            max_digits=12, decimal_places=2
        )
        return self.annotate(
            paid=Coalesce(Subquery(kept, output_field=money), Value(Decimal("0.00")))
        )

    def still_in_progress(self, *, before: datetime) -> AppointmentQuerySet:
        """In progress though they ended before `before` (services/attention.py)."""
        return self.filter(status=AppointmentStatus.IN_PROGRESS, end__lte=before)

    def overlapping(self, start: datetime, end: datetime) -> AppointmentQuerySet:
        """Appointments whose busy range (travel and buffer included) meets [start, end)."""
        return self.filter(busy_from__lt=end, busy_until__gt=start)

    def on_day(self, day: date) -> AppointmentQuerySet:
        """Appointments starting on `day` in the business time zone (the desk's board)."""
        start, end = local_day_bounds(day)
        return self.filter(start__gte=start, start__lt=end)

    def to_rebook(self, *, since: datetime) -> AppointmentQuerySet:
        """Rejected or expired bookings starting from `since` on that nobody has booked
        again: a later booking of the same client for the same service settles one."""
        later = Appointment.objects.filter(
            client_id=OuterRef("client_id"),
            service_id=OuterRef("service_id"),
            pk__gt=OuterRef("pk"),
        )
        return self.filter(
            status__in=(AppointmentStatus.REJECTED, AppointmentStatus.EXPIRED), start__gte=since
        ).exclude(Exists(later))

    def visible_to(self, user) -> AppointmentQuerySet:
        if user.is_desk:
            return self
        if user.effective_role == "therapist":
            return self.filter(therapist=user)
        if user.effective_role == "driver":
            return self.filter(trips__driver=user).distinct()
        return self.none()


class Appointment(models.Model):
    client = models.ForeignKey(
        "scheduling.Client", on_delete=models.PROTECT, related_name="appointments"
    )
    service = models.ForeignKey(
        "scheduling.Service", on_delete=models.PROTECT, related_name="appointments"
    )
    therapist = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="appointments"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    # end + the service's buffer: the session and its clean-up are over.
    blocked_until = models.DateTimeField()
    # One way, base to client, as booked (an area's later change moves nothing booked).
    travel_minutes = models.PositiveSmallIntegerField(default=0)
    area = models.ForeignKey(
        "scheduling.ServiceArea",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="appointments",
    )
    # The therapist's busy range: from leaving base (start - travel) to being back
    # (blocked_until + travel). The exclusion constraint guards it (migration 0008).
    busy_from = models.DateTimeField()
    busy_until = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=AppointmentStatus.choices, default=AppointmentStatus.PENDING
    )
    address = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    needs_transport = models.BooleanField(default=False)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    payment_status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.UNPAID
    )
    # Null for a series' later occurrences: the therapist answers the series once, on the
    # first (services/series.py); unanswered, such an occurrence expires at its start.
    response_deadline = models.DateTimeField(null=True, blank=True)
    series = models.ForeignKey(
        "scheduling.Series",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="appointments",
    )
    # A session of a couples or group visit (models/visits.py), else null.
    visit = models.ForeignKey(
        "scheduling.Visit",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sessions",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AppointmentQuerySet.as_manager()

    class Meta:
        ordering = ["start", "id"]
        indexes = [
            # The desk's day board: a start range, often narrowed by status.
            models.Index(fields=["start", "status"], name="appt_day_board_idx"),
            # A therapist's upcoming active appointments (and the overlap pre-check).
            models.Index(
                fields=["therapist", "start"],
                name="appt_therapist_active_idx",
                condition=Q(status__in=ACTIVE_APPOINTMENT_STATUSES),
            ),
            # What a day's availability reads: the active appointments of twenty therapists
            # whose busy range ends after the day starts. By the index above PostgreSQL
            # would bound only their starts, and (reckoning starts spread over the whole
            # table's past and future) it read every appointment of those therapists
            # instead: 2.5-4.5 ms against 0.3-0.8 ms on the bench's data.
            models.Index(
                fields=["therapist", "busy_until"],
                name="appt_therapist_busy_idx",
                condition=Q(status__in=ACTIVE_APPOINTMENT_STATUSES),
            ),
            # The expiry sweep: pending appointments by response deadline.
            models.Index(
                fields=["response_deadline"],
                name="appt_pending_deadline_idx",
                condition=Q(status=AppointmentStatus.PENDING),
            ),
            models.Index(fields=["client", "start"], name="appt_client_idx"),
        ]
        # The overlap exclusion constraint is PostgreSQL-only and lives in a migration.
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="appt_end_after_start"),
            models.CheckConstraint(
                condition=Q(blocked_until__gte=F("end")), name="appt_blocked_covers_end"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="appt_price_non_negative"),
            models.CheckConstraint(
                condition=Q(busy_from__lte=F("start"), busy_until__gte=F("blocked_until")),
                name="appt_busy_covers_visit",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.service_id} {self.start:%Y-%m-%d %H:%M} {self.status}"

    def save(self, *args, **kwargs) -> None:
        # Rows written other than by booking (the admin, fixtures, data loads) get the busy
        # range of their travel by the one rule booking uses.
        if self.busy_from is None or self.busy_until is None:
            held = busy_range(
                self.start,
                duration=self.blocked_until - self.start,
                buffer=timedelta(0),
                travel=timedelta(minutes=self.travel_minutes),
            )
            self.busy_from, self.busy_until = held.start, held.end
        super().save(*args, **kwargs)


class Transition(models.Model):
    """One status change of an appointment or a trip. Append-only."""

    appointment = models.ForeignKey(
        Appointment, on_delete=models.PROTECT, null=True, blank=True, related_name="transitions"
    )
    trip = models.ForeignKey(
        "scheduling.Trip",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transitions",
    )
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for the system.",
    )
    # The desk acting for a therapist or driver who confirmed by phone: `actor` is the
    # receptionist or manager, this the member of staff whose action it was.
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(appointment__isnull=False, trip__isnull=True)
                    | Q(appointment__isnull=True, trip__isnull=False)
                ),
                name="transition_one_subject",
            ),
        ]

    def __str__(self) -> str:
        subject = (
            f"appointment {self.appointment_id}"
            if self.appointment_id
            else (f"trip {self.trip_id}")
        )
        return f"{subject}: {self.from_status or '∅'} → {self.to_status}"
