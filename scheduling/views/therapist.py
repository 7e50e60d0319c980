"""The therapist's day (phone-first)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from scheduling import states
from scheduling.views.common import live_after, role_required


@role_required(states.THERAPIST)
def day(request: HttpRequest) -> HttpResponse:
    return render(request, "therapist/day.html", {"live_after": live_after(request.user)})


urlpatterns = [path("", day, name="day")]
