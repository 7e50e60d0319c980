"""Notifications: written in the transaction of their cause, delivered at most once each.

Writing. A booking, a status change, an assignment, the reminder scan: each writes its
rows inside its own transaction, with a unique key built from the cause (the transition,
the trip, the appointment's time), and enqueues on commit one delivery task with the ids
of every row the transaction wrote (`delivery.enqueue`; BATCH_SIZE at most per task).

Delivering (`deliver_batch`: each of a task's rows in turn, each on its own, by `deliver`):
1. Claim: in a short transaction, a due `pending` row becomes `sending` with one more
   attempt and a lease. A second task for the same row (the broker delivering twice, the
   sweep enqueueing again) finds it is not `pending` and does nothing.
2. Send, outside any transaction, with the row's key as the provider's idempotency key.
3. Record: `sent`; or back to `pending` after an exponential backoff with jitter; or
   `failed` with the error kept and a `notification.failed` stream event for the desk.

A worker that dies between 1 and 3 leaves the row `sending`. Nobody knows whether the
provider took the message. Once the lease has run out (it outlasts the task's hard time
limit, so the worker is certainly gone) the sweep decides:
- a backend whose provider dedupes by key (`dedupes_by_key`) gets it again with the same
  key: the provider delivers at most once, so the notification is sent exactly once;
- any other backend (console, SMTP, Twilio) does not: the row is `failed` with
  "outcome unknown", and a person may send it again (`retry_failed_notifications`).
The same rule applies to a send that ends in a timeout after the request left.

The package, by stage: `outbox` (writing the rows, the reminder scan), `delivery` (sending
one row through its provider, retries with backoff) and `sweeps` (the periodic re-queue,
reclaiming rows whose worker died, a person's retry). Import the module you need.
"""
