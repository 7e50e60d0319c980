"""How long the therapist travels to a client: the one rule booking and availability use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from scheduling.domain import DaySchedule, Interval, busy_range, local_date
from scheduling.errors import ValidationFailed
from scheduling.models import Appointment, Client, ServiceArea
from scheduling.services.common import setting
from scheduling.services.working_time import day_schedules


@dataclass(frozen=True)
class Travel:
    area: ServiceArea | None
    minutes: int

    @property
    def time(self) -> timedelta:
        return timedelta(minutes=self.minutes)


def default_minutes() -> int:
    return int(setting("TRAVEL_ALLOWANCE_MINUTES"))


def travel_for(*, client: Client | None, area_id: int | None = None) -> Travel:
    """The area named for this booking, else the client's, else the default allowance
    (`TRAVEL_ALLOWANCE_MINUTES`). A booking names only an area still offered; a client's
    stored area counts whatever became of it since."""
    area: ServiceArea | None
    if area_id is not None:
        area = area_by_id(area_id)
    else:
        area = client.area if client is not None and client.area_id else None
    return Travel(area, area.travel_minutes if area else default_minutes())


def travel_of(appointment: Appointment) -> Travel:
    """The travel a reschedule keeps: the one it was booked with (an area's later change
    moves nothing booked); one booked before travel was counted (0) gets what a new
    booking would."""
    if appointment.travel_minutes:
        return Travel(appointment.area, appointment.travel_minutes)
    return travel_for(client=appointment.client)


def area_by_id(area_id: int) -> ServiceArea:
    try:
        area: ServiceArea = ServiceArea.objects.active().get(pk=area_id)
        return area
    except (ServiceArea.DoesNotExist, ValueError, TypeError):
        raise ValidationFailed.on("area", f"There is no service area with id {area_id}.") from None


@dataclass(frozen=True)
class TravelClash:
    """An active appointment booked before travel was counted whose busy range, with the
    travel a booking now gets, would meet another's or leave working time."""

    appointment: Appointment
    would_hold: Interval
    clashes_with: list[Appointment]
    outside: str | None


def travel_clashes(*, now: datetime) -> list[TravelClash]:
    """The active appointments from `now` on, booked with travel 0, that would not be
    bookable under the travel rule: for a manager to move or reassign. Nothing is
    changed; they keep the time they were booked with."""
    active = list(
        Appointment.objects.active()
        .filter(busy_until__gt=now)
        .select_related("client__area", "service", "therapist")
        .order_by("therapist_id", "start")
    )
    held = {a.pk: _would_hold(a) for a in active}
    by_therapist: dict[int, list[Appointment]] = {}
    for a in active:
        by_therapist.setdefault(a.therapist_id, []).append(a)
    schedules: dict[tuple[int, date], DaySchedule] = {}
    found = []
    for a in active:
        if a.travel_minutes:
            continue
        mine = held[a.pk]
        others = [
            b for b in by_therapist[a.therapist_id] if b.pk != a.pk and held[b.pk].overlaps(mine)
        ]
        day = local_date(mine.start)
        key = (a.therapist_id, day)
        if key not in schedules:
            schedules[key] = day_schedules([a.therapist_id], day)[a.therapist_id]
        outside = schedules[key].why_not_working(mine)
        if others or outside:
            found.append(TravelClash(a, mine, others, outside))
    return found


def _would_hold(appointment: Appointment) -> Interval:
    minutes = appointment.travel_minutes or travel_for(client=appointment.client).minutes
    return busy_range(
        appointment.start,
        duration=appointment.service.duration,
        buffer=appointment.service.buffer,
        travel=timedelta(minutes=minutes),
    )
