"""Staff (users with a role and a profile), their working time, and clients."""

from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models import F, Q

from scheduling import states
from scheduling.phones import digits_only


class Role(models.TextChoices):
    RECEPTIONIST = states.RECEPTIONIST
    THERAPIST = states.THERAPIST
    DRIVER = states.DRIVER
    MANAGER = states.MANAGER


class UserQuerySet(models.QuerySet):
    def therapists(self, *, performing: object = None) -> UserQuerySet:
        """Therapists who can be booked: active ones; with `performing` (a service or its
        id), only those who perform it. Every "which therapists" question starts here."""
        therapists = self.filter(role=Role.THERAPIST, is_active=True)
        if performing is not None:
            therapists = therapists.filter(therapist_profile__services=performing)
        return therapists


class StaffManager(UserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    pass


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.RECEPTIONIST)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164")

    objects: ClassVar[StaffManager] = StaffManager()

    @property
    def effective_role(self) -> str:
        """Superusers are managers whatever their stored role."""
        return Role.MANAGER if self.is_superuser else self.role

    @property
    def is_desk(self) -> bool:
        return self.effective_role in states.DESK

    def __str__(self) -> str:
        return self.get_full_name() or self.username


class TherapistProfile(models.Model):
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="therapist_profile")
    services = models.ManyToManyField("scheduling.Service", related_name="therapists", blank=True)

    def __str__(self) -> str:
        return f"Therapist {self.user}"


class Vehicle(models.TextChoices):
    MOTORCYCLE = "motorcycle"
    CAR = "car"


class DriverProfileQuerySet(models.QuerySet):
    def queue(self) -> DriverProfileQuerySet:
        """The FIFO queue: active drivers on shift and free, longest-waiting first (ties
        by user id). The dispatcher serves it and the stream shows it: one definition."""
        return self.filter(
            on_shift=True, available_since__isnull=False, user__is_active=True
        ).order_by("available_since", "user_id")


class DriverProfile(models.Model):
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="driver_profile")
    vehicle = models.CharField(max_length=16, choices=Vehicle.choices, default=Vehicle.MOTORCYCLE)
    seats = models.PositiveSmallIntegerField(
        default=1, help_text="Passengers the vehicle carries besides the driver."
    )
    on_shift = models.BooleanField(default=False)
    # Position in the FIFO queue: the on-shift driver with the oldest value waits longest.
    available_since = models.DateTimeField(null=True, blank=True)

    objects = DriverProfileQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["available_since"],
                condition=Q(on_shift=True),
                name="driver_queue_idx",
            )
        ]
        constraints = [
            models.CheckConstraint(condition=Q(seats__gte=1), name="driver_seats_positive"),
        ]

    def __str__(self) -> str:
        return f"Driver {self.user}"


class WorkingHours(models.Model):
    """A weekly working period in the business time zone (several per day allowed)."""

    staff = models.ForeignKey(User, on_delete=models.CASCADE, related_name="working_hours")
    weekday = models.PositiveSmallIntegerField(help_text="0 = Monday … 6 = Sunday")
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        verbose_name_plural = "working hours"
        ordering = ["staff", "weekday", "start"]
        indexes = [models.Index(fields=["weekday", "staff"], name="hours_weekday_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="hours_end_after_start"),
            models.CheckConstraint(condition=Q(weekday__lte=6), name="hours_weekday_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.staff} day {self.weekday} {self.start:%H:%M}-{self.end:%H:%M}"


class Break(models.Model):
    """A weekly break inside working hours (lunch), in the business time zone."""

    staff = models.ForeignKey(User, on_delete=models.CASCADE, related_name="breaks")
    weekday = models.PositiveSmallIntegerField(help_text="0 = Monday … 6 = Sunday")
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        ordering = ["staff", "weekday", "start"]
        indexes = [models.Index(fields=["weekday", "staff"], name="break_weekday_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="break_end_after_start"),
            models.CheckConstraint(condition=Q(weekday__lte=6), name="break_weekday_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.staff} break day {self.weekday} {self.start:%H:%M}-{self.end:%H:%M}"


class TimeOff(models.Model):
    """Leave, sickness, a training day: any absolute period the staff member is away."""

    staff = models.ForeignKey(User, on_delete=models.CASCADE, related_name="time_off")
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "time off"
        ordering = ["start"]
        indexes = [models.Index(fields=["staff", "end"], name="timeoff_staff_end_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="timeoff_end_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.staff} off {self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M}"


class ClientQuerySet(models.QuerySet):
    def search(self, text: str) -> ClientQuerySet:
        """Clients whose name contains `text`, or whose phone contains its digits."""
        # No stored name holds a NUL, and PostgreSQL refuses one in a query parameter.
        text = text.replace("\x00", "").strip()
        if not text:
            return self.none()
        condition = Q(name__icontains=text)
        # Stored numbers are international (63917…); the desk types them nationally
        # (0917…), so a leading trunk 0 is dropped before matching.
        digits = digits_only(text).removeprefix("0")
        # A couple of digits match half the book; only search phones from three on.
        if len(digits) >= 3:
            condition |= Q(phone_digits__contains=digits)
        return self.filter(condition)


class Client(models.Model):
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    # Digits of `phone` without the '+', for fragment search (trigram index on PostgreSQL).
    phone_digits = models.CharField(max_length=20, editable=False)
    email = models.EmailField(blank=True)
    address = models.TextField(blank=True)
    # Where the address is: how long the therapist travels to it (None: the default).
    area = models.ForeignKey(
        "scheduling.ServiceArea",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="clients",
    )
    notes = models.TextField(blank=True)
    preferences = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ClientQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            # The address book's pages, in name order: a search's page is found by walking
            # this index (its name column answers the name filter without the table) rather
            # than by fetching and sorting every match of a common surname.
            models.Index(fields=["name", "id"], name="client_name_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.phone_digits = digits_only(self.phone)
        if "update_fields" in kwargs and kwargs["update_fields"] is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "phone_digits"}
        super().save(*args, **kwargs)
