"""Collections at the visit and their verification (issue 15 items 1, 2 and 7's list):
the service's rules, the appointment's derived payment status, the transition log, the
stream, and the same rules over the API. Nothing half-written when a rule refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from scheduling.errors import InvalidTransition, NotFound, NotPermitted, ValidationFailed
from scheduling.models import Payment, StreamEvent, Transition
from scheduling.services.appointments import act_on_appointment
from scheduling.services.payments import (
    balance_of,
    held_by,
    parse_amount,
    record_collection,
    verify_payment,
)
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def started(book, therapist, tomorrow_at):
    """Ana's 10:00 tomorrow (price 1200.00), accepted and started."""
    appointment = book(tomorrow_at(10))
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=appointment.pk, action=action)
    appointment.refresh_from_db()
    return appointment


def collect(therapist, appointment, amount="1200.00", method="cash", reference=""):
    return record_collection(
        actor=therapist,
        appointment_id=appointment.pk,
        method=method,
        amount=amount,
        reference=reference,
    )


def counts() -> tuple[int, int, int]:
    return Payment.objects.count(), Transition.objects.count(), StreamEvent.objects.count()


def test_a_collection_is_pending_until_the_desk_verifies_it(started, therapist, desk):
    payment = collect(therapist, started)
    started.refresh_from_db()
    assert (payment.status, payment.currency, payment.amount) == (
        "pending",
        "PHP",
        Decimal("1200.00"),
    )
    assert started.payment_status == "unpaid"
    assert held_by(therapist) == [payment]

    verify_payment(actor=desk, payment_id=payment.pk)
    payment.refresh_from_db()
    started.refresh_from_db()
    assert (payment.status, payment.verified_by, payment.collected_by) == (
        "succeeded",
        desk,
        therapist,
    )
    assert payment.settled_at is not None
    assert started.payment_status == "paid"
    assert balance_of(started).due == Decimal("0.00")
    assert held_by(therapist) == []
    log = list(
        started.transitions.filter(action__endswith="_payment").values_list(
            "action", "from_status", "to_status", "actor"
        )
    )
    assert log == [
        ("collect_payment", "unpaid", "unpaid", therapist.pk),
        ("verify_payment", "unpaid", "paid", desk.pk),
    ]
    event = StreamEvent.objects.filter(type="payment.updated").latest("seq")
    assert event.data["status"] == "succeeded"
    assert (event.data["payment_status"], event.data["balance_due"]) == ("paid", "0.00")
    assert list(event.recipients.values_list("user_id", flat=True)) == [therapist.pk]


def test_part_of_the_price_is_partially_paid_with_the_rest_due(started, therapist, manager):
    first = collect(therapist, started, amount="500.00")
    verify_payment(actor=manager, payment_id=first.pk)
    started.refresh_from_db()
    assert started.payment_status == "partially_paid"
    assert balance_of(started).due == Decimal("700.00")
    second = collect(therapist, started, amount="700", method="ewallet", reference="GC 0012")
    verify_payment(actor=manager, payment_id=second.pk)
    started.refresh_from_db()
    assert started.payment_status == "paid"


def test_money_is_recorded_only_once_the_session_has_started(book, therapist, tomorrow_at):
    appointment = book(tomorrow_at(12))
    act_on_appointment(actor=therapist, appointment_id=appointment.pk, action="accept")
    before = counts()
    with pytest.raises(InvalidTransition, match="once the session has started"):
        collect(therapist, appointment)
    assert counts() == before


def test_only_the_appointments_own_therapist_records_a_collection(started, desk, service):
    other = factories.therapist(service, username="bea")
    before = counts()
    with pytest.raises(NotFound):  # another therapist's appointment is not theirs to see
        collect(other, started)
    with pytest.raises(NotPermitted, match="own therapist"):
        collect(desk, started)
    assert counts() == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"amount": "1200.01"}, "amount"),  # more than the price
        ({"method": "gateway"}, "method"),
        ({"method": "ewallet", "reference": ""}, "reference"),
    ],
)
def test_a_wrong_collection_is_refused_by_field(started, therapist, fields, field):
    before = counts()
    with pytest.raises(ValidationFailed) as refused:
        collect(therapist, started, **fields)
    assert field in refused.value.errors
    assert counts() == before


def test_a_float_is_not_money():
    with pytest.raises(ValidationFailed, match="as a string"):
        parse_amount(0.1)
    assert parse_amount("1500") == Decimal("1500.00")


def test_the_same_cash_cannot_be_recorded_twice_past_the_price(started, therapist):
    collect(therapist, started, amount="1000.00")
    with pytest.raises(ValidationFailed, match=r"Only 200\.00 is still to be collected"):
        collect(therapist, started, amount="1000.00")


def test_the_collector_cannot_verify_and_a_verified_one_is_not_verified_again(
    started, therapist, desk, manager
):
    payment = collect(therapist, started)
    with pytest.raises(NotPermitted):
        verify_payment(actor=therapist, payment_id=payment.pk)
    verify_payment(actor=desk, payment_id=payment.pk)
    before = counts()
    with pytest.raises(InvalidTransition, match="not waiting to be verified"):
        verify_payment(actor=manager, payment_id=payment.pk)
    assert counts() == before


def test_the_database_refuses_a_collector_verifying_their_own(started, therapist):
    payment = collect(therapist, started)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(verified_by=therapist)


def test_the_database_refuses_a_settled_collection_nobody_verified(started, therapist):
    payment = collect(therapist, started)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(status="succeeded")


# --- over the API ------------------------------------------------------------------------


def test_api_collect_verify_and_list(started, therapist, desk):
    url = f"/api/appointments/{started.pk}/payments/"
    response = factories.api(therapist).post(
        url, {"method": "cash", "amount": "1200.00"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["amount"], body["payment_status"]) == (
        "pending",
        "1200.00",
        "unpaid",
    )

    desk_api = factories.api(desk)
    assert factories.api(therapist).post(f"/api/payments/{body['id']}/verify/").status_code == 403
    verified = desk_api.post(f"/api/payments/{body['id']}/verify/")
    assert verified.status_code == 200, verified.content
    assert (verified.json()["status"], verified.json()["payment_status"]) == ("succeeded", "paid")
    assert desk_api.get(f"/api/appointments/{started.pk}/").json()["payment_status"] == "paid"

    listed = desk_api.get("/api/payments/", {"appointment": started.pk}).json()
    assert [p["id"] for p in listed["results"]] == [body["id"]]
    assert desk_api.get("/api/payments/", {"status": "pending"}).json()["results"] == []
    day = started.start.astimezone().date().isoformat()
    assert len(desk_api.get("/api/payments/", {"date": day}).json()["results"]) == 1
    assert len(factories.api(therapist).get("/api/payments/").json()["results"]) == 1


@pytest.mark.parametrize(
    "payload",
    [{}, {"method": "card", "amount": "10"}, {"method": "cash", "amount": "ten"}, ["cash"]],
)
def test_api_malformed_collections_are_400_with_nothing_written(started, therapist, payload):
    before = counts()
    response = factories.api(therapist).post(
        f"/api/appointments/{started.pk}/payments/", payload, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert counts() == before


def test_api_unknown_ids_are_404_and_other_roles_403(started, service, desk):
    driver = factories.driver()
    assert factories.api(desk).post("/api/payments/999999/verify/").status_code == 404
    assert (
        factories.api(desk)
        .post(
            "/api/appointments/999999/payments/", {"method": "cash", "amount": "1"}, format="json"
        )
        .status_code
        == 404
    )
    assert factories.api(driver).get("/api/payments/").status_code == 403
    assert factories.api(desk).get("/api/payments/", {"status": "paid-ish"}).status_code == 400
