"""Free start times, built from the same rule booking enforces (`domain.bookable`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.utils import timezone

from scheduling.domain import DaySchedule, Interval, free_starts, local_day_bounds
from scheduling.models import Appointment, Break, Service, TimeOff, User, WorkingHours
from scheduling.services.common import latest_bookable, minutes


def day_schedules(therapist_ids: list[int], day: date) -> dict[int, DaySchedule]:
    """Each therapist's working time on `day`: three queries whatever the count."""
    weekday = day.weekday()
    day_start, day_end = local_day_bounds(day)
    hours: dict[int, list] = defaultdict(list)
    breaks: dict[int, list] = defaultdict(list)
    time_off: dict[int, list] = defaultdict(list)
    for staff_id, start, end in WorkingHours.objects.filter(
        staff_id__in=therapist_ids, weekday=weekday
    ).values_list("staff_id", "start", "end"):
        hours[staff_id].append((start, end))
    for staff_id, start, end in Break.objects.filter(
        staff_id__in=therapist_ids, weekday=weekday
    ).values_list("staff_id", "start", "end"):
        breaks[staff_id].append((start, end))
    for staff_id, start, end in TimeOff.objects.filter(
        staff_id__in=therapist_ids, start__lt=day_end, end__gt=day_start
    ).values_list("staff_id", "start", "end"):
        time_off[staff_id].append(Interval(start, end))
    return {
        tid: DaySchedule.build(day, hours=hours[tid], breaks=breaks[tid], time_off=time_off[tid])
        for tid in therapist_ids
    }


def busy_intervals(
    therapist_ids: list[int], start: datetime, end: datetime, *, exclude: int | None = None
) -> dict[int, list[Interval]]:
    """Time each therapist already holds (buffers included) that meets [start, end)."""
    rows = (
        Appointment.objects.active().overlapping(start, end).filter(therapist_id__in=therapist_ids)
    )
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    busy: dict[int, list[Interval]] = defaultdict(list)
    for therapist_id, a_start, a_blocked in rows.values_list(
        "therapist_id", "start", "blocked_until"
    ):
        busy[therapist_id].append(Interval(a_start, a_blocked))
    return busy


@dataclass(frozen=True)
class TherapistAvailability:
    therapist: User
    starts: list[datetime]


def availability(
    *,
    service: Service,
    day: date,
    therapist_id: int | None = None,
    now: datetime | None = None,
) -> list[TherapistAvailability]:
    """Free start times for `service` on `day` for every therapist who performs it."""
    therapists = list(
        User.objects.filter(
            role="therapist", is_active=True, therapist_profile__services=service
        ).order_by("first_name", "last_name", "id")
    )
    if therapist_id is not None:
        therapists = [t for t in therapists if t.pk == therapist_id]
    if not therapists or not service.active:
        return [TherapistAvailability(t, []) for t in therapists]
    ids = [t.pk for t in therapists]
    day_start, day_end = local_day_bounds(day)
    schedules = day_schedules(ids, day)
    # A session starting late on `day` may run, with its buffer, past midnight.
    busy = busy_intervals(ids, day_start, day_end + timedelta(days=1))
    now = now or timezone.now()
    latest = latest_bookable(now)
    return [
        TherapistAvailability(
            therapist,
            [
                s
                for s in free_starts(
                    day,
                    duration=service.duration,
                    buffer=service.buffer,
                    step=minutes("SLOT_STEP_MINUTES"),
                    schedule=schedules[therapist.pk],
                    busy=busy[therapist.pk],
                    not_before=now,
                )
                if s <= latest
            ],
        )
        for therapist in therapists
    ]
