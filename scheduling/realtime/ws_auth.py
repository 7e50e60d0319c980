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
    """`?token=` authenticates the socket by itself; without one, the session cookie does
    (`session`). A token socket never goes through the cookie and session layers: a wrong
    token is anonymous, never the cookie's user, and an open socket keeps no session
    store, lazy user or scope copies of theirs (tens of thousands of idle sockets a
    process, bench/ws)."""

    def __init__(self, inner, *, session) -> None:
        self.inner = inner
        self.session = session

    async def __call__(self, scope, receive, send):
        keys = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if not keys:
            return await self.session(scope, receive, send)
        scope = {**scope, "user": await _user_for(keys[0][:64])}
        return await self.inner(scope, receive, send)


def TokenOrSessionAuth(inner):
    return TokenAuthMiddleware(inner, session=AuthMiddlewareStack(inner))
