"""What the services tests share: trips booked to order for the dispatch tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scheduling.models import Trip
from scheduling.services.appointments import create_appointment
from tests import factories


@pytest.fixture
def trip_at(desk, service, client_record, tomorrow_at) -> Callable[..., Trip]:
    """A queued trip of a booking tomorrow at HH:MM, each with a therapist of its own.

    Capacity is checked at booking: the drivers a test sets up come first, and where it
    has none yet Dan (working all week, never on shift) is hired so the booking stands.
    """

    def make(hour: int, minute: int = 0, *, leg: str = "dropoff", passengers: int = 1) -> Trip:
        factories.ensure_driver()
        appointment = create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=factories.therapist(service).pk,
            start=tomorrow_at(hour, minute),
            needs_transport=True,
        )
        trip = appointment.trips.get(leg=leg)
        if passengers != 1:
            Trip.objects.filter(pk=trip.pk).update(passengers=passengers)
            trip.refresh_from_db()
        return trip

    return make
