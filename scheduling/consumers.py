"""The one websocket: a scoped stream of events per user, gap-free and batched.

On connect the server picks the stream from the role (the desk stream, or the user's
own), subscribes, then replays from the database what the client missed after `?after=`,
then forwards live events. Every event carries its `seq`; anything at or below what was
already sent is dropped, and a live event whose `prev` is newer than what was sent means
something is missing, which is read back from the database before going on.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from scheduling.events import DESK_GROUP, shaped_for, user_group
from scheduling.models import StreamEvent

# Close codes (4000-4999 are the application's). The browser client reconnects with its
# last seq on 4008; 4401 means log in again.
UNAUTHENTICATED = 4401
TOO_SLOW = 4008
CATCH_UP_CHUNK = 500


def stream_setting(name: str) -> float:
    return settings.LIVE_STREAM[name]


class StreamConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=UNAUTHENTICATED)  # before accept: refused with a 403
            return
        after = _after(self.scope.get("query_string", b""))
        self.user = user
        self.stream_groups = [DESK_GROUP] if user.is_desk else [user_group(user.pk)]
        self.pending: list[dict] = []
        self.flush_task: asyncio.Task | None = None
        self.last_flush = 0.0
        # Subscribe before reading the database: an event committed in between arrives
        # both ways, and the seq check drops the copy. The other order would lose it.
        for group in self.stream_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.last_queued = after if after is not None else await self._newest_seq()
        await self._catch_up(through=None)
        self.ping_task = asyncio.create_task(self._ping_forever())

    async def disconnect(self, code: int) -> None:
        for task in (getattr(self, "flush_task", None), getattr(self, "ping_task", None)):
            if task is not None:
                task.cancel()
        for group in getattr(self, "stream_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        """Clients only listen; whatever they send is ignored."""

    # --- live events from the channel layer ---------------------------------------------

    async def stream_event(self, message: dict) -> None:
        seq = message["seq"]
        if seq <= self.last_queued:
            return  # already sent (replayed from the database, or a duplicate)
        if message["prev"] > self.last_queued:
            await self._catch_up(through=seq)  # something before it is missing
            return
        await self._queue([{"seq": seq, "type": message["event"], "data": message["data"]}])

    # --- sending ------------------------------------------------------------------------

    async def _catch_up(self, *, through: int | None) -> None:
        while True:
            rows = await self._read_after(self.last_queued, through)
            if rows:
                await self._queue(rows)
            if len(rows) < CATCH_UP_CHUNK:
                return

    async def _queue(self, events: list[dict]) -> None:
        self.pending.extend(events)
        self.last_queued = events[-1]["seq"]
        if len(self.pending) > stream_setting("BUFFER_EVENTS"):
            # Never drop silently: tell the client to come back with its last seq.
            self.pending.clear()
            await self.close(code=TOO_SLOW)
            return
        if self.flush_task is not None:
            return  # a flush is already due and will take these
        loop = asyncio.get_running_loop()
        wait = self.last_flush + stream_setting("BATCH_SECONDS") - loop.time()
        if wait <= 0:
            await self._flush()  # idle connection: send at once
        else:
            self.flush_task = asyncio.create_task(self._flush_later(wait))

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self.flush_task = None
        await self._flush()

    async def _flush(self) -> None:
        batch, self.pending = self.pending, []
        self.last_flush = asyncio.get_running_loop().time()
        if not batch:
            return
        events = [{**e, "data": shaped_for(self.user, e["data"])} for e in batch]
        await self.send(text_data=orjson.dumps({"type": "events", "events": events}).decode())

    async def _ping_forever(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(stream_setting("PING_SECONDS"))
                await self.send(text_data='{"type":"ping"}')

    # --- database -----------------------------------------------------------------------

    @database_sync_to_async
    def _read_after(self, after: int, through: int | None) -> list[dict]:
        rows = StreamEvent.objects.visible_to(self.user).filter(seq__gt=after)
        if through is not None:
            rows = rows.filter(seq__lte=through)
        return [
            {"seq": seq, "type": kind, "data": data}
            for seq, kind, data in rows.order_by("seq").values_list("seq", "type", "data")[
                :CATCH_UP_CHUNK
            ]
        ]

    @database_sync_to_async
    def _newest_seq(self) -> int:
        newest = StreamEvent.objects.visible_to(self.user).order_by("-seq").first()
        return newest.seq if newest else 0


def _after(query_string: bytes) -> int | None:
    values = parse_qs(query_string.decode("latin-1")).get("after")
    if not values:
        return None
    try:
        return max(0, int(values[0]))
    except ValueError:
        return None
