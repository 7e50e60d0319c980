"""Cancel and reschedule with a scope (issue 14 item 2): "this" occurrence, "following"
(this one and the series' later ones) or "all" (every occurrence not yet finished).

Each occurrence goes through the existing service function (`act_on_appointment`,
`reschedule_appointment`), all in one transaction: these functions choose which
occurrences and in what order, the rules stay where they are."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from scheduling.domain import local_date
from scheduling.errors import (
    Conflict,
    InvalidTransition,
    OccurrenceFailure,
    SeriesConflict,
    ValidationFailed,
)
from scheduling.models import Appointment, User
from scheduling.services import capacity
from scheduling.services.appointments import (
    _locked,
    act_on_appointment,
    reschedule_appointment,
)
from scheduling.services.common import THERAPIST_TIMETABLE, lock_timetable
from scheduling.services.series import reason_of
from scheduling.states import AppointmentStatus

SCOPES = ("this", "following", "all")
# What "all" and "following" take: occurrences that have not happened nor been settled.
NOT_FINISHED = (AppointmentStatus.PENDING, AppointmentStatus.CONFIRMED)


def cancel_appointments(
    *,
    actor: User,
    appointment_id: int,
    scope: str = "this",
    reason: str = "",
    now: datetime | None = None,
) -> list[Appointment]:
    """Cancel the appointment, or with a scope the series' occurrences it names, each
    through `act_on_appointment` in one transaction (one refusal undoes them all)."""
    now = now or timezone.now()
    with transaction.atomic():
        chosen = _scoped(appointment_id, scope)
        return [
            act_on_appointment(
                actor=actor, appointment_id=pk, action="cancel", reason=reason, now=now
            )
            for pk, _ in chosen
        ]


def reschedule_appointments(
    *,
    actor: User,
    appointment_id: int,
    start: datetime,
    scope: str = "this",
    reason: str = "",
    now: datetime | None = None,
) -> list[Appointment]:
    """Move the appointment to `start`, or with a scope every occurrence it names by the
    same number of days, each to `start`'s local wall time. All or nothing: each moved
    occurrence passes the booking checks (`reschedule_appointment`), and SeriesConflict
    names every one that cannot move. The first moved keeps the fresh response deadline;
    the later ones have none, so the therapist answers the move once."""
    now = now or timezone.now()
    if scope == "this":
        return [
            reschedule_appointment(
                actor=actor, appointment_id=appointment_id, start=start, reason=reason, now=now
            )
        ]
    with transaction.atomic():
        chosen = _scoped(appointment_id, scope)
        anchor = _locked(appointment_id, lock=False).start
        targets = _moved(chosen, anchor, start)
        _lock_ahead(chosen, targets)
        # Later first when moving later (and earlier first when moving earlier), so no
        # occurrence meets a neighbour that is about to move out of its way.
        later = start > anchor
        moved: dict[int, Appointment] = {}
        failures: list[OccurrenceFailure] = []
        for pk, new_start in sorted(targets, key=lambda t: t[1], reverse=later):
            try:
                with transaction.atomic():
                    moved[pk] = reschedule_appointment(
                        actor=actor, appointment_id=pk, start=new_start, reason=reason, now=now
                    )
            except (Conflict, ValidationFailed) as exc:
                failures.append(
                    OccurrenceFailure(
                        start=new_start,
                        reason=reason_of(exc),
                        message=exc.message,
                        appointment_id=pk,
                    )
                )
        if failures:
            raise SeriesConflict(sorted(failures, key=lambda f: f.start), verb="moved")
        in_order = sorted(moved.values(), key=lambda a: (a.start, a.pk))
        later_ones = [a.pk for a in in_order[1:]]
        Appointment.objects.filter(pk__in=later_ones).update(response_deadline=None)
        for appointment in in_order[1:]:
            appointment.response_deadline = None
    return in_order


def _scoped(appointment_id: int, scope: str) -> list[tuple[int, datetime]]:
    """(id, start) of the occurrences `scope` names from this appointment, in start order;
    "this" names the appointment whatever its status (its own action then decides)."""
    if scope not in SCOPES:
        raise ValidationFailed.on("scope", "scope must be this, following or all.")
    appointment = _locked(appointment_id, lock=False)
    if scope == "this":
        return [(appointment.pk, appointment.start)]
    if appointment.series_id is None:
        raise ValidationFailed.on(
            "scope", f"Appointment #{appointment.pk} is not part of a series: use scope this."
        )
    rows = Appointment.objects.filter(series_id=appointment.series_id, status__in=NOT_FINISHED)
    if scope == "following":
        rows = rows.filter(start__gte=appointment.start)
    chosen = list(rows.order_by("start", "id").values_list("pk", "start"))
    if not chosen:
        raise InvalidTransition(
            "No occurrence of this series is still to happen.", str(appointment.status)
        )
    return chosen


def _moved(
    chosen: list[tuple[int, datetime]], anchor: datetime, start: datetime
) -> list[tuple[int, datetime]]:
    """Each occurrence's new start: shifted by as many days as the anchor moves, at the
    new start's local wall time (so DST changes keep it)."""
    days = timezone.localtime(start).date() - timezone.localtime(anchor).date()
    wall = timezone.localtime(start).time()
    return [
        (
            pk,
            timezone.make_aware(datetime.combine(timezone.localtime(old).date() + days, wall)),
        )
        for pk, old in chosen
    ]


def _lock_ahead(chosen: list[tuple[int, datetime]], targets: list[tuple[int, datetime]]) -> None:
    """Take every lock the moves will take, up front and in the one order every booking
    writer uses (therapists' timetables by id, then capacity days by date): moving later
    occurrences first would otherwise take the days in descending order and could
    deadlock against a booking taking them ascending."""
    rows = Appointment.objects.filter(pk__in=[pk for pk, _ in chosen])
    therapists = sorted(set(rows.values_list("therapist_id", flat=True)))
    for therapist_id in therapists:
        lock_timetable(THERAPIST_TIMETABLE, therapist_id)
    if rows.filter(needs_transport=True).exists():
        days = {
            local_date(when) + timedelta(days=shift)
            for _, when in [*chosen, *targets]
            for shift in (-1, 0, 1)
        }
        capacity.lock_days(days)
