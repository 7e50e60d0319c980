"""The fake gateway's hosted page (`/pay/fake/<token>/`): where a client "pays" a link
when PAYMENT_GATEWAY is fake (the embedded default and the tests).

It is the outside world's page, not ours: no sign-in, and paying it makes the fake
gateway send its signed webhooks to the same service the webhook route calls."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from scheduling import gateways
from scheduling.errors import DomainError
from scheduling.gateways import fake, from_minor
from scheduling.services import gateway_payments


@require_http_methods(["GET", "POST"])
def pay(request: HttpRequest, token: str) -> HttpResponse:
    state = fake.load(f"plink_{token}") if token.isalnum() and len(token) <= 64 else None
    if state is None:
        raise Http404("No such payment link.")
    error = ""
    if request.method == "POST":
        now = timezone.now()
        try:
            state, events = fake.pay(token, now=now)
            for body, headers in events:
                gateway_payments.receive_webhook(
                    gateway="fake", body=body, headers=headers, now=now
                )
        except gateways.GatewayError as exc:
            error = exc.message
        except DomainError as exc:
            error = exc.message
    context = {
        "state": state,
        "amount": from_minor(state["amount"]),
        "paid": state["status"] == gateways.LINK_PAID,
        "error": error,
    }
    return render(request, "pay/fake.html", context, status=400 if error else 200)
