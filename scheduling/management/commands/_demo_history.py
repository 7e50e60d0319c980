"""seed_demo's past four weeks: completed sessions paid in cash or by e-wallet and verified
by the desk, a few refunded, some still owing, no-shows and cancellations, so the reports
and the client pages show a real month on first run (issue 15 item 7).

Every row is written by the services the product uses (booking, the therapist's actions,
record_collection, verify_payment, the manager's refund) with `now=` the moment it
happened, so a given date always gets the same history. The services stamp some rows
with the clock (an appointment's created_at, a transition's at, a collection's
created_at): those are set back to the moment afterwards, so the history reads in order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import QuerySet

from scheduling.domain import at_wall_time, business_zone
from scheduling.models import Appointment, Client, Payment, Service, Transition, User
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.availability import availability
from scheduling.services.gateway_payments import refund_payment
from scheduling.services.payments import record_collection, verify_payment
from scheduling.services.travel import travel_for

HISTORY_DAYS = 28
BOOKINGS_PER_PAST_DAY = 5
# What became of a past booking, by share.
OUTCOMES = (("completed", 0.78), ("no_show", 0.1), ("cancel", 0.12))
PAID_SHARE = 0.85  # of completed sessions; the rest still owe their price
EWALLET_SHARE = 0.4
REFUND_SHARE = 0.08  # of paid sessions, refunded in full or in part
UNVERIFIED_DAYS = 1  # yesterday's cash is still with the therapist: to hand over, to verify
CANCEL_REASONS = ("Client called to cancel.", "Client is unwell.", "Client travelling.")
REFUND_REASONS = ("Session cut short.", "Client complaint, goodwill.", "Charged twice.")


def seed_history(
    *,
    desk: User,
    manager: User,
    therapists: dict[int, User],
    services: list[Service],
    client_ids: list[int],
    today: date,
) -> tuple[int, int]:
    """Book and settle the HISTORY_DAYS before `today`; (new, already there) bookings.
    A day that has demo bookings already is left as it is."""
    created = existing = 0
    for back in range(HISTORY_DAYS, 0, -1):
        day = today - timedelta(days=back)
        booked = Appointment.objects.on_day(day).filter(created_by=desk)
        if booked.exists():
            existing += booked.count()
            continue
        created += _book_past_day(
            day,
            recent=back <= UNVERIFIED_DAYS,
            desk=desk,
            manager=manager,
            therapists=therapists,
            services=services,
            client_ids=client_ids,
        )
    return created, existing


def _book_past_day(
    day: date,
    *,
    recent: bool,
    desk: User,
    manager: User,
    therapists: dict[int, User],
    services: list[Service],
    client_ids: list[int],
) -> int:
    rng = random.Random(f"history-{day.isoformat()}")
    zone = business_zone()
    # Booked the evening before, as a desk does: every start of the day is still ahead.
    booked_at = at_wall_time(day - timedelta(days=1), time(18), zone)
    booked: list[tuple[Appointment, datetime]] = []
    # All of the day is booked first: a session completed frees its time for the next
    # booking (completed is not active), which would double-book the therapist.
    for n in range(BOOKINGS_PER_PAST_DAY):
        service = rng.choice(services)
        client = Client.objects.select_related("area").get(pk=rng.choice(client_ids))
        offers = [
            o
            for o in availability(
                service=service,
                day=day,
                travel=travel_for(client=client).time,
                now=booked_at,
            )
            if o.starts and o.therapist.pk in therapists
        ]
        if not offers:
            continue
        offer = rng.choice(offers)
        when = booked_at + timedelta(minutes=n)
        appointment = create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=offer.therapist.pk,
            start=rng.choice(offer.starts),
            now=when,
        )
        Appointment.objects.filter(pk=appointment.pk).update(created_at=when, updated_at=when)
        _stamper(appointment)("create", when)
        booked.append((appointment, when))
    for index, (appointment, when) in enumerate(booked):
        stamp = _stamper(appointment)
        therapist = therapists[appointment.therapist_id]
        # A recent day's first session was completed and paid in cash that the therapist
        # still holds, whatever the day's dice: the desk's hand-over list always has one.
        held = recent and index == 0
        outcome = "completed" if held else _pick(rng, OUTCOMES)
        if outcome == "cancel":
            _act(desk, appointment, "cancel", when + timedelta(hours=2), stamp, rng)
            continue
        _act(therapist, appointment, "accept", when + timedelta(minutes=5), stamp, rng)
        if outcome == "no_show":
            no_show_at = appointment.start + timedelta(minutes=20)
            _act(therapist, appointment, "no_show", no_show_at, stamp, rng)
            continue
        _act(therapist, appointment, "start", appointment.start, stamp, rng)
        _act(therapist, appointment, "complete", appointment.end, stamp, rng)
        if held or rng.random() < PAID_SHARE:
            _pay(rng, appointment, therapist, desk, manager, recent=recent, cash=held, stamp=stamp)
    return len(booked)


def _act(actor, appointment, action: str, now: datetime, stamp, rng) -> None:
    reason = rng.choice(CANCEL_REASONS) if action == "cancel" else ""
    act_on_appointment(
        actor=actor, appointment_id=appointment.pk, action=action, reason=reason, now=now
    )
    stamp(action, now)


def _pay(rng, appointment, therapist, desk, manager, *, recent: bool, cash: bool, stamp) -> None:
    ewallet = not cash and rng.random() < EWALLET_SHARE
    paid_at = appointment.end + timedelta(minutes=5)
    payment = record_collection(
        actor=therapist,
        appointment_id=appointment.pk,
        method="ewallet" if ewallet else "cash",
        amount=appointment.price,
        reference=f"GC{rng.randrange(10**9, 10**10)}" if ewallet else "",
    )
    Payment.objects.filter(pk=payment.pk).update(created_at=paid_at, updated_at=paid_at)
    stamp("collect_payment", paid_at)
    if recent and not ewallet:
        return  # still in the therapist's hands: the desk's list and their hand-over show it
    verified_at = paid_at + timedelta(hours=rng.randint(1, 3))
    verify_payment(actor=desk, payment_id=payment.pk, now=verified_at)
    stamp("verify_payment", verified_at)
    # Not on the last days: a refund up to a day after verifying would lie in the future.
    if recent or rng.random() >= REFUND_SHARE:
        return
    refunded_at = verified_at + timedelta(hours=rng.randint(2, 20))
    part = None if rng.random() < 0.5 else (appointment.price / 2).quantize(Decimal("0.01"))
    refund_payment(
        actor=manager,
        payment_id=payment.pk,
        amount=part,
        reason=rng.choice(REFUND_REASONS),
        now=refunded_at,
    )
    stamp("refund_payment", refunded_at)


def _stamper(appointment: Appointment) -> Callable[[str, datetime], None]:
    """Set the newest transition of `action` (written with the clock) to when it happened."""

    def stamp(action: str, at: datetime) -> None:
        rows: QuerySet = Transition.objects.filter(appointment=appointment, action=action)
        newest = rows.order_by("-id").values_list("pk", flat=True).first()
        if newest is not None:
            Transition.objects.filter(pk=newest).update(at=at)

    return stamp


def _pick(rng: random.Random, shares) -> str:
    roll, total = rng.random(), 0.0
    for name, share in shares:
        total += share
        if roll < total:
            return name
    return shares[-1][0]
