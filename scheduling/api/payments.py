"""Payments over the API (issue 15): collections, their verification and the list.

Thin views: the rules are in scheduling/services/payments.py."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduling.api import fields as strict
from scheduling.api.actor import request_actor
from scheduling.api.pagination import Keyset, keyset_page
from scheduling.api.schema import ERRORS
from scheduling.api.serializers import DayField, ident
from scheduling.api.views import valid
from scheduling.models import Payment, PaymentState
from scheduling.models.payments import COLLECTED_METHODS
from scheduling.services import payments as payment_services


class CollectionInput(strict.InputSerializer):
    method = strict.ChoiceField(choices=sorted(COLLECTED_METHODS))
    # A string such as "1500.00" (a JSON number is read as its decimal text, never a float).
    amount = strict.Money(min_value=Decimal("0.01"), numbers=True)
    reference = strict.CharField(max_length=64, required=False, allow_blank=True)


class PaymentListFilter(strict.InputSerializer):
    appointment = ident(required=False)
    date = DayField(required=False)
    status = strict.ChoiceField(choices=PaymentState.values, required=False)


class PaymentRecordSerializer(serializers.Serializer):
    """What `payment_data` writes (for the schema; responses are built by the service)."""

    id = serializers.IntegerField()
    appointment = serializers.IntegerField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    method = serializers.ChoiceField(choices=["cash", "ewallet", "gateway"])
    status = serializers.ChoiceField(choices=PaymentState.values)
    reference = serializers.CharField()
    gateway = serializers.CharField()
    url = serializers.CharField(help_text="A gateway link's page for the client; else empty.")
    refunded_amount = serializers.CharField()
    flagged_reason = serializers.CharField(help_text="Why a person must look; else empty.")
    collected_by = serializers.IntegerField(allow_null=True)
    verified_by = serializers.IntegerField(allow_null=True)
    verified_at = serializers.DateTimeField(allow_null=True)
    settled_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    payment_status = serializers.CharField(help_text="The appointment's, derived.")
    balance_due = serializers.CharField(help_text="The appointment's, after this payment.")


class PaymentPage(serializers.Serializer):
    """A cursor page of payments, as the other lists' pages."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = PaymentRecordSerializer(many=True)


class ByCreated(Keyset):
    ordering = ("-created_at", "-id")


def _body(payment: Payment) -> dict:
    return payment_services.payment_data(payment, payment_services.balance_of(payment.appointment))


class AppointmentPaymentsView(APIView):
    """POST /api/appointments/{id}/payments/: the therapist records what they collected."""

    @extend_schema(request=CollectionInput, responses={201: PaymentRecordSerializer, **ERRORS})
    def post(self, request: Request, pk: int) -> Response:
        data = valid(CollectionInput, request.data)
        payment = payment_services.record_collection(
            actor=request_actor(request),
            appointment_id=pk,
            method=data["method"],
            amount=data["amount"],
            reference=data.get("reference", ""),
        )
        return Response(_body(payment), status=status.HTTP_201_CREATED)


class PaymentVerifyView(APIView):
    """POST /api/payments/{id}/verify/: a receptionist or manager confirms a collection."""

    @extend_schema(request=None, responses={200: PaymentRecordSerializer, **ERRORS})
    def post(self, request: Request, pk: int) -> Response:
        payment = payment_services.verify_payment(actor=request_actor(request), payment_id=pk)
        return Response(_body(payment))


class PaymentListView(APIView):
    """GET /api/payments/?appointment=&date=&status=, newest first."""

    @extend_schema(
        parameters=[PaymentListFilter],
        responses={200: PaymentPage, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = valid(PaymentListFilter, request.query_params)
        rows = payment_services.payments_for(
            request_actor(request),
            appointment_id=query.get("appointment"),
            day=query.get("date"),
            status=query.get("status"),
        )
        paginator = ByCreated()
        page = keyset_page(paginator.paginate_queryset(rows, request, view=self))
        balances: dict[int, payment_services.Balance] = {}
        body = []
        for payment in page:
            if payment.appointment_id not in balances:
                balances[payment.appointment_id] = payment_services.balance_of(payment.appointment)
            body.append(payment_services.payment_data(payment, balances[payment.appointment_id]))
        return paginator.get_paginated_response(body)
