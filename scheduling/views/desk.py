"""The receptionist's desk (receptionists and managers)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from scheduling import states
from scheduling.views.common import live_after, role_required


@role_required(*states.DESK)
def board(request: HttpRequest) -> HttpResponse:
    return render(request, "desk/board.html", {"live_after": live_after(request.user)})


urlpatterns = [path("", board, name="board")]
