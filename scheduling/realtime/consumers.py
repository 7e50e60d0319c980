"""The one websocket: a scoped stream of events per user, gap-free and batched.

Each event is published once, on commit, to one channels-redis group (events.STREAM_GROUP).
Each realtime process joins that group once, through its hub (`hub.Hub`), which hands
every event to the process's desk sockets and to the sockets of the users the event
names. Sockets themselves hold no channel-layer membership: a thousand desk sockets cost
one Redis message per event per process, not a thousand, and a Redis restart is dealt
with in one place (the hub).

On connect the server picks the stream from the role (the desk stream, or the user's
own), registers the socket with the hub (joining the group first if needed), then replays
from the database what the client missed after `?after=`, then forwards live events.
Every event carries its `seq`; anything at or below what was already sent is dropped, and
a live event whose `prev` is newer than what was sent means something is missing, which
is read back from the database before going on.
Redis is the transport and the database the record; what Redis can lose and how it is
found again is the hub's business (hub.py).

A client that cannot keep up is closed with 4008 and comes back with its last seq. The
bound is real under daphne: the consumer watches the socket's Twisted write buffer
(`transport_watch.TransportWatch`), holds frames back while it is over its high-water
mark, and closes the socket when it has held more than BUFFER_EVENTS events back or
has stalled for two ping intervals. Under another server (or the test communicator)
only the application-side bound applies.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from scheduling.models import StreamEvent
from scheduling.observability import stream as metrics
from scheduling.observability import wslog
from scheduling.realtime import revocation
from scheduling.realtime.events import shaped_for
from scheduling.realtime.hub import Hub, frame_text, stream_setting
from scheduling.realtime.transport_watch import PAUSED, STOPPED, TransportWatch
from scheduling.services.retention import live_start, stream_gone

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's). The browser client reconnects at once
# with its last seq on 4008; 4401 means log in again.
UNAUTHENTICATED = 4401
TOO_SLOW = 4008
STREAM_PRUNED = 4410  # `after` is older than what retention keeps: reload
CATCH_UP_CHUNK = 500


class StreamConsumer(AsyncWebsocketConsumer):
    # No channel per socket: the process hub delivers (see the module docstring).
    channel_layer_alias = None

    # One per open socket, tens of thousands per process: this socket's own state in
    # slots (the base classes keep a __dict__ for theirs). Nothing per socket runs while
    # it is idle: the hub's one timer pings every socket of the process (Hub._ping), and
    # the wait for a backed-up socket to drain is made only when something waits.
    __slots__ = (
        "base_send",
        "channel_layer",
        "close_task",
        "closed_slow",
        "closing",
        "desk",
        "drain_task",
        "flush_due",
        "hub",
        "inbox",
        "last_flush",
        "last_queued",
        "lock",
        "paused",
        "pending",
        "ping_task",
        "resumed",
        "resync_task",
        "scope",
        "session_key",
        "stalled_pings",
        "token",
        "transport_watch",
        "user",
    )

    user: Any
    last_queued: int

    async def __call__(self, scope, receive, send) -> None:
        """AsyncConsumer.__call__ for a consumer without a channel layer. With only the
        client to listen to, its messages are awaited here, one after another; the base
        class waits on them through `await_many_dispatch`, which keeps a task of its own
        and a fresh `asyncio.wait` for every idle socket (about 1.3 KiB each,
        bench/results/2026-12-02-ws-memory.md)."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=UNAUTHENTICATED)  # before accept: refused with a 403
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        after = _after(query)
        self.user = user
        # What authenticated this socket, so that ending that login closes it.
        self.token = query["token"][0] if "token" in query else None
        session = self.scope.get("session")
        self.session_key = None if self.token else getattr(session, "session_key", None)
        self.desk = user.is_desk
        self.pending: list[dict] = []
        self.inbox: list[tuple[int, int, str, Any]] = []
        # Entered in the hub's flushes, to send what is pending when the window closes.
        self.flush_due = False
        self.drain_task: asyncio.Task | None = None
        self.resync_task: asyncio.Task | None = None
        self.close_task: asyncio.Task | None = None
        self.ping_task: asyncio.Task | None = None
        self.last_flush = 0.0
        self.closing = False
        self.closed_slow = False
        # Live events, a catch-up and a resync all read and advance last_queued.
        self.lock = asyncio.Lock()
        # Twisted's write buffer over its high-water mark (transport_watch), the hub's
        # pings seen while it stayed so, and what a waiter for it to drain waits on.
        self.paused = False
        self.stalled_pings = 0
        self.resumed: asyncio.Future[None] | None = None
        # Registered (and the process subscribed) before reading the database: an event
        # committed in between arrives both ways, and the seq check drops the copy. The
        # other order would lose it. Until last_queued is known, live events wait in the
        # inbox (the lock is held).
        async with self.lock:
            self.hub = await Hub.get()
            await self.hub.join(self)
            await self.accept()
            self.transport_watch = TransportWatch.attach(self.base_send, self._writable_changed)
            self.last_queued = after if after is not None else await self._newest_seq()
            await self._catch_up(through=None)
        self._drain_soon()

    async def disconnect(self, code: int) -> None:
        self.closing = True
        # A flush still due finds the socket closing and sends nothing.
        for name in ("ping_task", "resync_task", "drain_task"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
        hub = getattr(self, "hub", None)
        if hub is not None:
            await hub.leave(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        """Clients only listen; whatever they send is ignored."""

    def revoke_if(self, message: dict) -> None:
        """The login behind this socket ended (scheduling/realtime/revocation.py): log in again."""
        if self.closing or not revocation.matches(
            message, session_key=self.session_key, token=self.token
        ):
            return
        self.closing = True
        logger.info("stream: closing user %s's socket: login ended", self.user.pk)
        self.close_task = asyncio.create_task(self.close(code=UNAUTHENTICATED))

    # --- live events from the hub -------------------------------------------------------

    def offer(self, seq: int, prev: int, kind: str, data: Any) -> None:
        """An event for this socket (called by the hub, in order). The common case is
        handled here and now; a gap, or a socket busy reading the database, goes through
        the inbox so that order is kept."""
        if self.closing:
            return
        if self.inbox or self.lock.locked() or prev > self.last_queued:
            self.inbox.append((seq, prev, kind, data))
            self._drain_soon()
            return
        if seq <= self.last_queued:
            return  # already sent (replayed from the database, or a duplicate)
        self._queue_now({"seq": seq, "type": kind, "data": data})

    def _drain_soon(self) -> None:
        if self.inbox and (self.drain_task is None or self.drain_task.done()):
            self.drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        async with self.lock:
            while self.inbox and not self.closing:
                seq, prev, kind, data = self.inbox.pop(0)
                if seq <= self.last_queued:
                    continue
                if prev > self.last_queued:
                    await self._catch_up(through=seq)  # something before it is missing
                    continue
                await self._queue([{"seq": seq, "type": kind, "data": data}])

    def resync_soon(self) -> None:
        """Called by the hub when the channel layer lost events."""
        if self.resync_task is None or self.resync_task.done():
            self.resync_task = asyncio.create_task(self._resync())

    async def _resync(self) -> None:
        async with self.lock:
            await self._catch_up(through=None)
        self._drain_soon()

    # --- sending ------------------------------------------------------------------------

    async def _catch_up(self, *, through: int | None) -> None:
        while not self.closing:
            # The database is read a chunk at a time, and only as fast as the socket
            # drains: a client far behind costs one chunk of memory, not its backlog.
            if not await self._wait_writable():
                return
            rows = await self._read_after(self.last_queued, through)
            if rows is None:  # what it asked for is pruned: told so, never a silent gap
                self.closing = True
                await self.close(code=STREAM_PRUNED)
                return
            if rows:
                # A chunk is a batch already: it goes now, not after the window, or the
                # next chunk would pile onto it.
                await self._queue(rows, at_once=True)
            if len(rows) < _chunk():
                return

    def _queue_now(self, event: dict) -> None:
        """_queue without awaiting: the flush (if due now) runs as a task."""
        self.pending.append(event)
        self.last_queued = event["seq"]
        if len(self.pending) > stream_setting("BUFFER_EVENTS"):
            self.closing = True  # no more queuing; the close follows
            why = f"{len(self.pending)} events held back"
            self.close_task = asyncio.create_task(self._too_slow(why))
            return
        if not self.flush_due:
            # An idle connection's window closed long ago: it sends on the next turn.
            self._flush_at(self.last_flush + stream_setting("BATCH_SECONDS"))

    async def _queue(self, events: list[dict], *, at_once: bool = False) -> None:
        self.pending.extend(events)
        self.last_queued = events[-1]["seq"]
        if len(self.pending) > stream_setting("BUFFER_EVENTS"):
            await self._too_slow(f"{len(self.pending)} events held back")
            return
        if at_once:
            await self._flush()
            return
        if self.flush_due:
            return  # a flush is already due and will take these
        due = self.last_flush + stream_setting("BATCH_SECONDS")
        if due <= asyncio.get_running_loop().time():
            await self._flush()  # idle connection: send at once
        else:
            self._flush_at(due)

    def _flush_at(self, due: float) -> None:
        self.flush_due = True
        self.hub.flushes.add(self, due)

    async def window_closed(self) -> None:
        """The hub's flushes: this socket's window has closed (hub.Flushes)."""
        self.flush_due = False
        await self._flush()

    async def _flush(self) -> None:
        if self.closing or not self.pending or self.paused:
            return  # while the socket is backed up, events wait here (bounded above)
        batch, self.pending = self.pending, []
        self.last_flush = asyncio.get_running_loop().time()
        if self.desk:
            # Every desk socket of the process is sent the same events, unshaped, in
            # bursts (their windows open together): the burst's frame is encoded once.
            text = self.hub.desk_frame.text(batch)
        else:
            text = frame_text([{**e, "data": shaped_for(self.user, e["data"])} for e in batch])
        await self.send(text_data=text)
        metrics.events_sent(len(batch))
        wslog.count_events(self.scope, len(batch))

    async def _too_slow(self, why: str) -> None:
        if self.closed_slow:
            return
        self.closed_slow = self.closing = True
        logger.info(
            "stream: closing user %s's socket (%s): reconnect with last seq", self.user.pk, why
        )
        # Never drop silently: the client comes back with its last seq and reads the rest
        # from the database.
        self.pending.clear()
        await self.close(code=TOO_SLOW)

    def _writable_changed(self, state: str) -> None:
        """Twisted's transport filled past its high-water mark, drained, or was lost."""
        if state == PAUSED:
            self.paused = True
            return
        if state == STOPPED:
            self.closing = True  # the connection is gone; disconnect() follows
        self.paused = False
        self.stalled_pings = 0
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)
        self.resumed = None
        if self.pending and not self.flush_due and not self.closing:
            self._flush_at(0.0)  # long past: on the next turn

    async def _wait_writable(self) -> bool:
        if not self.paused:
            return not self.closing
        if self.resumed is None:
            self.resumed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self.resumed), timeout=self._stall_limit())
        except TimeoutError:
            await self._too_slow("socket stalled")
            return False
        return not self.closing

    def _stall_limit(self) -> float:
        return 2 * stream_setting("PING_SECONDS")

    def ping_due(self) -> None:
        """The hub's timer, every PING_SECONDS (Hub._ping): an application ping, so a
        browser (which never sees protocol pings) can tell a quiet stream from a dead
        one; daphne's own pings close half-open sockets. A socket backed up through two
        whole ping intervals is closed as stalled."""
        if self.closing or self.ping_task is not None or self.lock.locked():
            # Connecting (perhaps not accepted yet) or reading the database, which waits
            # for a backed-up socket itself (_wait_writable): the next ping will do.
            return
        if self.paused:
            self.stalled_pings += 1
            if self.stalled_pings > 2:
                self.close_task = asyncio.create_task(self._too_slow("socket stalled"))
            return
        self.ping_task = asyncio.create_task(self._ping())

    async def _ping(self) -> None:
        try:
            await self.send(text_data='{"type":"ping"}')
            metrics.ping_sent()
        finally:
            self.ping_task = None  # nothing of it kept between pings

    # --- database -----------------------------------------------------------------------

    @database_sync_to_async
    def _read_after(self, after: int, through: int | None) -> list[dict] | None:
        rows = StreamEvent.objects.visible_to(self.user).filter(seq__gt=after)
        if through is not None:
            rows = rows.filter(seq__lte=through)
        found = [
            {"seq": seq, "type": kind, "data": data}
            for seq, kind, data in rows.order_by("seq").values_list("seq", "type", "data")[
                : _chunk()
            ]
        ]
        return None if stream_gone(user=self.user, after=after) else found

    @database_sync_to_async
    def _newest_seq(self) -> int:
        return live_start(self.user)


def _chunk() -> int:
    # Never more than the buffer may hold, or a catch-up alone would overflow it.
    return max(1, min(CATCH_UP_CHUNK, int(stream_setting("BUFFER_EVENTS"))))


def _after(query: dict[str, list[str]]) -> int | None:
    values = query.get("after")
    if not values:
        return None
    try:
        return max(0, int(values[0]))
    except ValueError:
        return None
