"""Clients from the booking form: search by name or phone, and a new client added inline."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from scheduling.forms import AppointmentForm, ClientForm
from scheduling.models import Client
from scheduling.services.clients import create_client
from scheduling.views.common import StaffRequest, call_for_form
from scheduling.views.desk.booking import new_form_page
from scheduling.views.desk.present import client_choices, desk_only, int_or_none

CLIENT_RESULTS = 8


@desk_only
@require_POST
def client_search(request: StaffRequest) -> HttpResponse:
    """Clients by name or phone fragment. A POST, so that phone numbers never go into a
    URL (and so into access logs and browser history)."""
    query = request.POST.get("q", "")[:100]
    found = list(Client.objects.search(query)[: CLIENT_RESULTS + 1]) if query.strip() else []
    context = {
        "client_results": client_choices(
            found[:CLIENT_RESULTS], int_or_none(request.POST.get("client"))
        ),
        "query": query.strip(),
        "more": len(found) > CLIENT_RESULTS,
        "searched": True,
    }
    return render(request, "desk/_client_results.html", context)


@desk_only
@require_POST
def new_client(request: StaffRequest) -> HttpResponse:
    """Add a client from the booking form; they come back chosen."""
    form = ClientForm(request.POST)
    client = None
    if form.is_valid():
        client = call_for_form(
            form,
            create_client,
            name=form.cleaned_data["name"],
            phone=form.cleaned_data["phone"],
            address=form.cleaned_data["address"],
            area=form.cleaned_data["area"],
        )
    if not request.htmx:
        if client is None:
            page = AppointmentForm(initial={"date": timezone.localdate()})
            return new_form_page(request, page, client_form=form)
        return redirect(f"{reverse('desk:new')}?client={client.pk}")
    if client is None:
        return render(request, "desk/_new_client.html", {"client_form": form, "open": True})
    context = {
        "client_form": ClientForm(),
        "client_results": client_choices([client], client.pk),
        "added": client,
    }
    return render(request, "desk/_client_added.html", context)
