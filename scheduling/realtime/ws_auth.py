"""Websocket authentication: `?token=` (apps) or the session cookie (dashboards)."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from scheduling.api.auth import token_user


@database_sync_to_async
def _user_for(key: str):
    if not (key.isascii() and key.isalnum()):  # a NUL would be a database error, not a miss
        return AnonymousUser()
    # The API's statement: the user alone, without a Token instance the socket would
    # keep alive through the user's relation cache for as long as it is open.
    found = token_user(key)
    return AnonymousUser() if found is None else found[0]


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
        # Nothing but the scope is kept in this frame, which lives as long as the socket.
        key = _token_in(scope)
        if key is None:
            return await self.session(scope, receive, send)
        return await self.inner({**scope, "user": await _user_for(key)}, receive, send)


def _token_in(scope) -> str | None:
    keys = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return keys[0][:64] if keys else None


def TokenOrSessionAuth(inner):
    return TokenAuthMiddleware(inner, session=AuthMiddlewareStack(inner))
