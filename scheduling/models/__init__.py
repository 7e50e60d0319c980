from scheduling.models.appointments import Appointment, PaymentStatus, Transition
from scheduling.models.catalog import Service
from scheduling.models.events import EventCounter, StreamEvent, StreamEventRecipient
from scheduling.models.idempotency import IdempotencyKey
from scheduling.models.people import (
    Break,
    Client,
    DriverProfile,
    Role,
    TherapistProfile,
    TimeOff,
    User,
    Vehicle,
    WorkingHours,
)
from scheduling.models.trips import Leg, Trip
from scheduling.states import AppointmentStatus, TripStatus

__all__ = [
    "Appointment",
    "AppointmentStatus",
    "Break",
    "Client",
    "DriverProfile",
    "EventCounter",
    "IdempotencyKey",
    "Leg",
    "PaymentStatus",
    "Role",
    "Service",
    "StreamEvent",
    "StreamEventRecipient",
    "TherapistProfile",
    "TimeOff",
    "Transition",
    "Trip",
    "TripStatus",
    "User",
    "Vehicle",
    "WorkingHours",
]
