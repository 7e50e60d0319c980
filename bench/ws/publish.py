"""The bench's writer: commits stream events through the real EventBatch (so they are
published on commit through channels-redis, as the web and worker processes do) and
records when each commit returned. Run by bench.ws in a process of its own.

    python -m bench.ws.publish --rate 200 --seconds 20 --recipients 3,4,5 --out stamps.json

`--rate 0` commits as fast as one process can.
"""

from __future__ import annotations

import argparse
import json
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--recipients", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    django.setup()
    from django.db import transaction

    from scheduling.realtime.events import EventBatch

    recipients = [int(r) for r in args.recipients.split(",")]
    stamps: dict[int, float] = {}
    late = 0
    started = time.perf_counter()
    n = 0
    while True:
        now = time.perf_counter()
        if now - started >= args.seconds:
            break
        if args.rate:
            due = started + n / args.rate
            if due > now:
                time.sleep(due - now)
            elif now - due > 0.005:
                late += 1  # open loop: a late commit is not skipped, it is counted
        therapist = recipients[n % len(recipients)]
        stamp: dict[str, float] = {}
        with transaction.atomic():
            # Registered before the batch's own on-commit publish, so it runs first: the
            # time the commit returned, not the time the publish did.
            transaction.on_commit(lambda stamp=stamp: stamp.__setitem__("t", time.time()))
            batch = EventBatch()
            batch.add(
                "appointment.updated",
                {
                    "id": n,
                    "client": 1000 + n,
                    "service": 1,
                    "therapist": therapist,
                    "start": "2026-11-23T10:00:00+08:00",
                    "end": "2026-11-23T11:00:00+08:00",
                    "status": "confirmed",
                    "address": "12 Mabini St, Barangay San Antonio, Makati",
                    "notes": "Gate code at the guardhouse; second floor",
                    "response_deadline": None,
                    "trips": [],
                },
                recipients=[therapist],
            )
            rows = batch.flush()
        stamps[rows[0].seq] = stamp["t"]
        n += 1
    elapsed = time.perf_counter() - started
    with open(args.out, "w") as out:
        json.dump({"stamps": stamps, "commits": n, "seconds": elapsed, "late": late}, out)


if __name__ == "__main__":
    main()
