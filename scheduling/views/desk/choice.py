""" "Any free therapist" on the desk's pages: the decision on an appointment's page, and the
booking form's start times when no therapist is named (the union of everyone's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from scheduling.formats import moment
from scheduling.models import Appointment, TherapistChoice, User
from scheduling.services.choosing import book_any_therapist
from scheduling.views.common import call_for_page
from scheduling.views.desk.present import desk_only

# Any booking still on the to-rebook list (the booking service refuses a time passed).
REBOOKABLE_SINCE = datetime.min.replace(tzinfo=UTC)

REASON_WORDS = {
    "busy": "busy then",
    "not_working": "not working then",
    "travel": "free for the session, not for the travel there and back",
    "no_driver": "free, but no driver could take them",
    "not_qualified": "does not perform the service",
    "excluded": "already taken",
}


@dataclass(frozen=True)
class CandidateLine:
    therapist: str
    chosen: bool
    why: str
    booked_minutes: int
    preferred: bool


@dataclass(frozen=True)
class ChoiceView:
    rule: str
    decided_at: datetime
    decided_by: User | None
    lines: list[CandidateLine]


def choice_view(appointment: Appointment) -> ChoiceView | None:
    """How the therapist was chosen, when the desk asked for any free one (else None)."""
    decision = (
        TherapistChoice.objects.filter(appointment=appointment).select_related("decided_by").first()
    )
    if decision is None:
        return None
    ids = [c["therapist"] for c in decision.candidates]
    names = {u.pk: str(u) for u in User.objects.filter(pk__in=ids)}
    lines = [
        CandidateLine(
            therapist=names.get(c["therapist"], f"therapist #{c['therapist']}"),
            chosen=c["therapist"] == decision.therapist_id,
            why="chosen"
            if c["therapist"] == decision.therapist_id
            else REASON_WORDS.get(c["reason"] or "", "free, ranked lower"),
            booked_minutes=c["booked_minutes"],
            preferred=c["preferred"],
        )
        for c in decision.candidates
    ]
    return ChoiceView(decision.rule, decision.decided_at, decision.decided_by, lines)


def any_therapist_starts(offered: list) -> tuple[list[datetime], list[datetime]]:
    """From availability's answer: the starts some therapist can take (bookable), and those
    someone could make but no driver could carry, none bookable."""
    starts = {s for a in offered for s in a.starts}
    no_driver = {s for a in offered for s in a.no_driver} - starts
    return sorted(starts), sorted(no_driver)


@desk_only
@require_POST
def rebook_any(request: HttpRequest, pk: int) -> HttpResponse:
    """The to-rebook list's one click: the same client, service, place and transport at
    the same time, with the next free therapist other than the one it was with."""
    source = get_object_or_404(Appointment.objects.to_rebook(since=REBOOKABLE_SINCE), pk=pk)
    booked = call_for_page(
        request,
        book_any_therapist,
        actor=request.user,
        client_id=source.client_id,
        service_id=source.service_id,
        start=source.start,
        address=source.address,
        notes=source.notes,
        needs_transport=source.needs_transport,
        area_id=source.area_id,
        exclude=frozenset({source.therapist_id}),
    )
    if booked is None:
        return redirect("desk:queues")
    messages.success(
        request,
        f"Booked {booked.client.name} with {booked.therapist} on "
        f"{moment(booked.start)}. "
        "Waiting for the therapist to accept.",
    )
    return redirect("desk:appointment", pk=booked.pk)
