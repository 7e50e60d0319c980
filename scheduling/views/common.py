"""What every page shares: the role gate, the live stream's starting point, and domain
errors turned into form errors or page messages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from scheduling.errors import DomainError, ValidationFailed
from scheduling.models import User
from scheduling.permissions import role
from scheduling.services.retention import live_start

T = TypeVar("T")
View = Callable[..., HttpResponse]


class StaffRequest(HttpRequest):
    """What a page behind `role_required` is called with, for the type checker: the gate
    lets only signed-in staff through, and django-htmx's middleware sets `htmx`."""

    user: User
    htmx: HtmxDetails


def role_required(*roles: str) -> Callable[[View], View]:
    """Signed-in staff of one of `roles`; others get a 403 page that says so.

    An htmx request whose session has ended is sent to the login page as a whole page,
    not swapped into the fragment it asked for."""

    def decorate(view: View) -> View:
        @wraps(view)
        def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                login = f"{reverse('login')}?next={request.get_full_path()}"
                if getattr(request, "htmx", False):
                    return HttpResponseClientRedirect(reverse("login"))
                return redirect(login)
            if role(request.user) not in roles:
                return render(request, "403.html", status=403)
            return view(request, *args, **kwargs)

        return gated

    return decorate


def live_after(user) -> int:
    """Where the page's stream starts (`retention.live_start`). Read it *before* the
    page's data, so that anything committed in between is replayed to the page, never
    missed."""
    return live_start(user)


def form_errors_from(form: forms.Form, error: DomainError) -> None:
    """Put a service's refusal on the form: beside the field it names when the form has
    that field, at the top otherwise."""
    placed = False
    if isinstance(error, ValidationFailed):
        for field, field_messages in error.errors.items():
            target = field if field in form.fields else None
            for message in field_messages:
                form.add_error(target, message)
                placed = True
    if not placed:
        form.add_error(None, error.message)


def call_for_form(form: forms.Form, service: Callable[..., T], **kwargs: Any) -> T | None:
    """Run `service`; on a domain error, show it on `form` and return None."""
    try:
        return service(**kwargs)
    except DomainError as error:
        form_errors_from(form, error)
        return None


def call_for_page(request: HttpRequest, service: Callable[..., T], **kwargs: Any) -> T | None:
    """Run `service` for a button on a page; success or refusal becomes a message."""
    try:
        return service(**kwargs)
    except DomainError as error:
        messages.error(request, error.message)
        return None
