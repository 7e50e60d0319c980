"""Sign-in protection (django-axes): what a locked-out client is told.

Axes counts failed sign-ins on /accounts/login/, /admin/login/ and /api/auth/token/ per
username and per client address (scheduling/clientaddr.py) and refuses both for
AXES_COOLOFF_TIME once either passes AXES_FAILURE_LIMIT, even with the right password.
Failures count for AXES_COOLOFF_TIME after they happen, so "try again in N minutes" (the
whole cool-off) is the longest the client may have to wait.
`manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS` unlock.
"""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

TOO_MANY = 429


def cool_off_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_body() -> dict:
    minutes = math.ceil(cool_off_seconds() / 60)
    return {
        "detail": f"Too many failed sign-ins. Try again in {minutes} minutes.",
        "retry_after": cool_off_seconds(),
    }


def locked_out(request: HttpRequest, response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: JSON under /api/, the page elsewhere; 429 with Retry-After."""
    body = lockout_body()
    if request.path.startswith("/api/"):
        answer: HttpResponse = JsonResponse({"detail": body["detail"]}, status=TOO_MANY)
    else:
        answer = render(request, "registration/locked_out.html", body, status=TOO_MANY)
    answer["Retry-After"] = str(body["retry_after"])
    return answer


class SignInBackend(AxesStandaloneBackend):
    """Axes' check before the password check, for every sign-in that comes with a
    request. One without (Django's test client `login()`, a shell) has no address to
    count by; it is left to the password check rather than refused with an error."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
