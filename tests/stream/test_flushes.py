"""The process's flush timer (hub.Flushes): every socket whose batching window is open
waits on it, and is flushed when its window closes, never before. The sockets here are
stand-ins that note when they were flushed: what a real socket sends then is
test_consumers.py's and test_live_daphne.py's business. No database."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

from scheduling.realtime.hub import Flushes


@dataclass(eq=False)
class Socket:
    name: str
    seen: list[tuple[str, float]]
    fails: bool = False
    then: list = field(default_factory=list)  # callables run when flushed
    user: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(pk=7))

    async def window_closed(self) -> None:
        self.seen.append((self.name, asyncio.get_running_loop().time()))
        for call in self.then:
            call()
        if self.fails:
            raise RuntimeError("the connection went away")


def test_each_socket_is_flushed_when_its_window_closes_and_not_before():
    async def run() -> tuple[list, dict[str, float]]:
        loop, flushes, seen = asyncio.get_running_loop(), Flushes(), []
        start = loop.time()
        due = {"c": start + 0.06, "a": start + 0.02, "b": start + 0.04}
        for name, at in due.items():
            flushes.add(Socket(name, seen), at)
        await asyncio.sleep(0.12)
        return seen, due

    seen, due = asyncio.run(run())
    assert [name for name, _ in seen] == ["a", "b", "c"]
    assert all(at >= due[name] for name, at in seen)


def test_a_window_closed_long_ago_is_flushed_on_the_next_turn():
    async def run() -> list:
        flushes, seen = Flushes(), []
        flushes.add(Socket("idle", seen), 0.0)
        await asyncio.sleep(0)  # the timer's turn
        await asyncio.sleep(0)  # the flush task's
        return seen

    assert [name for name, _ in asyncio.run(run())] == ["idle"]


def test_one_socket_failing_is_logged_and_the_others_are_still_flushed(caplog):
    async def run() -> tuple[list, int]:
        loop, flushes, seen = asyncio.get_running_loop(), Flushes(), []
        at = loop.time() + 0.01
        for name in ("first", "broken", "last"):
            flushes.add(Socket(name, seen, fails=name == "broken"), at)
        await asyncio.sleep(0.05)
        return seen, len(flushes)

    with caplog.at_level(logging.ERROR, logger="scheduling.realtime.hub"):
        seen, left = asyncio.run(run())
    assert [name for name, _ in seen] == ["first", "broken", "last"]
    assert left == 0
    assert "flushing user 7's socket failed" in caplog.text
    assert "the connection went away" in caplog.text


def test_a_burst_lets_the_loop_go_round_between_turns():
    """Another callback (an event arriving, a handshake) runs within TURN flushes of a
    burst to many sockets, not after all of them."""

    async def run() -> list:
        loop, flushes, seen = asyncio.get_running_loop(), Flushes(), []
        sockets = [Socket(f"s{n}", seen) for n in range(3 * Flushes.TURN)]
        sockets[0].then.append(lambda: loop.call_soon(seen.append, ("other", 0.0)))
        for socket in sockets:
            flushes.add(socket, 0.0)
        await asyncio.sleep(0.05)
        return seen

    order = [name for name, _ in asyncio.run(run())]
    assert len(order) == 3 * Flushes.TURN + 1
    assert order.index("other") <= Flushes.TURN


def test_a_socket_entered_while_flushing_is_flushed_at_its_own_time():
    async def run() -> tuple[list, float]:
        loop, flushes, seen = asyncio.get_running_loop(), Flushes(), []
        later = loop.time() + 0.05
        now = Socket("now", seen)
        # Entered by the first flush (as a socket that sends re-enters its next window).
        now.then.append(lambda: flushes.add(Socket("later", seen), later))
        flushes.add(now, 0.0)
        await asyncio.sleep(0.1)
        return seen, later

    seen, later = asyncio.run(run())
    assert [name for name, _ in seen] == ["now", "later"]
    assert seen[1][1] >= later
