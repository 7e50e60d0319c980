"""Who is acting on an API request, as the services take it: a `User`."""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from scheduling.models import User


def request_actor(request: Request) -> User:
    """The request's signed-in user.

    Every route that calls this refuses an anonymous request before its view runs (DRF's
    IsAuthenticated by default, the role gates of scheduling/permissions.py otherwise), so
    the check only holds the type to what the permissions already guarantee: were a route
    opened up by mistake, it answers NotAuthenticated, as its permission check would,
    rather than hand an AnonymousUser to a service."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user
