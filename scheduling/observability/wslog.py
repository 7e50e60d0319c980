"""One log line when a websocket session opens and one when it ends, and its request id.

ASGI middleware around the websocket routes (config/asgi.py), inside the authentication
middleware so that the scope has its user. The request id (observability/logs.py) is
bound for the whole connection, which runs in one asyncio task: everything the
consumer does for it, the tasks it starts and the database calls it makes in threads,
logs with it. The consumer adds the events it sends (`count_events`); the frames and the
close code are seen here, on the way out.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

from scheduling.observability import logs

sessions_log = logging.getLogger("scheduling.websocket")

SCOPE_KEY = "log_session"


class Session:
    def __init__(self, scope: dict[str, Any], request_id: str) -> None:
        user = scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            user = None
        self.user_id: int | None = user.pk if user is not None else None
        self.role: str | None = getattr(user, "effective_role", None)
        self.request_id = request_id
        self.started = time.monotonic()
        self.accepted = False
        self.frames = 0
        self.events = 0
        self.code: int | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "kind": "websocket",
            "user": self.user_id,
            "role": self.role,
            "request_id": self.request_id,
        }

    def opened(self) -> None:
        self.accepted = True
        sessions_log.info(
            "websocket connect user %s (%s)",
            self.user_id,
            self.role,
            extra={**self.fields(), "state": "connect"},
        )

    def ended(self) -> None:
        seconds = time.monotonic() - self.started
        sessions_log.info(
            "websocket %s user %s (%s) code %s after %.1f s: %s frames, %s events",
            "disconnect" if self.accepted else "refused",
            self.user_id,
            self.role,
            self.code,
            seconds,
            self.frames,
            self.events,
            extra={
                **self.fields(),
                "state": "disconnect" if self.accepted else "refused",
                "duration_ms": logs.ms(seconds),
                "frames": self.frames,
                "events": self.events,
                "close_code": self.code,
            },
        )


def unbound() -> contextvars.Context:
    """The current context without a request id: for a task that outlives the socket
    that started it (the process's hub)."""
    context = contextvars.copy_context()
    context.run(logs.REQUEST_ID.set, None)
    return context


def count_events(scope: dict[str, Any], count: int) -> None:
    """The consumer sent `count` events in a frame (a no-op outside this middleware)."""
    session = scope.get(SCOPE_KEY)
    if session is not None:
        session.events += count


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class SessionLogMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        request_id = logs.from_proxy(_header(scope, logs.HEADER.lower().encode()))
        session = Session(scope, request_id)
        scope = {**scope, SCOPE_KEY: session}

        async def sending(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "websocket.accept":
                session.opened()
            elif kind == "websocket.send":
                session.frames += 1
            elif kind == "websocket.close" and session.code is None:
                session.code = message.get("code") or 1000
            await send(message)

        # What it wraps, for the slow-client watch (scheduling/realtime/transport_watch.py), which
        # follows `send` down to daphne's socket.
        sending.__wrapped__ = send  # type: ignore[attr-defined]

        async def receiving() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message.get("type") == "websocket.disconnect" and session.code is None:
                session.code = message.get("code")
            return message

        with logs.bound(request_id):
            try:
                return await self.inner(scope, receiving, sending)
            finally:
                session.ended()
