"""Travel time and driver capacity in the booking engine (issue 12).

Every booking here passes `now=`, a fixed instant well before the day booked, so nothing
depends on when the suite runs.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.errors import Conflict, ValidationFailed
from scheduling.models import (
    Appointment,
    DriverProfile,
    ServiceArea,
    TimeOff,
    Trip,
    WorkingHours,
)
from scheduling.services import capacity
from scheduling.services.appointments import (
    act_on_appointment,
    create_appointment,
    reschedule_appointment,
)
from scheduling.services.availability import availability
from scheduling.services.dispatch import run_pass
from scheduling.services.trips import set_shift
from tests import factories
from tests.races import run_rounds

pytestmark = pytest.mark.django_db
DAY = date(2030, 5, 1)  # a Wednesday
NOW = datetime.fromisoformat("2030-04-20T00:00:00+00:00")
MIN = timedelta(minutes=1)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


@pytest.fixture
def booking(desk, therapist, service, client_record):
    def book(start, **fields):
        args = dict(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
            now=NOW,
        )
        return create_appointment(**{**args, **fields})

    return book


def driver_on(start: time, end: time, **fields):
    """A driver on a motorcycle who works `start`-`end` on DAY's weekday only."""
    user = factories.UserFactory(role="driver", **fields)
    DriverProfile.objects.create(user=user)
    WorkingHours.objects.create(staff=user, weekday=DAY.weekday(), start=start, end=end)
    return user


# --- travel ---------------------------------------------------------------------------------


def test_the_issue_example_is_refused_travel_included(booking):
    """60-minute service, 15-minute buffer, 45 minutes' travel: 10:00 holds 09:15-12:00
    (back at base), so 11:15 (which would leave base at 10:30) is refused, and 12:45 is
    the next free start."""
    first = booking(at(10))
    assert (first.busy_from, first.busy_until) == (at(9, 15), at(12))
    assert first.travel_minutes == 45 and first.area is None
    with pytest.raises(Conflict) as refused:
        booking(at(11, 15))
    assert refused.value.reason == "therapist_busy"
    assert "travel and clean-up included" in refused.value.message
    with pytest.raises(Conflict):
        booking(at(12, 30))
    assert booking(at(12, 45)).busy_from == at(12)


def test_without_transport_the_travel_is_blocked_too(booking):
    booking(at(10), needs_transport=False)
    with pytest.raises(Conflict):
        booking(at(8, 45))  # back at 11:00 but the 10:00 one leaves at 09:15


def test_the_whole_busy_range_lies_in_working_time(booking):
    # Hours 08:00-20:00: 08:45 leaves at 08:00; 08:30 would leave at 07:45.
    assert booking(at(8, 45)).busy_from == at(8)
    with pytest.raises(Conflict) as early:
        booking(at(8, 30))
    assert early.value.reason == "not_working"
    assert "counting 45 minutes' travel each way" in early.value.message
    # 18:00 is back at 20:00 exactly; 18:15 would be back at 20:15.
    assert booking(at(18)).busy_until == at(20)
    with pytest.raises(Conflict):
        booking(at(18, 15))


def test_a_start_the_therapist_cannot_reach_in_time_is_refused(booking):
    with pytest.raises(ValidationFailed) as soon:
        booking(at(10), now=at(9, 30))
    assert "getting there takes 45 minutes" in soon.value.message
    assert booking(at(10), now=at(9, 15)).busy_from == at(9, 15)


def test_areas_set_the_travel_and_bookings_keep_theirs(booking, client_record):
    near = ServiceArea.objects.create(name="Makati", travel_minutes=20)
    far = ServiceArea.objects.create(name="Antipolo", travel_minutes=90)
    client_record.area = near
    client_record.save()
    by_client = booking(at(10))
    assert (by_client.area, by_client.travel_minutes) == (near, 20)
    assert by_client.busy_from == at(9, 40)
    overridden = booking(at(14), area_id=far.pk)
    assert (overridden.area, overridden.travel_minutes) == (far, 90)
    # A later change to the area moves nothing booked.
    near.travel_minutes = 60
    near.save()
    by_client.refresh_from_db()
    assert (by_client.travel_minutes, by_client.busy_from) == (20, at(9, 40))


def test_an_unknown_or_retired_area_is_refused(booking):
    retired = ServiceArea.objects.create(name="Old", travel_minutes=30, active=False)
    for area_id in (retired.pk, 99999, "x"):
        with pytest.raises(ValidationFailed) as refused:
            booking(at(10), area_id=area_id)
        assert refused.value.errors.keys() == {"area"}
    assert not Appointment.objects.exists()


def test_legs_lie_inside_the_busy_range(booking):
    factories.driver()
    appointment = booking(at(10), needs_transport=True)
    dropoff, pickup = appointment.trips.order_by("window_start")
    assert (dropoff.window_start, dropoff.window_end) == (at(9, 15), at(10))
    assert (pickup.window_start, pickup.window_end) == (at(11, 15), at(12))
    assert appointment.busy_from <= dropoff.window_start
    assert pickup.window_end <= appointment.busy_until


# --- driver capacity ------------------------------------------------------------------------


def test_no_driver_working_then_is_a_conflict_of_its_own(booking):
    driver_on(time(11), time(20))
    with pytest.raises(Conflict) as refused:
        booking(at(10), needs_transport=True)
    assert refused.value.reason == "no_driver"
    assert refused.value.message.startswith("No driver is free for the drop-off 09:15–10:00")
    assert [item.leg for item in refused.value.conflicts] == ["dropoff"]
    assert not Appointment.objects.exists() and not Trip.objects.exists()


def test_a_count_would_say_yes_where_no_assignment_exists(service, desk, client_record):
    """Early works 08-11, Late 08-20. Two bookings at 10:00 need both drivers at 09:15
    and both pick-ups 11:15-12:00; Early has gone home by then, so the second is refused
    even though two drivers work at 10:00."""
    driver_on(time(8), time(11), username="early")
    driver_on(time(8), time(20), username="late")
    ana = factories.therapist(service, username="ana2")
    ben = factories.therapist(service, username="ben2")

    def book(therapist):
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=at(10),
            needs_transport=True,
            now=NOW,
        )

    book(ana)
    with pytest.raises(Conflict) as refused:
        book(ben)
    assert refused.value.reason == "no_driver"
    assert "pick-up 11:15–12:00" in refused.value.message


def test_time_off_and_seats_count(booking):
    dan = driver_on(time(8), time(20), username="dan")
    TimeOff.objects.create(staff=dan, start=at(9), end=at(12))
    with pytest.raises(Conflict):
        booking(at(10), needs_transport=True)
    TimeOff.objects.all().delete()
    assert booking(at(10), needs_transport=True).trips.count() == 2


def test_rescheduling_frees_its_own_legs(booking, desk):
    factories.driver()
    appointment = booking(at(10), needs_transport=True)
    moved = reschedule_appointment(
        actor=desk, appointment_id=appointment.pk, start=at(10, 30), now=NOW
    )
    assert sorted(t.window_start for t in moved.trips.filter(status="queued")) == [
        at(9, 45),
        at(11, 45),
    ]


# --- availability agrees with booking -------------------------------------------------------


def cancel(appointment, desk):
    act_on_appointment(actor=desk, appointment_id=appointment.pk, action="cancel", now=NOW)


def test_availability_offers_exactly_what_books(service, therapist, desk, client_record, booking):
    driver_on(time(12), time(17))
    booking(at(10))  # the therapist holds 09:15-12:00
    [plain] = availability(service=service, day=DAY, now=NOW)
    [carried] = availability(service=service, day=DAY, now=NOW, needs_transport=True)
    # Leaving base from 12:00 (the last booking's return), back by 20:00.
    assert plain.starts[0] == at(12, 45) and plain.starts[-1] == at(18)
    assert len(plain.starts) == 22
    # A driver works 12:00-17:00: both legs (s-45 to s, s+75 to s+120) must lie in that.
    assert carried.starts == [s for s in plain.starts if at(12, 45) <= s <= at(15)]
    assert carried.starts
    assert carried.no_driver == [s for s in plain.starts if s not in carried.starts]
    candidates = [at(8) + n * 15 * MIN for n in range(4 * 12)]
    for start in candidates:
        try:
            appointment = booking(start, needs_transport=True)
        except (Conflict, ValidationFailed) as refused:
            assert start not in carried.starts, (start, refused)
            expected = "no_driver" if start in carried.no_driver else None
            if expected:
                assert refused.reason == expected
        else:
            assert start in carried.starts, start
            cancel(appointment, desk)


# --- dispatch never strands a booked trip ---------------------------------------------------


def book_for(therapist, start, *, desk, service, client):
    return create_appointment(
        actor=desk,
        client_id=client.pk,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=start,
        needs_transport=True,
        now=NOW,
    )


def test_fifo_passes_over_a_driver_needed_later(service, desk, client_record):
    """Late has waited longest; Early goes home at 10:15. At 09:00 two overlapping
    drop-offs are due: A 09:15-10:00 and B 09:45-10:30. Only Late can take B, so plain
    FIFO (A to Late) would strand it: Late is passed over for A with `needed_later`, A
    goes to Early, and B to Late. (Noon, on from 10:45, carries a pick-up later.)"""
    early = driver_on(time(8), time(10, 15), username="early")
    late = driver_on(time(8), time(20), username="late")
    driver_on(time(10, 45), time(20), username="noon")
    ana, ben = (factories.therapist(service, username=name) for name in ("ana3", "ben3"))
    a = book_for(ana, at(10), desk=desk, service=service, client=client_record)
    b = book_for(ben, at(10, 30), desk=desk, service=service, client=client_record)
    set_shift(driver=late, on_shift=True, now=at(7))
    set_shift(driver=early, on_shift=True, now=at(7, 30))

    decisions = {d.trip_id: d for d in run_pass(now=at(9))}

    a_drop, b_drop = (x.trips.get(leg="dropoff") for x in (a, b))
    assert decisions[a_drop.pk].driver_id == early.pk
    assert decisions[a_drop.pk].skipped == [{"driver": late.pk, "reason": "needed_later"}]
    assert decisions[b_drop.pk].driver_id == late.pk
    a_drop.refresh_from_db()
    b_drop.refresh_from_db()
    assert (a_drop.driver_id, b_drop.driver_id) == (early.pk, late.pk)
    assert set(decisions) == {a_drop.pk, b_drop.pk}  # the pick-ups are not due yet


def test_fifo_holds_when_nothing_would_be_stranded(service, desk, client_record):
    early = driver_on(time(8), time(20), username="early")
    late = driver_on(time(8), time(20), username="late")
    ana, ben = (factories.therapist(service, username=name) for name in ("ana4", "ben4"))
    a = book_for(ana, at(10), desk=desk, service=service, client=client_record)
    book_for(ben, at(10, 30), desk=desk, service=service, client=client_record)
    set_shift(driver=late, on_shift=True, now=at(7))
    set_shift(driver=early, on_shift=True, now=at(7, 30))
    decisions = {d.trip_id: d for d in run_pass(now=at(9))}
    first = decisions[a.trips.get(leg="dropoff").pk]
    assert (first.driver_id, first.skipped) == (late.pk, [])


# --- races on real PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_thirty_bookings_racing_for_one_therapist_travel_included(service, desk):
    """Ten starts 10:00-12:15 a quarter apart, three desks each: every pair of them meets
    once travel is counted (each holds 2 h 45), though sessions alone would not from
    11:15 on. Exactly one of the thirty wins each round, the rest get a conflict."""
    therapist = factories.therapist(service, username="solo")
    client = factories.ClientFactory()
    rounds = 3

    def attempt(day: date, start: datetime):
        return lambda: create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
            now=NOW,
        )

    calls = []
    for r in range(rounds):
        day = DAY + timedelta(days=r)
        starts = [at(10, day=day) + n * 15 * MIN for n in range(10)]
        calls.append([attempt(day, starts[i % 10]) for i in range(30)])
    for outcomes in run_rounds(calls):
        won = [o for o in outcomes if isinstance(o, Appointment)]
        lost = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(won) == 1 and len(lost) == 29, outcomes
        assert {c.reason for c in lost} == {"therapist_busy"}
    assert Appointment.objects.count() == rounds


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_bookings_racing_for_the_last_driver(service, desk):
    """Ten free therapists, one driver: ten desks book the same hour with transport at
    once. Exactly one gets the driver; the nine others are told no driver is free, and
    nothing of theirs is written."""
    factories.driver(username="last")
    therapists = [factories.therapist(service, username=f"free{n}") for n in range(10)]
    client = factories.ClientFactory()
    rounds = 3

    def attempt(therapist, start):
        return lambda: create_appointment(
            actor=desk,
            client_id=client.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=start,
            needs_transport=True,
            now=NOW,
        )

    calls = [
        [attempt(t, at(10, day=DAY + timedelta(days=r))) for t in therapists] for r in range(rounds)
    ]
    for outcomes in run_rounds(calls):
        won = [o for o in outcomes if isinstance(o, Appointment)]
        lost = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(won) == 1 and len(lost) == 9, outcomes
        assert {c.reason for c in lost} == {"no_driver"}
    assert Appointment.objects.count() == rounds
    assert Trip.objects.count() == 2 * rounds
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM scheduling_trip a JOIN scheduling_trip b ON a.id < b.id "
            "WHERE tstzrange(a.window_start, a.window_end) && tstzrange(b.window_start, "
            "b.window_end)"
        )
        assert cursor.fetchone()[0] == 0  # one driver: the legs booked never overlap


@pytest.mark.postgres
def test_capacity_takes_its_lock_after_the_timetable(booking):
    """The order every writer takes: therapist timetable, then the legs' days (advisory
    locks are PostgreSQL's: the embedded pass leaves this test out by its marker)."""
    factories.driver()
    with CaptureQueriesContext(connection) as seen:
        booking(at(10), needs_transport=True)
    locks = [q["sql"] for q in seen.captured_queries if "pg_advisory_xact_lock" in q["sql"]]
    assert locks[0].startswith("SELECT pg_advisory_xact_lock(1,")
    assert locks[1].startswith(f"SELECT pg_advisory_xact_lock({capacity.DRIVER_CAPACITY},")


# --- the command for bookings made before travel counted ------------------------------------


def test_travel_clashes_lists_legacy_bookings_that_would_clash(service, therapist, client_record):
    def legacy(start):
        end = start + service.duration
        return Appointment.objects.create(
            client=client_record,
            service=service,
            therapist=therapist,
            start=start,
            end=end,
            blocked_until=end + service.buffer,
            price=service.price,
            response_deadline=start,
        )

    a, b = legacy(at(10)), legacy(at(11, 15))  # fine without travel, clash with it
    legacy(at(15))  # alone: no clash
    early = legacy(at(8))  # would leave base at 07:15
    assert (a.travel_minutes, a.busy_from, a.busy_until) == (0, at(10), at(11, 15))
    out = StringIO()
    with time_at(NOW):
        call_command("travel_clashes", stdout=out)
    text = out.getvalue()
    assert "3 booking(s) to fix" in text
    assert f"#{a.pk} " in text and f"meets #{b.pk}" in text
    assert f"#{early.pk} " in text and "runs outside working hours" in text


def test_travel_clashes_says_when_there_is_nothing_to_fix(db):
    out = StringIO()
    with time_at(NOW):
        call_command("travel_clashes", stdout=out)
    assert "0 to fix" in out.getvalue()


def time_at(instant):
    return time_machine.travel(instant, tick=False)


# --- client preferences (a malformed value once broke the next booking with a 500) ----------


@pytest.mark.parametrize("bad", ["junk", [], 3, {"channel": "pigeon"}])
def test_preferences_must_be_an_object_with_a_known_channel(desk, client_record, bad):
    response = factories.api(desk).patch(
        f"/api/clients/{client_record.pk}/", {"preferences": bad}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"].keys() == {"preferences"}
    client_record.refresh_from_db()
    assert client_record.preferences == {}


def test_a_client_area_is_set_through_the_api(desk, client_record):
    area = ServiceArea.objects.create(name="Pasig", travel_minutes=30)
    api = factories.api(desk)
    response = api.patch(f"/api/clients/{client_record.pk}/", {"area": area.pk}, format="json")
    assert response.status_code == 200 and response.json()["area"] == area.pk
    bad = api.patch(f"/api/clients/{client_record.pk}/", {"area": 999999}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"].keys() == {"area"}


# --- the API's words for it -----------------------------------------------------------------


def test_api_409_for_no_driver_says_so(desk, service, therapist, client_record):
    driver_on(time(11), time(20))
    with time_at(NOW):
        response = factories.api(desk).post(
            "/api/appointments/",
            {
                "client": client_record.pk,
                "service": service.pk,
                "therapist": therapist.pk,
                "start": at(10).isoformat(),
                "needs_transport": True,
            },
            format="json",
        )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "conflict" and body["reason"] == "no_driver"
    assert body["detail"] == "No driver is free for the drop-off 09:15–10:00."
    assert body["conflicts"] == [
        {
            "appointment": None,
            "leg": "dropoff",
            "start": at(9, 15).isoformat(),
            "end": at(10).isoformat(),
        }
    ]
    assert not Appointment.objects.exists()


def test_api_booking_carries_travel_and_the_busy_range(desk, service, therapist, client_record):
    area = ServiceArea.objects.create(name="Taguig", travel_minutes=30)
    with time_at(NOW):
        response = factories.api(desk).post(
            "/api/appointments/",
            {
                "client": client_record.pk,
                "service": service.pk,
                "therapist": therapist.pk,
                "start": at(10).isoformat(),
                "area": area.pk,
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["travel_minutes"], body["area"]) == (30, area.pk)
    assert (body["busy_from"], body["busy_until"]) == (
        at(9, 30).isoformat(),
        at(11, 45).isoformat(),
    )


@pytest.mark.parametrize(
    "query, field",
    [
        ("needs_transport=maybe", "needs_transport"),
        ("client=999999", "client"),
        ("area=999999", "area"),
        ("area=0", "area"),
    ],
)
def test_api_availability_refuses_bad_parameters(desk, service, query, field):
    response = factories.api(desk).get(
        f"/api/availability/?service={service.pk}&date={DAY.isoformat()}&{query}"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_api_availability_with_transport_lists_no_driver_starts(desk, service, therapist):
    driver_on(time(12), time(17))
    with time_at(NOW):
        response = factories.api(desk).get(
            f"/api/availability/?service={service.pk}&date={DAY.isoformat()}&needs_transport=true"
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["travel_minutes"], body["needs_transport"]) == (45, True)
    [row] = body["therapists"]
    assert row["starts"][0] == at(12, 45).isoformat()
    assert row["starts"][-1] == at(15).isoformat()
    assert row["no_driver"][0] == at(8, 45).isoformat()
    assert not set(row["starts"]) & set(row["no_driver"])
