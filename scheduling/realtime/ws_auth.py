"""Websocket authentication: `?token=` (apps) or the session cookie (dashboards)."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _user_for(key: str):
    if not (key.isascii() and key.isalnum()):  # a NUL would be a database error, not a miss
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token else AnonymousUser()


class TokenAuthMiddleware:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        keys = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if keys:
            # A token wins over a cookie; a wrong token is anonymous, never the cookie's user.
            scope = {**scope, "user": await _user_for(keys[0][:64])}
        return await self.inner(scope, receive, send)


def TokenOrSessionAuth(inner):
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))
