"""One process of the idle ramp's clients (bench/ws/__main__.py, idle phase).

The ramp's sockets are spread over several of these, so that no client process needs
more open files than the machine's per-process limit allows, and each connects from its
own loopback source address, so that the ramp is never stopped by the ~28,000 ephemeral
ports of one address pair: whatever stops the ramp is daphne's.

Reads commands on stdin, one a line, and answers each with one JSON line on stdout:
`open N` opens the next N sockets (the tokens in turn) and answers with how many opened,
failed (and the first few errors), and are still open; `count` answers with how many are
open; `close` closes them all and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
from collections import Counter

import websockets
from websockets.protocol import State


async def main_async(args) -> None:
    with open(args.tokens) as f:
        tokens = f.read().split()
    sockets: list = []
    readers: list[asyncio.Task] = []
    next_token = 0
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def read(ws) -> None:
        # Idle sockets get only daphne's pings (answered by the library) and the
        # application's pings; reading keeps the kernel from pushing back.
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    def open_count() -> int:
        return sum(1 for ws in sockets if ws.state == State.OPEN)

    async def one(token: str, gate: asyncio.Semaphore, errors: Counter, give_up: int) -> bool:
        async with gate:
            if errors.total() >= give_up:
                # Failing already (daphne at its limit, say): the rest of the step is not
                # tried, and counts as failed, rather than each waiting out its timeout.
                errors["not tried: the step was failing already"] += 1
                return False
            try:
                ws = await websockets.connect(
                    f"{args.url}?token={token}",
                    origin=args.origin,
                    open_timeout=15,  # daphne gives up on a handshake after 5 s
                    ping_interval=None,  # daphne pings; the library answers
                    compression=None,
                    max_size=None,
                    local_addr=(args.source, 0),
                )
            except Exception as error:  # counted and reported by kind, never ignored
                errors[f"{type(error).__name__}: {str(error)[:120]}"] += 1
                return False
        sockets.append(ws)
        readers.append(asyncio.create_task(read(ws)))
        return True

    def answer(**fields) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    while True:
        line = (await stdin.readline()).decode().split()
        if not line or line[0] == "close":
            break
        if line[0] == "count":
            answer(open=open_count())
            continue
        want = int(line[1])
        batch = [tokens[(next_token + i) % len(tokens)] for i in range(want)]
        next_token += want
        errors: Counter = Counter()
        gate = asyncio.Semaphore(args.concurrency)
        give_up = max(10, want // 50)
        done = await asyncio.gather(*(one(t, gate, errors, give_up) for t in batch))
        answer(
            opened=sum(done),
            failed=want - sum(done),
            errors=errors.most_common(3),
            open=open_count(),
        )
    for task in readers:
        task.cancel()

    async def shut(ws) -> None:
        try:
            await asyncio.wait_for(ws.close(), timeout=5)
        except Exception:  # closing at the end; a failure changes no figure
            ws.transport.abort()

    await asyncio.gather(*(shut(ws) for ws in sockets), return_exceptions=True)
    answer(closed=len(sockets))


def main() -> None:
    gc.disable()  # tens of thousands of long-lived objects, no cycles worth collecting
    parser = argparse.ArgumentParser(prog="python -m bench.ws.idle_clients")
    parser.add_argument("--url", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--tokens", required=True, help="a file of tokens, one a line")
    parser.add_argument("--source", default="127.0.0.1", help="local address to connect from")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
