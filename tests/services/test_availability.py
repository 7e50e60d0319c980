"""Availability: constant queries, DST, and agreement with booking."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, time, timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.domain import DaySchedule, Interval, local_day_bounds
from scheduling.errors import Conflict, ValidationFailed
from scheduling.models import Appointment, Break, TimeOff, WorkingHours
from scheduling.services.appointments import create_appointment
from scheduling.services.availability import _busy_orm, _busy_postgres, availability
from scheduling.services.working_time import (
    _working_time_orm,
    _working_time_postgres,
    day_schedules,
)
from scheduling.states import AppointmentStatus
from tests import factories

pytestmark = pytest.mark.django_db
DAY = date(2030, 5, 1)  # a Wednesday
NOW = datetime.fromisoformat("2030-04-20T00:00:00+00:00")


def starts_of(result, therapist) -> list[datetime]:
    return next(r.starts for r in result if r.therapist == therapist)


def test_offers_free_quarter_hours_inside_working_time(service, therapist):
    Break.objects.create(staff=therapist, weekday=DAY.weekday(), start=time(12), end=time(13))
    result = availability(service=service, day=DAY, now=NOW)
    walls = [timezone.localtime(s).strftime("%H:%M") for s in starts_of(result, therapist)]
    # 45 minutes' travel there after 08:00; the session, its 15-minute buffer and the
    # travel back by 20:00.
    assert walls[0] == "08:45" and walls[-1] == "18:00"  # 18:00 is back at 20:00
    assert "10:00" in walls and "10:15" not in walls  # back at 12:00; later runs into lunch
    assert "13:30" not in walls and "13:45" in walls  # leaves at 13:00, after lunch


def test_an_appointment_being_moved_does_not_block_its_own_new_time(
    desk, service, therapist, client_record
):
    from scheduling.services.appointments import reschedule_appointment

    start = datetime.fromisoformat("2030-05-01T10:00:00+08:00")
    booked = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
        now=NOW,
    )
    half_hour_later = start + timedelta(minutes=30)
    for_others = starts_of(availability(service=service, day=DAY, now=NOW), therapist)
    for_itself = starts_of(
        availability(service=service, day=DAY, now=NOW, moving=booked.pk), therapist
    )
    assert half_hour_later not in for_others
    assert half_hour_later in for_itself and start in for_itself
    # What is offered for the move, the reschedule service accepts.
    moved = reschedule_appointment(
        actor=desk, appointment_id=booked.pk, start=half_hour_later, now=NOW
    )
    assert moved.start == half_hour_later


def test_existing_booking_its_buffer_and_travel_are_excluded(
    desk, service, therapist, client_record
):
    start = datetime.fromisoformat("2030-05-01T14:00:00+08:00")  # busy 13:15-16:00
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
        now=NOW,
    )
    offered = set(starts_of(availability(service=service, day=DAY, now=NOW), therapist))
    blocked = [start + timedelta(minutes=m) for m in range(-150, 165, 15)]  # 11:30 .. 16:30
    assert not offered & set(blocked)
    assert start - timedelta(minutes=150) not in offered  # 11:30: back only at 13:30
    assert start - timedelta(minutes=165) in offered  # 11:15: back at 13:15, as it leaves
    assert start + timedelta(minutes=150) not in offered  # 16:30 would leave at 15:45
    assert start + timedelta(minutes=165) in offered  # 16:45 leaves at 16:00, once back


def test_only_therapists_who_perform_the_service(service, therapist):
    other_service = factories.ServiceFactory()
    factories.therapist(other_service)
    assert [r.therapist for r in availability(service=service, day=DAY, now=NOW)] == [therapist]
    only = availability(service=service, day=DAY, therapist_id=therapist.pk, now=NOW)
    assert [r.therapist for r in only] == [therapist]


def test_time_off_and_inactive_service(service, therapist):
    day_start, day_end = local_day_bounds(DAY)
    TimeOff.objects.create(staff=therapist, start=day_start, end=day_end)
    assert starts_of(availability(service=service, day=DAY, now=NOW), therapist) == []
    service.active = False
    assert (
        starts_of(availability(service=service, day=DAY + timedelta(days=1), now=NOW), therapist)
        == []
    )


def test_query_count_does_not_grow_with_therapists(service, django_assert_num_queries, desk):
    team = [factories.therapist(service) for _ in range(20)]
    client = factories.ClientFactory()
    for i, t in enumerate(team):
        Break.objects.create(staff=t, weekday=DAY.weekday(), start=time(12), end=time(13))
        create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=t.pk,
            now=NOW,
            start=datetime.fromisoformat(f"2030-05-01T{14 + i % 3:02d}:00:00+08:00"),
        )
    # The therapists, their working time (hours, breaks and time off: one statement on
    # PostgreSQL, three elsewhere), their bookings.
    queries = 3 if connection.vendor == "postgresql" else 5
    with django_assert_num_queries(queries):
        result = availability(service=service, day=DAY, now=NOW)
    assert len(result) == 20 and all(r.starts for r in result)
    with django_assert_num_queries(queries):
        availability(service=service, day=DAY + timedelta(days=1), now=NOW)


@pytest.mark.postgres
def test_working_time_reads_agree(service):
    """day_schedules' one statement (PostgreSQL) and its three ORM queries (elsewhere)
    read the same hours, breaks and time off."""
    team = [factories.therapist(service, hours=None) for _ in range(4)]
    a, b, c, d = team
    for weekday, staff in ((DAY.weekday(), a), (DAY.weekday(), b), ((DAY.weekday() + 1) % 7, c)):
        WorkingHours.objects.create(staff=staff, weekday=weekday, start=time(8), end=time(12))
        WorkingHours.objects.create(staff=staff, weekday=weekday, start=time(13), end=time(19))
    Break.objects.create(staff=a, weekday=DAY.weekday(), start=time(10), end=time(10, 30))
    Break.objects.create(staff=c, weekday=DAY.weekday(), start=time(9), end=time(9, 15))
    day_start, day_end = local_day_bounds(DAY)
    TimeOff.objects.create(
        staff=a, start=day_start - timedelta(hours=2), end=day_start + timedelta(hours=9)
    )
    TimeOff.objects.create(
        staff=b, start=day_end - timedelta(hours=1), end=day_end + timedelta(days=2)
    )
    TimeOff.objects.create(staff=b, start=day_end, end=day_end + timedelta(hours=1))  # next day
    TimeOff.objects.create(staff=d, start=day_start - timedelta(days=1), end=day_start)
    ids = [t.pk for t in team]
    args = (DAY.weekday(), day_start, day_end)
    orm = _working_time_orm(ids, *args)
    postgres = _working_time_postgres(ids, *args)
    for kind in range(3):
        assert {k: sorted(v) for k, v in orm[kind].items()} == {
            k: sorted(v) for k, v in postgres[kind].items()
        }
    assert len(orm[0][a.pk]) == 2 and len(orm[1][a.pk]) == 1 and len(orm[2][b.pk]) == 1
    assert c.pk not in orm[0] and d.pk not in orm[2]


@pytest.mark.postgres
def test_busy_reads_agree(service, desk):
    """busy_intervals' hand-written statement (PostgreSQL) and its ORM query (elsewhere)
    read the same active appointments meeting the range, with and without the one being
    moved."""
    a, b, c = (factories.therapist(service) for _ in range(3))
    client = factories.ClientFactory()
    booked = {
        (t.pk, hour): create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=t.pk,
            now=NOW,
            start=datetime.fromisoformat(f"2030-05-01T{hour:02d}:00:00+08:00"),
        )
        for t in (a, b, c)
        for hour in (9, 12, 16)
    }
    cancelled = booked[(b.pk, 12)]
    Appointment.objects.filter(pk=cancelled.pk).update(status=AppointmentStatus.CANCELLED)
    # Meets the 12:00 bookings (busy from 11:15) and the 09:00 ones (busy until 11:00)
    # by a minute; not the 16:00 ones (busy from 15:15).
    start = datetime.fromisoformat("2030-05-01T10:59:00+08:00")
    end = datetime.fromisoformat("2030-05-01T15:15:00+08:00")
    ids = [a.pk, b.pk]
    for exclude in (None, booked[(a.pk, 9)].pk, booked[(c.pk, 9)].pk):
        orm = sorted(_busy_orm(ids, start, end, exclude))
        postgres = sorted(_busy_postgres(ids, start, end, exclude))
        assert orm == postgres
        held = {(row[0], row[1]) for row in postgres}
        assert (b.pk, cancelled.busy_from) not in held  # cancelled holds nothing
        assert all(tid in ids for tid, _ in held)  # only the therapists asked about
    assert len(postgres) == 3  # a's and b's 09:00, a's 12:00
    assert len(_busy_postgres(ids, start, end, booked[(a.pk, 9)].pk)) == 2


@override_settings(TIME_ZONE="America/New_York")
def test_booking_and_availability_across_spring_forward(desk, service, client_record):
    night = factories.therapist(service, hours=(time(0), time(6)))
    day = date(2030, 3, 10)
    before = datetime.fromisoformat("2030-03-01T00:00:00+00:00")
    offered = starts_of(availability(service=service, day=day, now=before), night)
    # Five real hours between 00:00 EST and 06:00 EDT, less the 45 minutes' travel there,
    # and the session, its buffer and the travel back (two hours) from each start.
    assert len(offered) == 10
    last = offered[-1]
    booked = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=night.pk,
        start=last,
        now=before,
    )
    assert timezone.localtime(booked.start).strftime("%H:%M %Z") == "04:00 EDT"
    assert timezone.localtime(booked.end).strftime("%H:%M %Z") == "05:00 EDT"
    assert timezone.localtime(booked.busy_until).strftime("%H:%M %Z") == "06:00 EDT"
    assert timezone.localtime(offered[0]).strftime("%H:%M %Z") == "00:45 EST"
    with pytest.raises(Conflict, match="outside working hours"):
        create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=night.pk,
            start=last + timedelta(minutes=15),
            now=before,
        )


def test_with_transport_only_starts_a_driver_can_carry_are_offered(
    desk, service, therapist, client_record
):
    """One driver, on 08:00-12:00, already holding another visit's legs (08:15-09:00 and
    10:15-11:00): only the starts whose two legs fit around those are offered; the rest
    that Ana could make are listed apart, and booking agrees with both."""
    factories.driver(username="morning")
    WorkingHours.objects.filter(staff__username="morning").update(end=time(12))
    other = factories.therapist(service)
    nine = datetime.fromisoformat("2030-05-01T09:00:00+08:00")
    book(desk, service, other, client_record, nine, needs_transport=True)
    plain = starts_of(availability(service=service, day=DAY, now=NOW), therapist)
    [ana] = availability(
        service=service, day=DAY, therapist_id=therapist.pk, now=NOW, needs_transport=True
    )
    walls = [timezone.localtime(s).strftime("%H:%M") for s in ana.starts]
    assert walls == ["09:45", "10:00"]  # drop-off from 09:00, pick-up from 11:00 to noon
    assert sorted(ana.starts + ana.no_driver) == plain
    for start in plain:
        refused = refusal(desk, service, therapist, client_record, start, needs_transport=True)
        if start in ana.starts:
            assert refused is None
        else:
            assert isinstance(refused, Conflict) and refused.reason == "no_driver"


# --- availability never offers what booking refuses, nor hides what it accepts ----------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    existing=st.lists(st.integers(0, 60), max_size=6),
    lunch=st.one_of(st.none(), st.integers(16, 40)),
    probes=st.lists(st.integers(0, 95), min_size=4, max_size=10, unique=True),
)
def test_availability_and_booking_agree(
    desk, service, therapist, client_record, existing, lunch, probes
):
    day_start, _ = local_day_bounds(DAY)
    with transaction.atomic():
        if lunch is not None:  # quarter hours after 08:00
            begin = datetime.combine(DAY, time(8)) + timedelta(minutes=15 * lunch)
            Break.objects.create(
                staff=therapist,
                weekday=DAY.weekday(),
                start=begin.time(),
                end=(begin + timedelta(hours=1)).time(),
            )
        for q in existing:
            # The generator may ask for an overlap; booking refusing it is the point.
            with contextlib.suppress(Conflict):
                book(
                    desk,
                    service,
                    therapist,
                    client_record,
                    day_start + timedelta(hours=8, minutes=15 * q),
                )
        offered = set(starts_of(availability(service=service, day=DAY, now=NOW), therapist))
        for q in probes:
            start = day_start + timedelta(minutes=15 * q)
            assert accepts(desk, service, therapist, client_record, start) is (start in offered)
        transaction.set_rollback(True)


def book(desk, service, therapist, client, start, **more):
    return create_appointment(
        actor=desk,
        client_id=client.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
        now=NOW,
        **more,
    )


def refusal(desk, service, therapist, client, start, **more) -> Exception | None:
    """Why booking would refuse this start (None: it would take it). Tried for real, then
    rolled back."""
    try:
        with transaction.atomic():
            book(desk, service, therapist, client, start, **more)
            transaction.set_rollback(True)
    except (Conflict, ValidationFailed) as refused:
        return refused
    return None


def accepts(desk, service, therapist, client, start) -> bool:
    """Would booking take this start?"""
    return refusal(desk, service, therapist, client, start) is None


@override_settings(TIME_ZONE="America/New_York")
def test_day_schedules_are_what_day_schedule_build_makes(service):
    """day_schedules reads each wall time once for every therapist; what it builds is what
    DaySchedule.build makes of the same rows, on a spring-forward day too (02:30 does not
    exist: 02:30-03:00 is empty there) and with overlapping hours."""
    a, b, c = (factories.therapist(service, hours=None) for _ in range(3))
    for day in (date(2030, 3, 10), date(2030, 3, 11)):
        weekday = day.weekday()
        periods = {
            a: [(time(0), time(6)), (time(5), time(9))],
            b: [(time(1), time(4)), (time(13), time(19))],
        }
        for staff, spans in periods.items():
            for start, end in spans:
                WorkingHours.objects.create(staff=staff, weekday=weekday, start=start, end=end)
        Break.objects.create(staff=a, weekday=weekday, start=time(2, 30), end=time(3))
        Break.objects.create(staff=b, weekday=weekday, start=time(15), end=time(15, 30))
        day_start, day_end = local_day_bounds(day)
        off = (day_start + timedelta(hours=3), day_end + timedelta(hours=2))
        TimeOff.objects.create(staff=b, start=off[0], end=off[1])
        schedules = day_schedules([a.pk, b.pk, c.pk], day)
        assert schedules[a.pk] == DaySchedule.build(
            day, hours=periods[a], breaks=[(time(2, 30), time(3))]
        )
        assert schedules[b.pk] == DaySchedule.build(
            day,
            hours=periods[b],
            breaks=[(time(15), time(15, 30))],
            time_off=[Interval(*off)],
        )
        assert schedules[c.pk] == DaySchedule.build(day, hours=[])
        assert len(schedules[a.pk].hours) == 1 and schedules[b.pk].time_off
        WorkingHours.objects.all().delete()
        Break.objects.all().delete()
        TimeOff.objects.all().delete()
