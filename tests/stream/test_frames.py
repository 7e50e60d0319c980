"""A desk frame is encoded once a burst (hub.FrameMemo): the memo gives back the text it
made only for the same events, by seq, type and the very data objects. No database."""

from __future__ import annotations

import json

from scheduling.realtime.hub import FrameMemo, frame_text


def batch(*events: tuple[int, str, dict]) -> list[dict]:
    """A socket's batch as the consumer holds it: its own dicts around the hub's data."""
    return [{"seq": seq, "type": kind, "data": data} for seq, kind, data in events]


def test_the_frame_is_what_the_client_reads():
    data = {"id": 7, "start": "2027-01-04T02:00:00Z"}
    text = frame_text(batch((3, "appointment.created", data)))
    assert json.loads(text) == {
        "type": "events",
        "events": [{"seq": 3, "type": "appointment.created", "data": data}],
    }


def test_the_same_events_of_a_burst_reuse_one_text():
    one, two = {"id": 1}, {"id": 2}
    memo = FrameMemo()
    first = memo.text(batch((1, "a", one), (2, "b", two)))
    second = memo.text(batch((1, "a", one), (2, "b", two)))  # the next desk socket's
    assert second is first
    assert first == frame_text(batch((1, "a", one), (2, "b", two)))


def test_anything_else_is_encoded_afresh():
    one, two = {"id": 1}, {"id": 2}
    memo = FrameMemo()
    memo.text(batch((1, "a", one), (2, "b", two)))
    # Equal data read from the database (a catch-up): not the same objects, so the memo
    # encodes it and keeps it (a reused text would read the same, so that is what shows).
    caught_up = batch((1, "a", {"id": 1}), (2, "b", {"id": 2}))
    assert memo.text(caught_up) == frame_text(caught_up)
    assert memo.events is caught_up
    changes = [
        batch((1, "a", one)),  # fewer
        batch((1, "a", one), (2, "b", two), (3, "c", {"id": 3})),  # more
        batch((1, "a", one), (3, "b", two)),  # another seq
        batch((1, "a", one), (2, "x", two)),  # another type
        batch((2, "b", two), (1, "a", one)),  # another order
    ]
    for events in changes:
        assert json.loads(memo.text(events)) == json.loads(frame_text(events))


def test_an_empty_memo_never_answers():
    assert json.loads(FrameMemo().text(batch((1, "a", {})))) == {
        "type": "events",
        "events": [{"seq": 1, "type": "a", "data": {}}],
    }
