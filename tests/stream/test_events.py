"""Stream events: written with their change, numbered in commit order without gaps."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from scheduling.models import StreamEvent, StreamEventRecipient
from scheduling.realtime import events
from scheduling.realtime.events import EventBatch


def record(kind: str) -> int:
    batch = EventBatch()
    batch.add(kind, {"kind": kind})
    return batch.flush()[0].seq


@pytest.mark.django_db
def test_a_failed_booking_leaves_no_event_and_no_gap(
    desk, therapist, service, client_record, tomorrow_at
):
    with transaction.atomic():
        first = record("a")
    with pytest.raises(RuntimeError), transaction.atomic():
        record("rolled back")
        raise RuntimeError
    with transaction.atomic():
        second = record("b")
    assert second == first + 1
    assert list(StreamEvent.objects.values_list("type", flat=True)) == ["a", "b"]


@pytest.mark.django_db(transaction=True)
def test_events_need_a_transaction():
    with pytest.raises(RuntimeError, match="transaction"):
        record("outside")


@pytest.mark.django_db
def test_batch_numbers_consecutively_with_recipients(book, therapist, tomorrow_at):
    appointment = book(tomorrow_at(10))
    with transaction.atomic():
        batch = EventBatch()
        batch.add("x", {}, recipients=[therapist.pk, None, therapist.pk])
        batch.add("y", {}, appointment=appointment)
        rows = batch.flush()
    assert [r.seq for r in rows] == [rows[0].seq, rows[0].seq + 1]
    assert list(rows[0].recipients.values_list("user_id", flat=True)) == [therapist.pk]
    assert rows[1].appointment_id == appointment.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sequence_order_is_commit_order():
    """A writer that took a number first commits first: a reader who has seen N never
    later meets a smaller number (the second writer waits on the counter row)."""
    first_numbered = threading.Event()
    release_first = threading.Event()
    seqs: dict[str, int] = {}
    commit_order: list[str] = []

    def writer(name: str, hold: bool) -> None:
        try:
            with transaction.atomic():
                seqs[name] = record(name)
                if hold:
                    first_numbered.set()
                    release_first.wait(10)
            commit_order.append(name)
        finally:
            connection.close()

    slow = threading.Thread(target=writer, args=("slow", True))
    slow.start()
    assert first_numbered.wait(10)
    fast = threading.Thread(target=writer, args=("fast", False))
    fast.start()
    fast.join(0.5)
    assert fast.is_alive(), "the second writer must wait for the first to commit"
    release_first.set()
    slow.join(10)
    fast.join(10)
    assert commit_order == ["slow", "fast"]
    assert seqs["fast"] == seqs["slow"] + 1


class _Rollback(Exception):
    pass


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_one_statement_writer_records_what_the_orm_writer_records(
    book, desk, therapist, tomorrow_at
):
    """events._write_postgres (PostgreSQL) and events._write_orm (elsewhere): the same
    rows, recipients and previous events per recipient, from the same history."""
    appointment = book(tomorrow_at(10))
    with transaction.atomic():
        record("before")  # nobody's
        batch = EventBatch()
        batch.add("desk's", {}, recipients=[desk.pk])
        batch.add("both", {}, recipients=[desk.pk, therapist.pk])
        batch.add("desk's again", {}, recipients=[desk.pk])
        batch.flush()
    outcomes = []
    for write in (events._write_orm, events._write_postgres):
        try:
            with transaction.atomic():
                last = events._allocate(2)
                rows = [
                    StreamEvent(
                        seq=last - 1, type="a", data={"é": [1, None]}, appointment=appointment
                    ),
                    StreamEvent(seq=last, type="b", data={}),
                ]
                pairs = [(last - 1, desk.pk), (last - 1, therapist.pk), (last, desk.pk)]
                previous = write(rows, pairs, before=last - 1)
                stored = list(
                    StreamEvent.objects.filter(seq__gte=last - 1)
                    .order_by("seq")
                    .values_list("seq", "type", "data", "appointment_id", "trip_id")
                )
                sent_to = list(
                    StreamEventRecipient.objects.filter(event_id__gte=last - 1)
                    .order_by("event_id", "user_id")
                    .values_list("event_id", "user_id")
                )
                outcomes.append((previous, stored, sent_to, [r.seq for r in rows]))
                raise _Rollback
        except _Rollback:
            pass
    orm, postgres = outcomes
    assert orm == postgres
    previous, stored, sent_to, _ = postgres
    assert set(previous) == {desk.pk, therapist.pk} and previous[therapist.pk] < previous[desk.pk]
    assert len(stored) == 2 and stored[0][2] == {"é": [1, None]} and len(sent_to) == 3
