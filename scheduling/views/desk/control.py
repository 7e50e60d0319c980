"""The desk taking control of an appointment (issue 13): reassigning it to another
therapist from its page. The therapists offered are those free at its time, best first
by the "any free therapist" rule (services/choosing.py); the reassign service decides."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from scheduling.forms import id_field
from scheduling.limits import TEXT_MAX
from scheduling.models import Appointment, User
from scheduling.services.choosing import choose_therapist
from scheduling.services.reassign import reassign
from scheduling.views.common import StaffRequest, call_for_form
from scheduling.views.desk.present import desk_only


class ReassignForm(forms.Form):
    therapist = id_field("Give it to", "a therapist")
    reason = forms.CharField(label="Reason", max_length=TEXT_MAX, widget=forms.TextInput())

    prefix = "reassign"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].error_messages["required"] = "Say why, for the appointment's history."


def free_instead(appointment: Appointment) -> list[User]:
    """The therapists who could take it at its time, best first (not its own)."""
    choice = choose_therapist(
        service=appointment.service,
        start=appointment.start,
        client=appointment.client,
        needs_transport=appointment.needs_transport,
        area_id=appointment.area_id,
        exclude=(appointment.therapist_id,),
        moving=appointment.pk,
    )
    free = [c.therapist_id for c in choice.candidates if c.reason is None]
    people = User.objects.in_bulk(free)
    return [people[pk] for pk in free]


def reassign_context(appointment: Appointment, actions: list[str], given: Any) -> dict:
    return {"reassign_form": given or ReassignForm()} if "reassign" in actions else {}


@desk_only
@require_GET
def reassign_choices(request: StaffRequest, pk: int) -> HttpResponse:
    """The Reassign control's select (htmx fragment, asked for once the page is drawn)."""
    from scheduling.views.desk.appointment import appointment_for

    appointment = appointment_for(pk, request.user)
    context = {"appointment": appointment, "reassign_to": free_instead(appointment)}
    return render(request, "desk/_reassign_choices.html", context)


@desk_only
@require_POST
def reassign_view(request: StaffRequest, pk: int) -> HttpResponse:
    # Imported here: the appointment page imports this module for its context.
    from scheduling.views.desk.appointment import appointment_for, detail_page

    appointment = appointment_for(pk, request.user)
    form = ReassignForm(request.POST)
    if form.is_valid():
        done = call_for_form(
            form,
            reassign,
            actor=request.user,
            appointment_id=appointment.pk,
            therapist_id=form.cleaned_data["therapist"],
            reason=form.cleaned_data["reason"],
        )
        if done is not None:
            messages.success(
                request,
                f"Given to {done.therapist}, who is asked to accept. "
                f"{appointment.therapist} is told it is no longer theirs.",
            )
            return redirect("desk:appointment", pk=appointment.pk)
    return detail_page(request, appointment, {"reassign": form})
