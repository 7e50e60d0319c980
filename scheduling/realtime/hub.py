"""The process hub: one per event loop (so one per daphne process), the only member of
the stream's channels-redis group (events.STREAM_GROUP) here. It puts events back in
sequence order and hands each to the process's desk sockets and to the sockets of the
users it names (consumers.StreamConsumer.offer); it also delivers revocations.

Redis is the transport and the database the record. What Redis can lose:
- an event in the middle: the hub sees a hole in the sequence (seqs have no holes, and
  sequence order is commit order). Commits published by different processes may arrive
  out of order, so it waits REORDER_SECONDS for the hole to fill, then reads it from the
  database, once for the process, and hands it on in its place. (Failing that, each
  socket sees a `prev` it never sent and reads the database itself.)
- the tail (the last events of a burst, or all that was published while Redis restarted):
  nothing later reveals it, so the hub compares the committed head of the stream with
  what arrived, every WATCH_SECONDS, and when an event committed at the previous look has
  still not arrived, every socket of the process reads its stream from the database
  (and the hub joins the group again: a restarted Redis has forgotten it).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import weakref
from typing import TYPE_CHECKING

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from scheduling.models import StreamEvent, StreamEventRecipient
from scheduling.observability import stream as metrics
from scheduling.observability import wslog
from scheduling.realtime import revocation
from scheduling.realtime.events import STREAM_GROUP, committed_head, stream_layer

if TYPE_CHECKING:
    from scheduling.realtime.consumers import StreamConsumer

logger = logging.getLogger(__name__)

DEFAULTS = {"WATCH_SECONDS": 1.0, "REORDER_SECONDS": 0.02}
# A hole larger than this is not read by the hub: each socket reads its own stream.
FILL_LIMIT = 1000


_settings: dict[str, float] = {}


def stream_setting(name: str) -> float:
    # Read on every event for every socket: Django's lazy settings object is too slow
    # for that (a tenth of the process's time under load), so the values are kept here.
    if not _settings:
        _settings.update({**DEFAULTS, **settings.LIVE_STREAM})
    return _settings[name]


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs) -> None:
    if setting == "LIVE_STREAM":
        _settings.clear()


def frame_text(events: list[dict]) -> str:
    """The text of one websocket frame of events, as the client reads it."""
    return orjson.dumps({"type": "events", "events": events}).decode()


class FrameMemo:
    """The last desk frame's text and the events it was made of. A desk socket's events
    are the hub's own (`_hand_on` gives every desk socket the same data objects), so a
    batch of the same seqs with the same data objects is the same frame: the text is
    reused, not encoded again for every socket of the burst. The events are kept, so the
    objects compared by identity cannot be freed and their ids reused meanwhile."""

    __slots__ = ("encoded", "events")

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.encoded = ""

    def text(self, events: list[dict]) -> str:
        if not self._same(events):
            self.events, self.encoded = events, frame_text(events)
        return self.encoded

    def _same(self, events: list[dict]) -> bool:
        last = self.events
        return (
            bool(last)
            and len(last) == len(events)
            and all(
                a["seq"] == b["seq"] and a["data"] is b["data"] and a["type"] == b["type"]
                for a, b in zip(last, events, strict=True)
            )
        )


class Flushes:
    """When each socket's waiting batch falls due, on one timer for the process.

    A socket whose batching window is still open when an event comes is entered here,
    instead of sleeping in a task of its own until the window closes: that was a task, a
    future and a timer handle per socket per batch, about a tenth of daphne's CPU with a
    hundred desk sockets (bench/results/2026-12-03-ws-latency.md). Desk sockets fall due
    together (they were all sent the same events), and one task flushes every socket
    that is due, in the order they fell due, until none is."""

    # Sockets flushed before the loop is let go round once (to read the next event, or a
    # handshake): a burst to a thousand desk sockets must not hold the process.
    TURN = 64

    def __init__(self) -> None:
        # (due, order of entry, socket): a socket is entered at most once at a time (its
        # `flush_due` says whether it is), and a socket that closed meanwhile is flushed
        # to no effect.
        self._due: list[tuple[float, int, StreamConsumer]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None  # flushing now (held: the loop keeps weak refs)

    def __len__(self) -> int:
        return len(self._due)

    def add(self, consumer: StreamConsumer, at: float) -> None:
        """Flush `consumer` at loop time `at` (one already past: on the next turn)."""
        heapq.heappush(self._due, (at, next(self._order), consumer))
        if self._task is None:
            self._arm()  # while a flush runs, it takes what falls due, then arms

    def _arm(self) -> None:
        if not self._due:
            return
        at = self._due[0][0]
        if self._timer is not None:
            if self._timer.when() <= at:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at, self._start)

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._run(), context=wslog.unbound())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        flushed = 0
        try:
            while self._due and self._due[0][0] <= loop.time():
                consumer = heapq.heappop(self._due)[2]
                try:
                    await consumer.window_closed()
                except Exception:
                    # One socket's failure must not hold back the others' batches.
                    logger.exception("stream: flushing user %s's socket failed", consumer.user.pk)
                flushed += 1
                if flushed % self.TURN == 0:
                    await asyncio.sleep(0)
        finally:
            self._task = None
            self._arm()


class Hub:
    """One per event loop (so one per daphne process): the only member of STREAM_GROUP
    here. Puts events back in sequence order, hands each to the sockets it is for, and
    watches for what the channel layer lost (module docstring)."""

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, layer) -> None:
        self.layer = layer
        self.desk: set[StreamConsumer] = set()
        self.by_user: dict[int, set[StreamConsumer]] = {}
        self.channel: str | None = None
        self.subscribed = False
        self.membership = asyncio.Lock()
        self.upto: int | None = None  # every seq up to here was handed on
        self.held: dict[int, dict] = {}  # arrived early, waiting for a hole to fill
        self.hole_since: float | None = None
        self.owed = 0
        self.tasks: list[asyncio.Task] = []
        self.desk_frame = FrameMemo()
        self.flushes = Flushes()

    @classmethod
    async def get(cls) -> Hub:
        loop = asyncio.get_running_loop()
        hub = cls._by_loop.get(loop)
        if hub is None:
            hub = cls._by_loop[loop] = cls(stream_layer())
        return hub

    @classmethod
    def current(cls) -> Hub | None:
        return cls._by_loop.get(asyncio.get_running_loop())

    def consumers(self) -> list[StreamConsumer]:
        return [*self.desk, *(c for group in self.by_user.values() for c in group)]

    async def join(self, consumer: StreamConsumer) -> None:
        if consumer.desk:
            self.desk.add(consumer)
        else:
            self.by_user.setdefault(consumer.user.pk, set()).add(consumer)
        metrics.socket_opened(desk=consumer.desk)
        async with self.membership:
            if not self.subscribed:
                if self.channel is None:
                    self.channel = await self.layer.new_channel()
                    # The process's, not the joining socket's: its request id is not
                    # theirs to log with.
                    self.tasks = [
                        asyncio.create_task(self._receive(), context=wslog.unbound()),
                        asyncio.create_task(self._watch(), context=wslog.unbound()),
                        asyncio.create_task(self._ping(), context=wslog.unbound()),
                    ]
                await self.layer.group_add(STREAM_GROUP, self.channel)
                self.subscribed = True

    async def leave(self, consumer: StreamConsumer) -> None:
        mine = self.by_user.get(consumer.user.pk, set())
        if consumer in self.desk or consumer in mine:
            metrics.socket_closed(desk=consumer.desk)
        self.desk.discard(consumer)
        mine.discard(consumer)
        if not mine:
            self.by_user.pop(consumer.user.pk, None)
        async with self.membership:
            # The last socket gone: the process leaves the group and gets nothing more.
            if self.subscribed and not self.desk and not self.by_user:
                self.subscribed = False
                self.upto, self.held, self.hole_since, self.owed = None, {}, None, 0
                metrics.lag(head=0, handed=None)
                await self.layer.group_discard(STREAM_GROUP, self.channel)

    # --- in order ---------------------------------------------------------------------

    def _arrived(self, message: dict) -> None:
        seq = message["seq"]
        if self.upto is None or seq <= self.upto:
            # The first event here, or one that went around a hole filled from the
            # database (or a database that was emptied): straight on; each socket drops
            # what it has.
            if self.upto is None:
                self.upto = seq
            self._hand_on(message)
            return
        self.held[seq] = message
        self._release()

    def _release(self) -> None:
        # Events are held only past a known `upto` (`_arrived`), and `leave` clears both.
        assert self.upto is not None
        while self.upto + 1 in self.held:
            self.upto += 1
            self._hand_on(self.held.pop(self.upto))
        if not self.held:
            self.hole_since = None
        elif self.hole_since is None:
            self.hole_since = time.monotonic()
            asyncio.get_running_loop().call_later(
                stream_setting("REORDER_SECONDS"), self._fill_soon, self.hole_since
            )

    def _fill_soon(self, since: float) -> None:
        if self.hole_since == since and self.held:
            self.fill_task = asyncio.create_task(self._fill(since))

    async def _fill(self, since: float) -> None:
        """A hole that did not fill by itself: its events are committed (sequence order is
        commit order), so they are read from the database, once for the process, and
        handed on in their place."""
        if self.upto is None:
            return  # every socket left before this began (`leave` cleared the hole)
        first, last = self.upto + 1, min(self.held) - 1
        rows: list[dict] = []
        if last - first < FILL_LIMIT:
            try:
                rows = await _read_range(first, last)
            except Exception:
                logger.exception("stream: cannot read events %d-%d", first, last)
        if self.hole_since != since:
            return  # filled meanwhile by the layer
        for message in rows:
            if message["seq"] == self.upto + 1:
                self.upto += 1
                self._hand_on(message)
        if self.upto + 1 not in self.held:
            # Still missing (too many, or unreadable): hand on what was held; each socket
            # finds the gap through `prev` and reads the database itself, and a personal
            # stream that had a missing event learns of it only from its next: read now.
            logger.warning("stream: events %d-%d could not be filled", self.upto + 1, last)
            for seq in sorted(self.held):
                self._hand_on(self.held.pop(seq))
                self.upto = seq
            for consumer in (c for group in self.by_user.values() for c in group):
                consumer.resync_soon()
        self.hole_since = None
        self._release()

    def _hand_on(self, message: dict) -> None:
        seq, kind, data = message["seq"], message["event"], message["data"]
        for consumer in list(self.desk):
            consumer.offer(seq, message["prev"], kind, data)
        for user_id, prev in message["to"]:
            for consumer in list(self.by_user.get(user_id, ())):
                consumer.offer(seq, prev, kind, data)

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream: channel layer receive failed")
                await asyncio.sleep(stream_setting("WATCH_SECONDS"))
                continue
            if message.get("type") == "stream.event":
                self._arrived(message)
            elif message.get("type") == revocation.REVOKE:
                self._revoke(message)

    def _revoke(self, message: dict) -> None:
        user_id = message.get("user")
        if user_id is None:
            return  # nobody's sockets to close
        sockets = [c for c in self.desk if c.user.pk == user_id]
        sockets += self.by_user.get(user_id, ())
        for consumer in sockets:
            consumer.revoke_if(message)

    # --- pings ------------------------------------------------------------------------

    async def _ping(self) -> None:
        """One timer for every socket of the process, instead of a sleeping task per
        socket: each idle socket costs no task, coroutine or timer between pings."""
        while True:
            await asyncio.sleep(stream_setting("PING_SECONDS"))
            for consumer in self.consumers():
                consumer.ping_due()

    # --- the lost tail -------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(stream_setting("WATCH_SECONDS"))
            if self.subscribed:
                await self._look()

    async def _look(self) -> None:
        await self._measure_lag()
        try:
            # Joined again each time: a restarted Redis has forgotten the group, and the
            # channels-redis membership expires after a day.
            await self.layer.group_add(STREAM_GROUP, self.channel)
            head = await _committed_head()
        except Exception:
            logger.exception("stream: cannot read the head of the stream")
            return
        upto = self.upto if self.upto is not None else head
        if head < upto:
            self.upto = upto = head  # the table was emptied (a restored or test database)
        if self.owed > upto and not self.held:
            logger.warning(
                "stream: events %d-%d committed but not delivered by the channel layer; "
                "%d sockets read them from the database",
                upto + 1,
                self.owed,
                len(self.consumers()),
            )
            self.upto = self.owed
            for consumer in self.consumers():
                consumer.resync_soon()
        self.owed = head

    async def _measure_lag(self) -> None:
        """The stream lag for /metrics (observability/stream.py), from a head read of its
        own before the channel layer is touched: while Redis is down or hanging, the
        lag still grows with every commit."""
        with contextlib.suppress(Exception):
            metrics.lag(head=await _committed_head(), handed=self.upto)


@database_sync_to_async
def _read_range(first: int, last: int) -> list[dict]:
    """Events first..last as the hub hands them on. `prev` -1 says "in order": the hub
    has every event before these."""
    to: dict[int, list[list[int]]] = {}
    recipients = StreamEventRecipient.objects.filter(event_id__gte=first, event_id__lte=last)
    for event_id, user_id in recipients.values_list("event_id", "user_id"):
        to.setdefault(event_id, []).append([user_id, -1])
    rows = StreamEvent.objects.filter(seq__gte=first, seq__lte=last).order_by("seq")
    return [
        {"seq": seq, "prev": -1, "event": kind, "data": data, "to": to.get(seq, [])}
        for seq, kind, data in rows.values_list("seq", "type", "data")
    ]


_committed_head = database_sync_to_async(committed_head)
