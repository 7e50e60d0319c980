"""The manager's reports."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from scheduling import states
from scheduling.views.common import role_required


@role_required(states.MANAGER)
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "reports/index.html", {})


urlpatterns = [path("", index, name="index")]
