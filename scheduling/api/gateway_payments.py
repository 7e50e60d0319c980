"""Gateway payments over the API (issue 15 items 3-6): links, refunds, webhooks.

Thin views: the rules are in scheduling/services/gateway_payments.py. The webhook views
take no login at all (no token, no session, so no CSRF): a gateway is not a user, and
the signature over the raw body is the only credential (docs/payments.md)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduling.api import fields as strict
from scheduling.api.actor import request_actor
from scheduling.api.payments import PaymentRecordSerializer
from scheduling.api.schema import ERRORS
from scheduling.api.views import valid
from scheduling.services import gateway_payments
from scheduling.services import payments as payment_services

_detail: dict[str, serializers.Field] = {"detail": serializers.CharField()}
GATEWAY_ERROR = OpenApiResponse(
    inline_serializer(
        "GatewayUnavailable",
        {**_detail, "code": serializers.ChoiceField(choices=["gateway_unavailable"])},
    ),
    description="The payment gateway refused, failed or timed out; nothing was written.",
)


class RefundInput(strict.InputSerializer):
    # Leave it out to refund everything still refundable.
    amount = strict.Money(min_value=Decimal("0.01"), numbers=True, required=False)
    reason = strict.CharField(max_length=300, required=False, allow_blank=True)


class RefundSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    payment = serializers.IntegerField()
    appointment = serializers.IntegerField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    method = serializers.ChoiceField(choices=["gateway", "cash"])
    status = serializers.ChoiceField(choices=["pending", "processed", "failed"])
    gateway = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    processed_at = serializers.DateTimeField(allow_null=True)
    payment_status = serializers.CharField(help_text="The payment's, after this refund.")
    refunded_amount = serializers.CharField(help_text="The payment's refunds so far.")
    appointment_payment_status = serializers.CharField()
    balance_due = serializers.CharField()


class WebhookAnswer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["applied", "ignored", "flagged"])
    detail = serializers.CharField()
    replay = serializers.BooleanField()


class PaymentLinkView(APIView):
    """POST /api/appointments/{id}/payment-link/: the desk sends the client a link to pay."""

    @extend_schema(
        request=None,
        responses={201: PaymentRecordSerializer, 502: GATEWAY_ERROR, **ERRORS},
    )
    def post(self, request: Request, pk: int) -> Response:
        payment = gateway_payments.create_payment_link(
            actor=request_actor(request), appointment_id=pk
        )
        body = payment_services.payment_data(
            payment, payment_services.balance_of(payment.appointment)
        )
        return Response(body, status=status.HTTP_201_CREATED)


class RefundView(APIView):
    """POST /api/payments/{id}/refund/: a manager refunds all or part of a payment."""

    @extend_schema(
        request=RefundInput, responses={201: RefundSerializer, 502: GATEWAY_ERROR, **ERRORS}
    )
    def post(self, request: Request, pk: int) -> Response:
        data = valid(RefundInput, request.data)
        refund = gateway_payments.refund_payment(
            actor=request_actor(request),
            payment_id=pk,
            amount=data.get("amount"),
            reason=data.get("reason", ""),
        )
        return Response(gateway_payments.refund_data(refund), status=status.HTTP_201_CREATED)


class RawBody(BaseParser):
    """Any content type: the view reads the raw bytes (the signature is over them)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class WebhookView(APIView):
    """POST /api/payments/webhooks/<gateway>/: a gateway's signed event."""

    gateway = ""
    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [RawBody]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: WebhookAnswer,
            400: ERRORS[400],
            429: ERRORS[429],
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        result = gateway_payments.receive_webhook(
            gateway=self.gateway, body=request.body, headers=request.headers
        )
        detail = "Seen before: nothing changed." if result.replay else (result.reason or "Done.")
        return Response({"outcome": result.outcome, "detail": detail, "replay": result.replay})


class RazorpayWebhookView(WebhookView):
    gateway = "razorpay"


class PayMongoWebhookView(WebhookView):
    gateway = "paymongo"


class FakeWebhookView(WebhookView):
    gateway = "fake"
