"""The slow-client bound under daphne: a Twisted push producer on the socket's transport
tells the consumer when the client stops reading (scheduling/realtime/consumers.py)."""

from __future__ import annotations

import functools
from typing import Any

from zope.interface import classImplements

try:  # daphne's server depends on Twisted; another ASGI server may not bring it
    from twisted.internet.interfaces import IPushProducer

    HAS_TWISTED = True
except ImportError:  # pragma: no cover
    HAS_TWISTED = False

# What the transport tells the consumer.
PAUSED, RESUMED, STOPPED = "paused", "resumed", "stopped"


def _daphne_protocol(send) -> Any | None:
    """The Twisted protocol behind an ASGI `send`, when the server is daphne.

    Daphne hands the application `partial(server.handle_reply, protocol)`; Channels'
    session middleware wraps it in a bound method that keeps it as `real_send`, and a
    middleware of ours that wraps it in a function says so in `__wrapped__` (the session
    log, observability/wslog.py). Anything else (another server, the test communicator)
    has no transport to watch."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return protocol if hasattr(protocol, "registerProducer") else None
        send = getattr(send, "__wrapped__", None) or getattr(
            getattr(send, "__self__", None), "real_send", None
        )
        if send is None:
            return None
    return None


class TransportWatch:
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
    def attach(cls, send, on_change) -> TransportWatch | None:
        protocol = _daphne_protocol(send)
        transport = getattr(protocol, "transport", None)
        if not HAS_TWISTED or transport is None or not hasattr(transport, "producer"):
            return None
        watch = cls(transport.producer, on_change)
        if watch.previous is not None:
            transport.unregisterProducer()
        transport.registerProducer(_Producer(watch), True)
        return watch


class _Producer:
    def __init__(self, watch: TransportWatch) -> None:
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


if HAS_TWISTED:
    classImplements(_Producer, IPushProducer)
