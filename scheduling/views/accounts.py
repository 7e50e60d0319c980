"""Sign-in lands each role on its own page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from scheduling import states
from scheduling.permissions import role

LANDING = {
    states.RECEPTIONIST: "desk:board",
    states.MANAGER: "desk:board",
    states.THERAPIST: "therapist:day",
    states.DRIVER: "driver:shift",
}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect(LANDING[role(request.user) or ""])  # signed in: a role, never None
