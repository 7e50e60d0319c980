"""After a restore from a backup (docs/operations.md#backups-and-restore): the stream's
counter goes back with the database, so a client that saw events the restored database
never had drops the new events that reuse their numbers, silently. The operator's
remedy, run here as the docs write it, moves the counter past every number handed out.

A real daphne and Redis of the test's own; the restore itself is what it does to the
stream's tables (a pg_restore under running processes would test pg_restore)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import transaction
from rest_framework.test import APIClient

from scheduling.models import EventCounter, StreamEvent, StreamEventRecipient
from scheduling.realtime.events import EventBatch
from tests.live_support import (
    Daphne,
    Listener,
    RedisServer,
    channel_layers_for,
    token,
    wait_for_quiet_database,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

# docs/operations.md#backups-and-restore, step 2, as the operator types it.
MOVE_COUNTER = (
    "from django.db.models import F; from scheduling.models import EventCounter; "
    "EventCounter.objects.filter(pk=1).update(last_seq=F('last_seq') + 1000000)"
)


@pytest.fixture
def stack(settings):
    redis = RedisServer().start()
    settings.CHANNEL_LAYERS = channel_layers_for(redis)
    daphne = Daphne(redis).start()
    opened: list[Listener] = []
    try:
        yield daphne, opened
    finally:
        for listener in opened:
            listener.stop()
        daphne.stop()
        redis.stop()
        wait_for_quiet_database()


def burst(label: str, count: int) -> None:
    for n in range(count):
        with transaction.atomic():
            batch = EventBatch()
            batch.add("test.restore", {"label": label, "n": n})
            batch.flush()


def restore_to(seq: int) -> None:
    """What restoring a backup taken at `seq` does to the stream: the later events are
    not there, and the counter reads `seq` again."""
    StreamEventRecipient.objects.filter(event_id__gt=seq).delete()
    StreamEvent.objects.filter(seq__gt=seq).delete()
    EventCounter.objects.filter(pk=1).update(last_seq=seq)


def labels(listener: Listener) -> list[tuple[int, str]]:
    return [(e["seq"], e["data"]["label"]) for e in listener.events]


def test_a_client_ahead_of_the_restored_head_misses_events_until_the_counter_moves(stack, desk):
    daphne, opened = stack
    before = Listener(daphne, desk)  # a page open across the restore
    opened.append(before)
    burst("before", 5)
    before.wait_for(lambda events: len(events) == 5, what="the first five")

    restore_to(2)
    burst("after", 3)  # numbered 3, 4 and 5 again
    # A page loaded now (its live_after is the restored head, 2) gets them ...
    reloaded = Listener(daphne, desk, after=2)
    opened.append(reloaded)
    reloaded.wait_for(lambda events: len(events) == 3, what="the new 3-5")
    assert labels(reloaded) == [(3, "after"), (4, "after"), (5, "after")]
    # ... and so does /api/events/ from 2; from 5 nothing, and no sign of trouble.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token(desk)}")
    assert [e["seq"] for e in api.get("/api/events/?after=2").json()["events"]] == [3, 4, 5]
    assert api.get("/api/events/?after=5").json()["events"] == []
    # The page open across the restore has seen numbers 3-5 already: it never shows them.
    before.drop()  # even reconnecting (after=5) brings nothing back
    burst("still", 1)  # 6: past what it saw, so this one arrives
    before.wait_for(lambda events: len(events) == 6, what="seq 6")
    assert labels(before) == [*((n, "before") for n in range(1, 6)), (6, "still")]

    # The remedy: the counter moved past every number handed out before the restore.
    call_command("shell", command=MOVE_COUNTER)
    burst("moved", 2)
    for listener in (before, reloaded):
        listener.wait_for(
            lambda events: [e["data"]["label"] for e in events].count("moved") == 2,
            what="both moved events",
        )
    assert [seq for seq, label in labels(before) if label == "moved"] == [1000007, 1000008]
    assert labels(reloaded)[-2:] == [(1000007, "moved"), (1000008, "moved")]
    assert before.duplicates == []
    after_five = api.get("/api/events/?after=5").json()["events"]
    assert [e["seq"] for e in after_five] == [6, 1000007, 1000008]
