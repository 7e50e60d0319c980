""" "Any free therapist": the one fairness rule, and booking with it.

`choose_therapist` is the rule (a read: it books nothing); `book_any_therapist` books the
chosen one through the booking engine, and when a concurrent booking takes that
therapist first it chooses again without them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from scheduling import states
from scheduling.domain import Interval, local_date, local_day_bounds
from scheduling.errors import Conflict
from scheduling.models import Appointment, Client, PassReason, Service, TherapistChoice, User
from scheduling.services import capacity
from scheduling.services.appointments import (
    _bookable_service,
    _check_start,
    _get,
    _legs,
    _place,
    create_appointment,
)
from scheduling.services.availability import busy_intervals
from scheduling.services.common import role_of
from scheduling.services.travel import travel_for
from scheduling.services.working_time import day_schedules
from scheduling.states import (
    ACTIVE_APPOINTMENT_STATUSES,
    APPOINTMENT_RULES,
    NEW,
    AppointmentStatus,
)

RULE = (
    "the client's preferred therapist when free; then the fewest minutes booked in the "
    "week of the start (Monday to Sunday); then the longest since their last booking; "
    "then the lowest id"
)
# The reason a booking is refused when nobody is free (the API's `reason`).
NOBODY_FREE = "no_therapist"


@dataclass(frozen=True)
class Candidate:
    therapist_id: int
    # None: free for this booking.
    reason: str | None
    preferred: bool = False
    booked_minutes: int = 0
    last_booked: datetime | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "therapist": self.therapist_id,
            "reason": self.reason,
            "preferred": self.preferred,
            "booked_minutes": self.booked_minutes,
            "last_booked": self.last_booked.isoformat() if self.last_booked else None,
        }


@dataclass(frozen=True)
class Choice:
    # None: nobody is free.
    therapist: User | None
    # Every active therapist, best first by the rule (free ones before the others).
    candidates: list[Candidate] = field(default_factory=list)


def choose_therapist(
    *,
    service: Service,
    start: datetime,
    client: Client,
    needs_transport: bool = False,
    area_id: int | None = None,
    exclude: tuple[int, ...] | frozenset[int] = (),
    now: datetime | None = None,
    moving: int | None = None,
) -> Choice:
    """The best therapist free to take `client` for `service` at `start`, by `RULE`.

    Free means what booking checks: they perform the service, their whole busy range
    (travel there and back included) lies in their working time and meets nothing they
    hold, and with transport the drivers can carry both legs. Therapists in `exclude` are
    passed over ("excluded"). `moving` is an appointment being given to someone else: the
    time and the transport it holds now are free for it (the reassign's own check)."""
    now = now or timezone.now()
    travel = travel_for(client=client, area_id=area_id)
    probe = Appointment(service=service)
    _place(probe, start, travel)
    held = Interval(probe.busy_from, probe.busy_until)
    session = Interval(probe.start, probe.blocked_until)
    therapists = list(User.objects.therapists().order_by("id"))
    qualified = set(
        service.therapists.filter(user__in=therapists).values_list("user_id", flat=True)
    )
    ids = [t.pk for t in therapists]
    schedules = day_schedules(ids, local_date(held.start))
    busy = busy_intervals(ids, held.start, held.end, exclude=moving)
    minutes_booked, last_booked = _fairness_figures(ids, start)
    preferred_id = _preferred(client)
    # One fleet question for everyone: capacity does not depend on the therapist.
    no_driver = (
        needs_transport
        and capacity.refusal(_legs(probe), now=now, excluding_appointment=moving) is not None
    )

    def reason(therapist: User) -> str | None:
        if therapist.pk in exclude:
            return PassReason.EXCLUDED
        if therapist.pk not in qualified:
            return PassReason.NOT_QUALIFIED
        schedule = schedules[therapist.pk]
        if schedule.why_not_working(held):
            return (
                PassReason.NOT_WORKING if schedule.why_not_working(session) else PassReason.TRAVEL
            )
        taken = busy.get(therapist.pk, [])
        if any(b.overlaps(held) for b in taken):
            return PassReason.BUSY if any(b.overlaps(session) for b in taken) else PassReason.TRAVEL
        return PassReason.NO_DRIVER if no_driver else None

    candidates = [
        Candidate(
            therapist_id=t.pk,
            reason=reason(t),
            preferred=t.pk == preferred_id,
            booked_minutes=minutes_booked.get(t.pk, 0),
            last_booked=last_booked.get(t.pk),
        )
        for t in therapists
    ]
    candidates.sort(key=rank)
    by_id = {t.pk: t for t in therapists}
    best = candidates[0] if candidates and candidates[0].reason is None else None
    return Choice(by_id[best.therapist_id] if best else None, candidates)


def rank(candidate: Candidate) -> tuple[bool, bool, int, datetime, int]:
    """The fairness order (`RULE`): free first, then preferred, fewest minutes booked,
    longest since the last booking (never booked counts as longest), lowest id."""
    never = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    return (
        candidate.reason is not None,
        not candidate.preferred,
        candidate.booked_minutes,
        candidate.last_booked or never,
        candidate.therapist_id,
    )


def _fairness_figures(
    ids: list[int], start: datetime
) -> tuple[dict[int, int], dict[int, datetime]]:
    """Minutes each therapist has booked in the start's week (sessions that hold time or
    were done) and when each was last booked."""
    day = local_date(start)
    week_start = local_day_bounds(day - timedelta(days=day.weekday()))[0]
    week_end = local_day_bounds(day + timedelta(days=6 - day.weekday()))[1]
    booked: dict[int, int] = {}
    rows = Appointment.objects.filter(
        therapist_id__in=ids,
        start__gte=week_start,
        start__lt=week_end,
        status__in=[*ACTIVE_APPOINTMENT_STATUSES, AppointmentStatus.COMPLETED],
    ).values_list("therapist_id", "start", "end")
    for therapist_id, begins, ends in rows:
        booked[therapist_id] = booked.get(therapist_id, 0) + int(
            (ends - begins).total_seconds() // 60
        )
    last = dict(
        Appointment.objects.filter(therapist_id__in=ids)
        .values("therapist_id")
        .annotate(last=Max("created_at"))
        .values_list("therapist_id", "last")
    )
    return booked, last


def _preferred(client: Client) -> int | None:
    value = (client.preferences or {}).get("therapist")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def book_any_therapist(
    *,
    actor: User,
    client_id: int,
    service_id: int,
    start: datetime,
    address: str = "",
    notes: str = "",
    needs_transport: bool = False,
    area_id: int | None = None,
    exclude: frozenset[int] = frozenset(),
    now: datetime | None = None,
) -> Appointment:
    """Book the therapist `choose_therapist` picks (none of `exclude`), recording the
    decision.

    A concurrent booking may take the chosen therapist between the choice and the
    insert (the exclusion constraint refuses ours): then choose again without them, so
    N simultaneous requests with K free therapists give K bookings and N - K refusals."""
    # The role first, as booking a named therapist does: nothing is read for a refusal.
    states.check(APPOINTMENT_RULES, "create", current=NEW, role=role_of(actor), noun="appointment")
    now = now or timezone.now()
    client = _get(Client, client_id, "client")
    service = _bookable_service(service_id)
    _check_start(start, now, travel_for(client=client, area_id=area_id))
    taken: set[int] = set(exclude)
    while True:
        choice = choose_therapist(
            service=service,
            start=start,
            client=client,
            needs_transport=needs_transport,
            area_id=area_id,
            exclude=frozenset(taken),
            now=now,
        )
        if choice.therapist is None:
            raise _nobody_free(choice, start)
        try:
            with transaction.atomic():
                appointment = create_appointment(
                    actor=actor,
                    client_id=client.pk,
                    service_id=service.pk,
                    therapist_id=choice.therapist.pk,
                    start=start,
                    address=address,
                    notes=notes,
                    needs_transport=needs_transport,
                    area_id=area_id,
                    now=now,
                )
                TherapistChoice.objects.create(
                    appointment=appointment,
                    therapist=choice.therapist,
                    decided_by=actor,
                    rule=RULE,
                    candidates=[c.as_json() for c in choice.candidates],
                    decided_at=now,
                )
        except Conflict as exc:
            # Lost the race for this therapist; anything else (drivers) is the answer.
            if exc.reason != "therapist_busy":
                raise
            taken.add(choice.therapist.pk)
            continue
        return appointment


def _nobody_free(choice: Choice, start: datetime) -> Conflict:
    counts: dict[str, int] = {}
    for candidate in choice.candidates:
        reason = candidate.reason  # None only for a free one, and nobody is free here
        if reason is not None and reason != PassReason.EXCLUDED:
            counts[reason] = counts.get(reason, 0) + 1
    why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(counts.items()))
    when = timezone.localtime(start)
    return Conflict(
        f"No therapist is free at {when:%Y-%m-%d %H:%M}" + (f" ({why})." if why else "."),
        reason=NOBODY_FREE,
    )
