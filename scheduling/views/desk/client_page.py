"""A client's page at the desk (issue 13 item 5): contact details and their edit form
(through `update_client`), area, notes and preferences, appointments ahead and behind,
no-shows and late cancellations, the messages sent, payments and what is owed. The
reads are `selectors/client_history.py`; every list is bounded, so the page's queries do
not grow with the client's history."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from scheduling.formats import money
from scheduling.forms import id_field
from scheduling.limits import NAME_MAX, PHONE_MAX, TEXT_MAX
from scheduling.models import Appointment, Channel, Client, ServiceArea, User
from scheduling.selectors import client_history
from scheduling.services.clients import update_client
from scheduling.services.notifications.outbox import SUBJECTS
from scheduling.services.travel import default_minutes
from scheduling.views.common import StaffRequest, call_for_form
from scheduling.views.desk.present import desk_only, labelled, national_phone, word

PAYMENT_WORDS = {"partially_refunded": "Partly refunded", "ewallet": "E-wallet"}


class ClientEditForm(forms.Form):
    """The client's details as the desk edits them. Types and sizes only: the client
    service checks the name, the phone (and that no one else has it), the area and the
    preferences."""

    name = forms.CharField(label="Name", max_length=NAME_MAX, required=False)
    phone = forms.CharField(
        label="Phone",
        max_length=PHONE_MAX,
        required=False,
        help_text="Local (0917 123 4567) or international (+63 917 123 4567).",
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    email = forms.EmailField(
        label="Email",
        max_length=254,
        required=False,
        error_messages={"invalid": "Check the email address."},
    )
    address = forms.CharField(
        label="Home address",
        max_length=TEXT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    area = id_field("Area", "an area from the list", required=False)
    notes = forms.CharField(
        label="Notes",
        max_length=TEXT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    therapist = id_field(
        "Preferred therapist",
        "a therapist from the list",
        required=False,
        help_text="Offered first when they are free and the desk books “Any therapist”.",
    )
    channel = forms.ChoiceField(
        label="Messages by",
        required=False,
        choices=[("", "No preference (SMS)"), *Channel.choices],
        error_messages={"invalid_choice": "Choose SMS, WhatsApp or email."},
    )

    prefix = "client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What is offered now (the service checks what is sent).
        areas = [
            (a.pk, f"{a.name} ({a.travel_minutes} min each way)")
            for a in ServiceArea.objects.active()
        ]
        self.fields["area"].widget = forms.Select(
            choices=[("", f"Not known: the default travel ({default_minutes()} min)"), *areas]
        )
        therapists = User.objects.therapists().order_by("first_name", "last_name", "id")
        self.fields["therapist"].widget = forms.Select(
            choices=[("", "No preference"), *((t.pk, str(t)) for t in therapists)]
        )


def initial_of(client: Client) -> dict[str, Any]:
    preferences = client.preferences or {}
    return {
        "name": client.name,
        "phone": national_phone(client.phone),
        "email": client.email,
        "address": client.address,
        "area": client.area_id,
        "notes": client.notes,
        "therapist": preferences.get("therapist"),
        "channel": preferences.get("channel", ""),
    }


def preferences_from(client: Client, data: dict[str, Any]) -> dict[str, Any]:
    """The stored preferences with the two the page edits replaced (others kept)."""
    preferences = {
        k: v for k, v in (client.preferences or {}).items() if k not in ("therapist", "channel")
    }
    if data.get("therapist") is not None:
        preferences["therapist"] = data["therapist"]
    if data.get("channel"):
        preferences["channel"] = data["channel"]
    return preferences


def appointment_rows(rows: list[Appointment]) -> list[Appointment]:
    for row in labelled(rows, "status"):
        row.price_label = money(row.price)
        row.payment_label = word(row.payment_status)
    return rows


def client_context(request: StaffRequest, client: Client, form: ClientEditForm) -> dict[str, Any]:
    now = timezone.now()
    preferences = client.preferences or {}
    preferred_id = preferences.get("therapist")
    preferred = (
        User.objects.filter(pk=preferred_id).first()
        if isinstance(preferred_id, int) and not isinstance(preferred_id, bool)
        else None
    )
    past = Paginator(client_history.past(client, now=now), client_history.PAST_PAGE)
    past_page = past.get_page(request.GET.get("page"))
    sent = client_history.messages_to(client)
    for message in sent:
        message["what"] = SUBJECTS.get(message["kind"], word(message["kind"]))
        message["channel_label"] = word(message["channel"])
        message["status_label"] = word(message["status"])
    payments = client_history.payments_of(client)
    for payment in payments:
        # Labels for the template only, not Payment fields: set on each row as labelled() does.
        vars(payment).update(
            amount_label=money(payment.amount),
            method_label=PAYMENT_WORDS.get(payment.method, word(payment.method)),
            status_label=PAYMENT_WORDS.get(payment.status, word(payment.status)),
        )
    owed = client_history.owed(client)
    return {
        "client": client,
        "client_phone": national_phone(client.phone),
        "channel_label": word(preferences["channel"]) if preferences.get("channel") else "",
        "preferred": preferred,
        "form": form,
        "upcoming": appointment_rows(client_history.upcoming(client, now=now)),
        "past_page": past_page,
        "past": appointment_rows(list(past_page.object_list)),
        "counts": client_history.counts(client),
        "sent": sent,
        "payments": payments,
        "owed": {"charged": money(owed.charged), "paid": money(owed.paid), "due": money(owed.due)},
        "owes": owed.due > 0,
    }


@desk_only
@require_http_methods(["GET", "POST"])
def client_page(request: StaffRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(Client.objects.select_related("area"), pk=pk)
    if request.method == "GET":
        form = ClientEditForm(initial=initial_of(client))
        return render(request, "desk/client.html", client_context(request, client, form))
    form = ClientEditForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        done = call_for_form(
            form,
            update_client,
            client=client,
            name=data["name"],
            phone=data["phone"],
            email=data["email"],
            address=data["address"],
            area=data["area"],
            notes=data["notes"],
            preferences=preferences_from(client, data),
        )
        if done is not None:
            messages.success(request, f"{done.name}'s details are saved.")
            return redirect("desk:client", pk=client.pk)
    # Nothing was written: the page shows the stored client beside the form as typed.
    client.refresh_from_db()
    context = client_context(request, client, form)
    return render(request, "desk/client.html", context, status=400)
