"""The one websocket: a scoped stream of events per user, gap-free and batched.

On connect the server picks the stream from the role (the desk stream, or the user's
own), subscribes, then replays from the database what the client missed after `?after=`,
then forwards live events. Every event carries its `seq`; anything at or below what was
already sent is dropped, and a live event whose `prev` is newer than what was sent means
something is missing, which is read back from the database before going on.

Redis is the transport and the database the record, so three things guard against what
Redis can lose:
- a gap inside the stream shows as a `prev` this connection never sent (above);
- a lost tail (the last events of a burst, or everything published while Redis was
  restarting) has no later event to reveal it, so one watcher per process compares the
  committed head of the stream with what arrived through the channel layer, and when an
  event committed a full interval ago still has not arrived, every connection of the
  process reads its stream from the database (and joins its groups again: a restarted
  Redis has forgotten them);
- a client that cannot keep up is closed with 4008 and comes back with its last seq.

The slow-client bound is real under daphne: the consumer watches the socket's Twisted
write buffer (see `_TransportWatch`), stops writing frames while it is over its high-water
mark, and closes the socket when it has held more than BUFFER_EVENTS events back or has
stalled for two ping intervals. Under another server (or the test communicator) only the
application-side bound applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from zope.interface import implementer

try:  # daphne's server depends on Twisted; another ASGI server may not bring it
    from twisted.internet.interfaces import IPushProducer
except ImportError:  # pragma: no cover
    IPushProducer = None

from scheduling.events import DESK_GROUP, shaped_for, user_group
from scheduling.models import EventCounter, StreamEvent

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's). The browser client reconnects at once
# with its last seq on 4008; 4401 means log in again.
UNAUTHENTICATED = 4401
TOO_SLOW = 4008
CATCH_UP_CHUNK = 500
DEFAULTS = {"WATCH_SECONDS": 1.0}
# What the transport tells the consumer.
PAUSED, RESUMED, STOPPED = "paused", "resumed", "stopped"


def stream_setting(name: str) -> float:
    return {**DEFAULTS, **settings.LIVE_STREAM}[name]


class StreamConsumer(AsyncWebsocketConsumer):
    user: Any
    stream_groups: list[str]
    last_queued: int

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
        self.resync_task: asyncio.Task | None = None
        self.last_flush = 0.0
        self.closing = False
        # Live events and a resync both read and advance last_queued: one at a time.
        self.lock = asyncio.Lock()
        self.writable = asyncio.Event()
        self.writable.set()
        # Subscribe before reading the database: an event committed in between arrives
        # both ways, and the seq check drops the copy. The other order would lose it.
        for group in self.stream_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.transport_watch = _TransportWatch.attach(self.base_send, self._writable_changed)
        async with self.lock:
            self.last_queued = after if after is not None else await self._newest_seq()
            await self._catch_up(through=None)
        self.ping_task = asyncio.create_task(self._ping_forever())
        _Watcher.for_loop(self.channel_layer).join(self)

    async def disconnect(self, code: int) -> None:
        for name in ("flush_task", "ping_task", "resync_task"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
        watcher = _Watcher.current()
        if watcher is not None:
            watcher.leave(self)
        for group in getattr(self, "stream_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        """Clients only listen; whatever they send is ignored."""

    # --- live events from the channel layer ---------------------------------------------

    async def stream_event(self, message: dict) -> None:
        async with self.lock:
            seq = message["seq"]
            if seq <= self.last_queued or self.closing:
                return  # already sent (replayed from the database, or a duplicate)
            if message["prev"] > self.last_queued:
                await self._catch_up(through=seq)  # something before it is missing
                return
            event = {"seq": seq, "type": message["event"], "data": message["data"]}
            await self._queue([event])

    def resync_soon(self) -> None:
        """Called by the watcher when the channel layer lost events."""
        if self.resync_task is None or self.resync_task.done():
            self.resync_task = asyncio.create_task(self._resync())

    async def _resync(self) -> None:
        async with self.lock:
            if self.closing:
                return
            for group in self.stream_groups:
                await self.channel_layer.group_add(group, self.channel_name)
            await self._catch_up(through=None)

    # --- sending ------------------------------------------------------------------------

    async def _catch_up(self, *, through: int | None) -> None:
        while not self.closing:
            # The database is read a chunk at a time, and only as fast as the socket
            # drains: a client far behind costs one chunk of memory, not its backlog.
            if not await self._wait_writable():
                return
            rows = await self._read_after(self.last_queued, through)
            if rows:
                # A chunk is a batch already: it goes now, not after the window, or the
                # next chunk would pile onto it.
                await self._queue(rows, at_once=True)
            if len(rows) < _chunk():
                return

    async def _queue(self, events: list[dict], *, at_once: bool = False) -> None:
        self.pending.extend(events)
        self.last_queued = events[-1]["seq"]
        if len(self.pending) > stream_setting("BUFFER_EVENTS"):
            await self._too_slow(f"{len(self.pending)} events held back")
            return
        if at_once:
            await self._flush()
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
        if self.closing or not self.pending or not self.writable.is_set():
            return  # while the socket is backed up, events wait here (bounded above)
        batch, self.pending = self.pending, []
        self.last_flush = asyncio.get_running_loop().time()
        events = [{**e, "data": shaped_for(self.user, e["data"])} for e in batch]
        await self.send(text_data=orjson.dumps({"type": "events", "events": events}).decode())

    async def _too_slow(self, why: str) -> None:
        if self.closing:
            return
        logger.info(
            "stream: closing user %s's socket (%s): reconnect with last seq", self.user.pk, why
        )
        # Never drop silently: the client comes back with its last seq and reads the rest
        # from the database.
        self.closing = True
        self.pending.clear()
        await self.close(code=TOO_SLOW)

    def _writable_changed(self, state: str) -> None:
        """Twisted's transport filled past its high-water mark, drained, or was lost."""
        if state == PAUSED:
            self.writable.clear()
            return
        if state == STOPPED:
            self.closing = True  # the connection is gone; disconnect() follows
        self.writable.set()
        if self.pending and self.flush_task is None and not self.closing:
            self.flush_task = asyncio.ensure_future(self._flush_later(0))

    async def _wait_writable(self) -> bool:
        if self.writable.is_set():
            return True
        try:
            await asyncio.wait_for(self.writable.wait(), timeout=self._stall_limit())
        except TimeoutError:
            await self._too_slow("socket stalled")
            return False
        return not self.closing

    def _stall_limit(self) -> float:
        return 2 * stream_setting("PING_SECONDS")

    async def _ping_forever(self) -> None:
        """An application ping, so a browser (which never sees protocol pings) can tell a
        quiet stream from a dead one. Daphne's own pings close half-open sockets."""
        with contextlib.suppress(asyncio.CancelledError):
            while not self.closing:
                await asyncio.sleep(stream_setting("PING_SECONDS"))
                if not self.writable.is_set():
                    # Backed up for a whole ping interval already: give it one more.
                    if not await self._wait_writable():
                        return
                    continue
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
                : _chunk()
            ]
        ]

    @database_sync_to_async
    def _newest_seq(self) -> int:
        newest = StreamEvent.objects.visible_to(self.user).order_by("-seq").first()
        return newest.seq if newest else 0


def _chunk() -> int:
    # Never more than the buffer may hold, or a catch-up alone would overflow it.
    return max(1, min(CATCH_UP_CHUNK, int(stream_setting("BUFFER_EVENTS"))))


def _after(query_string: bytes) -> int | None:
    values = parse_qs(query_string.decode("latin-1")).get("after")
    if not values:
        return None
    try:
        return max(0, int(values[0]))
    except ValueError:
        return None


# --- the slow-client bound under daphne ---------------------------------------------------


def _daphne_protocol(send) -> Any | None:
    """The Twisted protocol behind an ASGI `send`, when the server is daphne.

    Daphne hands the application `partial(server.handle_reply, protocol)`; Channels'
    session middleware wraps it in a bound method that keeps it as `real_send`. Anything
    else (another server, the test communicator) has no transport to watch."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return protocol if hasattr(protocol, "registerProducer") else None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


class _TransportWatch:
    """A Twisted push producer placed on the socket's transport.

    Twisted asks the transport's producer to pause when its write buffer passes its
    high-water mark (64 KiB) and to resume when the buffer has drained: exactly the
    signal for "this client is not reading". Daphne leaves the HTTP channel registered
    there after the upgrade (it stops reading while paused), so the watch forwards every
    call to it and keeps that behaviour."""

    def __init__(self, previous, on_change) -> None:
        self.previous = previous
        self.on_change = on_change

    @classmethod
    def attach(cls, send, on_change) -> _TransportWatch | None:
        protocol = _daphne_protocol(send)
        transport = getattr(protocol, "transport", None)
        if IPushProducer is None or transport is None or not hasattr(transport, "producer"):
            return None
        watch = cls(transport.producer, on_change)
        if watch.previous is not None:
            transport.unregisterProducer()
        transport.registerProducer(_Producer(watch), True)
        return watch


class _Producer:
    def __init__(self, watch: _TransportWatch) -> None:
        self.watch = watch

    def pauseProducing(self) -> None:
        if self.watch.previous is not None:
            self.watch.previous.pauseProducing()
        self.watch.on_change(PAUSED)

    def resumeProducing(self) -> None:
        if self.watch.previous is not None:
            self.watch.previous.resumeProducing()
        self.watch.on_change(RESUMED)

    def stopProducing(self) -> None:
        if self.watch.previous is not None:
            self.watch.previous.stopProducing()
        self.watch.on_change(STOPPED)


if IPushProducer is not None:
    _Producer = implementer(IPushProducer)(_Producer)


# --- the lost-tail watcher ------------------------------------------------------------------


class _Watcher:
    """One per event loop (so one per daphne process): listens to the desk group, which
    carries every event, and compares the highest seq that arrived with the committed
    head of the stream. An event committed at the previous look that still has not
    arrived was lost in the channel layer: every connection here reads its stream from
    the database. Costs one indexed query per WATCH_SECONDS per process."""

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, layer) -> None:
        self.layer = layer
        self.consumers: weakref.WeakSet[StreamConsumer] = weakref.WeakSet()
        self.seen = 0
        self.owed = 0
        self.channel: str | None = None
        self.task = asyncio.create_task(self._run())

    @classmethod
    def for_loop(cls, layer) -> _Watcher:
        loop = asyncio.get_running_loop()
        watcher = cls._by_loop.get(loop)
        if watcher is None or watcher.task.done():
            watcher = cls._by_loop[loop] = cls(layer)
        return watcher

    @classmethod
    def current(cls) -> _Watcher | None:
        return cls._by_loop.get(asyncio.get_running_loop())

    def join(self, consumer: StreamConsumer) -> None:
        self.consumers.add(consumer)

    def leave(self, consumer: StreamConsumer) -> None:
        self.consumers.discard(consumer)

    async def _run(self) -> None:
        self.channel = await self.layer.new_channel()
        receiver = asyncio.create_task(self._receive())
        try:
            self.seen = self.owed = await _committed_head()
            while True:
                await asyncio.sleep(stream_setting("WATCH_SECONDS"))
                await self._look()
        finally:
            receiver.cancel()

    async def _look(self) -> None:
        if not self.consumers:
            self.owed = 0  # nobody here to resync; start afresh when someone connects
            return
        try:
            # Joined again each time: a restarted Redis has forgotten the group, and the
            # channels-redis membership expires after a day.
            await self.layer.group_add(DESK_GROUP, self.channel)
            head = await _committed_head()
        except Exception:
            logger.exception("stream watcher: cannot read the head of the stream")
            return
        if head < self.seen:
            self.seen = head  # the table was emptied (a restored or test database)
        if self.owed > self.seen:
            logger.warning(
                "stream: events %d-%d committed but not delivered by the channel layer; "
                "%d connections read them from the database",
                self.seen + 1,
                self.owed,
                len(self.consumers),
            )
            self.seen = self.owed
            for consumer in list(self.consumers):
                consumer.resync_soon()
        self.owed = head

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream watcher: channel layer receive failed")
                await asyncio.sleep(stream_setting("WATCH_SECONDS"))
                continue
            if message.get("type") == "stream.event":
                self.seen = max(self.seen, message["seq"])


@database_sync_to_async
def _committed_head() -> int:
    counter = EventCounter.objects.filter(pk=1).values_list("last_seq", flat=True).first()
    return counter or 0
