"""An appointment's money on the desk: its payments, who collected and verified each, the
balance due and the derived payment status, and Verify for a collection still to check.

Verify is one call to services/payments.verify_payment; the panel is a live region that
is drawn again on `payment.updated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from scheduling.formats import money
from scheduling.models import Appointment, Payment, PaymentState
from scheduling.models.payments import COLLECTED_METHODS
from scheduling.services.gateway_payments import resolve_flag
from scheduling.services.payments import balance_of, verify_payment
from scheduling.views.common import call_for_page
from scheduling.views.desk.present import desk_only, word

PAYMENT_WORDS = {
    "pending": "Not verified",
    "succeeded": "Received",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "refunded": "Refunded",
    "partially_refunded": "Partly refunded",
}


@dataclass
class PaymentLine:
    payment: Payment
    method: str
    amount: str
    status: str
    collected_by: str
    verified_by: str
    can_verify: bool


def person(user) -> str:
    return (user.get_full_name() or user.username) if user else ""


def payment_lines(rows: list[Payment], viewer) -> list[PaymentLine]:
    return [
        PaymentLine(
            payment=p,
            method=p.get_method_display(),
            amount=f"{money(p.amount)} {p.currency}",
            status=PAYMENT_WORDS.get(p.status, word(p.status)),
            collected_by=person(p.collected_by),
            verified_by=person(p.verified_by),
            can_verify=(
                p.method in COLLECTED_METHODS
                and p.status == PaymentState.PENDING
                and p.collected_by_id != viewer.pk
            ),
        )
        for p in rows
    ]


def payments_context(appointment: Appointment, viewer) -> dict[str, Any]:
    rows = list(
        Payment.objects.filter(appointment=appointment)
        .select_related("collected_by", "verified_by")
        .order_by("created_at", "id")
    )
    balance = balance_of(appointment)
    return {
        "appointment": appointment,
        "payments": payment_lines(rows, viewer),
        "balance": balance,
        "balance_price": money(balance.price),
        "balance_paid": money(balance.paid),
        "balance_due": money(balance.due),
        "balance_label": word(balance.status),
        "unverified": sum(1 for p in rows if p.status == PaymentState.PENDING),
    }


def _appointment(request: HttpRequest, pk: int) -> Appointment:
    return get_object_or_404(Appointment.objects.visible_to(request.user), pk=pk)


@desk_only
@require_GET
def payments_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    appointment = _appointment(request, pk)
    return render(request, "desk/_payments.html", payments_context(appointment, request.user))


@desk_only
@require_POST
def verify(request: HttpRequest, pk: int) -> HttpResponse:
    """Verify one collection; back to its appointment's page, or to the queues."""
    payment = get_object_or_404(Payment.objects.visible_to(request.user), pk=pk)
    done = call_for_page(request, verify_payment, actor=request.user, payment_id=payment.pk)
    if done is not None:
        messages.success(
            request, f"Verified: {money(done.amount)} {done.currency} {done.get_method_display()}."
        )
    if request.POST.get("back") == "queues":
        return redirect("desk:queues")
    return redirect("desk:appointment", pk=payment.appointment_id)


@desk_only
@require_POST
def resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """A manager clears a flagged payment, saying how it was sorted out; back to the queues."""
    payment = get_object_or_404(Payment.objects.visible_to(request.user), pk=pk)
    done = call_for_page(
        request,
        resolve_flag,
        actor=request.user,
        payment_id=payment.pk,
        note=request.POST.get("note", ""),
    )
    if done is not None:
        messages.success(request, f"Cleared: {money(done.amount)} {done.currency} link.")
    return redirect("desk:queues")
