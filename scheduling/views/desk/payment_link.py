"""Send payment link, on the desk's appointment page: one call to
services/gateway_payments.create_payment_link, the same the API's route makes."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from scheduling.formats import money
from scheduling.models import Appointment
from scheduling.services.gateway_payments import create_payment_link
from scheduling.views.common import call_for_page
from scheduling.views.desk.present import desk_only


@desk_only
@require_POST
def send_link(request: HttpRequest, pk: int) -> HttpResponse:
    appointment = get_object_or_404(Appointment.objects.visible_to(request.user), pk=pk)
    payment = call_for_page(
        request, create_payment_link, actor=request.user, appointment_id=appointment.pk
    )
    if payment is not None:
        messages.success(
            request,
            f"Payment link for {money(payment.amount)} {payment.currency} sent to the client.",
        )
    return redirect("desk:appointment", pk=appointment.pk)
