"""Payments under real concurrency on PostgreSQL (issue 15): ten desk users verifying
one collection at once settle it once, and ten recordings of the full price at once
leave exactly one collection. Real threads released by a barrier, outcomes asserted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from scheduling.errors import DomainError
from scheduling.models import Payment, Transition
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.payments import record_collection, verify_payment
from tests import factories

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 10


def at_once(work: Callable[[int], object]) -> list[object]:
    """Run work(i) in THREADS threads released together; each result or domain error."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except DomainError as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.fixture
def started(tomorrow_at):
    service = factories.ServiceFactory(price=Decimal("1200.00"))
    therapist = factories.therapist(service, username="ana")
    desk = factories.UserFactory(role="receptionist")
    # Tomorrow morning, whatever the hour now: a session with travel booked "soon" left
    # the working day after about 18:00 Manila (the therapist works 08:00-20:00).
    start = tomorrow_at(10)
    appointment = create_appointment(
        actor=desk,
        client_id=factories.ClientFactory().pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
    )
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=action)
    return appointment, therapist


def test_ten_verifications_at_once_settle_one_collection_once(started):
    appointment, therapist = started
    payment = record_collection(
        actor=therapist, appointment_id=appointment.pk, method="cash", amount="1200.00"
    )
    verifiers = [factories.UserFactory(role="receptionist") for _ in range(THREADS)]
    results = at_once(lambda i: verify_payment(actor=verifiers[i], payment_id=payment.pk))
    won = [r for r in results if isinstance(r, Payment)]
    assert len(won) == 1, results
    assert all(isinstance(r, DomainError) for r in results if r not in won)
    payment.refresh_from_db()
    appointment.refresh_from_db()
    assert (payment.status, payment.verified_by_id) == ("succeeded", won[0].verified_by_id)
    assert appointment.payment_status == "paid"
    assert Transition.objects.filter(appointment=appointment, action="verify_payment").count() == 1


def test_ten_recordings_of_the_full_price_at_once_leave_one(started):
    appointment, therapist = started
    results = at_once(
        lambda i: record_collection(
            actor=therapist, appointment_id=appointment.pk, method="cash", amount="1200.00"
        )
    )
    assert sum(isinstance(r, Payment) for r in results) == 1, results
    assert Payment.objects.filter(appointment=appointment).count() == 1
