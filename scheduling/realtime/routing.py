"""The one websocket route, /ws/stream/.

Not channels' URLRouter: it hands its application a copy of the scope with `url_route`,
which a consumer without URL arguments never reads, and its frame and that copy stay
alive as long as the socket (0.7 KiB of an idle socket, bench/results/2026-12-02-ws-memory.md).
Any other path is refused at the handshake (403), as channels refuses a bad origin.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier

from scheduling.realtime.consumers import StreamConsumer

STREAM_PATH = "/ws/stream/"


async def websocket_route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] != STREAM_PATH:
        await WebsocketDenier()(scope, receive, send)
        return
    await StreamConsumer()(scope, receive, send)
