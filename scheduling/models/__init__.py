from scheduling.models.appointments import Appointment, PaymentStatus, Transition
from scheduling.models.catalog import Service, ServiceArea
from scheduling.models.choosing import PassReason, TherapistChoice
from scheduling.models.dispatch import DispatchDecision, DispatchOutcome, SkipReason
from scheduling.models.events import EventCounter, StreamEvent, StreamEventRecipient
from scheduling.models.gateways import (
    Refund,
    RefundMethod,
    RefundState,
    WebhookEvent,
    WebhookOutcome,
)
from scheduling.models.idempotency import IdempotencyKey
from scheduling.models.messaging import Audience, Channel, Notification, NotificationStatus
from scheduling.models.operations import PeriodicRun
from scheduling.models.payments import Payment, PaymentMethod, PaymentState
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
from scheduling.models.retention import StreamRetention
from scheduling.models.series import Series
from scheduling.models.trips import Leg, Trip
from scheduling.models.visits import Visit
from scheduling.states import AppointmentStatus, TripStatus

__all__ = [
    "Appointment",
    "AppointmentStatus",
    "Audience",
    "Break",
    "Channel",
    "Client",
    "DispatchDecision",
    "DispatchOutcome",
    "DriverProfile",
    "EventCounter",
    "IdempotencyKey",
    "Leg",
    "Notification",
    "NotificationStatus",
    "PassReason",
    "Payment",
    "PaymentMethod",
    "PaymentState",
    "PaymentStatus",
    "PeriodicRun",
    "Refund",
    "RefundMethod",
    "RefundState",
    "Role",
    "Series",
    "Service",
    "ServiceArea",
    "SkipReason",
    "StreamEvent",
    "StreamEventRecipient",
    "StreamRetention",
    "TherapistChoice",
    "TherapistProfile",
    "TimeOff",
    "Transition",
    "Trip",
    "TripStatus",
    "User",
    "Vehicle",
    "Visit",
    "WebhookEvent",
    "WebhookOutcome",
    "WorkingHours",
]
