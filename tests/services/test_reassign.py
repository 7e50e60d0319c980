"""Reassigning an appointment to another therapist (issue 13 item 1).

Every call passes `now=` (or runs under time_machine), a fixed instant well before the
day booked."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from html import unescape

import pytest
import time_machine
from django.db.models import Q
from django.utils import timezone

from scheduling.errors import Conflict, InvalidTransition, NotFound, NotPermitted, ValidationFailed
from scheduling.models import (
    Appointment,
    DriverProfile,
    Notification,
    StreamEvent,
    TimeOff,
    Transition,
    Trip,
)
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.reassign import APPOINTMENT_REMOVED, reassign
from tests import factories

pytestmark = pytest.mark.django_db
DAY = date(2030, 5, 1)
NOW = datetime.fromisoformat("2030-04-20T00:00:00+00:00")
# What a therapist's copy of an appointment must never carry once it is not theirs.
CLIENT_FIELDS = {"client", "address", "notes"}


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


@pytest.fixture
def ana_and_bea(service):
    ana = factories.therapist(service, username="ana", first_name="Ana", phone="+639170000001")
    bea = factories.therapist(service, username="bea", first_name="Bea", phone="+639170000002")
    return ana, bea


@pytest.fixture
def booked(desk, service, client_record, ana_and_bea):
    ana, _ = ana_and_bea
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=ana.pk,
        start=at(10),
        now=NOW,
    )
    act_on_appointment(actor=ana, appointment_id=appointment.pk, action="accept", now=NOW)
    return appointment


def move(desk, appointment, therapist, **fields):
    return reassign(
        actor=desk,
        appointment_id=appointment.pk,
        therapist_id=therapist.pk,
        reason=fields.pop("reason", "Ana called in sick"),
        now=fields.pop("now", NOW + timedelta(hours=1)),
        **fields,
    )


def test_reassign_at_the_same_time(desk, booked, ana_and_bea):
    ana, bea = ana_and_bea
    later = NOW + timedelta(hours=1)
    moved = move(desk, booked, bea)
    assert moved.therapist == bea and moved.start == at(10) and moved.status == "pending"
    assert moved.response_deadline > later  # a fresh deadline, from the reassign
    step = Transition.objects.filter(appointment=booked).latest("id")
    assert (step.action, step.from_status, step.to_status) == ("reassign", "confirmed", "pending")
    assert step.actor == desk and step.reason == "Ana called in sick"
    kinds = {(n.kind, n.user_id, n.client_id) for n in Notification.objects.filter(cause_of(step))}
    assert kinds == {
        ("appointment_reassigned", bea.pk, None),
        ("appointment_unassigned", ana.pk, None),
    }
    gone = Notification.objects.get(kind="appointment_unassigned")
    assert "Maria" not in gone.body and "10:00" in gone.body


def cause_of(step):
    return Q(key__contains=f":t{step.pk}:")


def test_a_new_time_tells_the_client(desk, booked, ana_and_bea, client_record):
    _, bea = ana_and_bea
    moved = move(desk, booked, bea, start=at(14))
    assert (moved.start, moved.end) == (at(14), at(15))
    told = Notification.objects.get(kind="appointment_moved_therapist_changed")
    assert told.client == client_record and "Bea" in told.body and "14:00" in told.body


def test_the_same_therapist_at_a_new_time_is_allowed_and_at_the_same_time_is_not(
    desk, booked, ana_and_bea
):
    ana, _ = ana_and_bea
    with pytest.raises(ValidationFailed) as caught:
        move(desk, booked, ana)
    assert "therapist" in caught.value.errors
    assert move(desk, booked, ana, start=at(15)).start == at(15)


def test_the_old_therapist_gets_a_removed_event_with_no_client_fields(desk, booked, ana_and_bea):
    ana, bea = ana_and_bea
    before = StreamEvent.objects.order_by("-seq").first().seq
    move(desk, booked, bea)
    after = list(StreamEvent.objects.filter(seq__gt=before).order_by("seq"))
    removed = [e for e in after if e.type == APPOINTMENT_REMOVED]
    assert len(removed) == 1 and removed[0].data == {"id": booked.pk}
    # Every later event Ana receives says nothing of the client.
    for event in after:
        if event.recipients.filter(user=ana).exists():
            assert not CLIENT_FIELDS & set(event.data), event.data
    updated = next(e for e in after if e.type == "appointment.updated")
    assert set(updated.recipients.values_list("user_id", flat=True)) == {bea.pk}


@time_machine.travel(NOW + timedelta(hours=1), tick=False)
def test_the_old_therapist_stops_seeing_it_on_the_api(desk, booked, ana_and_bea):
    ana, bea = ana_and_bea
    head = factories.api(ana).get("/api/events/").json()["last_seq"]
    response = factories.api(desk).post(
        f"/api/appointments/{booked.pk}/reassign/",
        {"therapist": bea.pk, "reason": "Ana called in sick"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["therapist"] == bea.pk and body["status"] == "pending"
    assert factories.api(ana).get(f"/api/appointments/{booked.pk}/").status_code == 404
    assert booked.pk not in [
        a["id"] for a in factories.api(ana).get("/api/appointments/").json()["results"]
    ]
    assert factories.api(bea).get(f"/api/appointments/{booked.pk}/").status_code == 200
    events = factories.api(ana).get("/api/events/", {"after": head}).json()["events"]
    assert [e["type"] for e in events] == [APPOINTMENT_REMOVED]
    assert events[0]["data"] == {"id": booked.pk}
    # Further changes reach Bea only.
    act_on_appointment(actor=bea, appointment_id=booked.pk, action="accept")
    assert factories.api(ana).get("/api/events/", {"after": head}).json()["events"] == events


def test_trips_are_planned_anew(desk, service, client_record, ana_and_bea):
    ana, bea = ana_and_bea
    factories.driver()
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=ana.pk,
        start=at(10),
        needs_transport=True,
        now=NOW,
    )
    old_trips = set(appointment.trips.values_list("pk", flat=True))
    move(desk, appointment, bea, start=at(13))
    assert set(Trip.objects.filter(pk__in=old_trips).values_list("status", flat=True)) == {
        "cancelled"
    }
    fresh = appointment.trips.exclude(pk__in=old_trips).order_by("window_start")
    assert [t.leg for t in fresh] == ["dropoff", "pickup"]
    assert fresh[0].window_end == at(13) and {t.status for t in fresh} == {"queued"}


def test_refusals(desk, booked, ana_and_bea, service, client_record):
    ana, bea = ana_and_bea
    with pytest.raises(NotPermitted):
        move(ana, booked, bea)
    with pytest.raises(NotFound):
        reassign(actor=desk, appointment_id=10**9, therapist_id=bea.pk, reason="x", now=NOW)
    with pytest.raises(ValidationFailed) as caught:
        reassign(actor=desk, appointment_id=booked.pk, therapist_id=10**9, reason="x", now=NOW)
    assert "therapist" in caught.value.errors
    stranger = factories.therapist(factories.ServiceFactory(name="Reflexology"))
    with pytest.raises(ValidationFailed, match="does not perform"):
        move(desk, booked, stranger)
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=bea.pk,
        start=at(11),
        now=NOW,
    )
    with pytest.raises(Conflict) as busy:
        move(desk, booked, bea)
    assert busy.value.reason == "therapist_busy"
    TimeOff.objects.create(staff=bea, start=at(16), end=at(20))
    with pytest.raises(Conflict) as off:
        move(desk, booked, bea, start=at(17))
    assert off.value.reason == "not_working"
    with pytest.raises(ValidationFailed):
        move(desk, booked, bea, start=at(17, 5))
    act_on_appointment(actor=desk, appointment_id=booked.pk, action="cancel", reason="x", now=NOW)
    with pytest.raises(InvalidTransition):
        move(desk, booked, bea, start=at(7))
    booked.refresh_from_db()
    assert booked.therapist == ana  # nothing half-written


def test_no_driver_is_refused_and_nothing_moves(desk, service, client_record, ana_and_bea):
    ana, bea = ana_and_bea
    driver = factories.UserFactory(role="driver")
    DriverProfile.objects.create(user=driver)
    factories.add_hours(driver, time(8), time(12))
    appointment = create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=ana.pk,
        start=at(10),
        needs_transport=True,
        now=NOW,
    )
    with pytest.raises(Conflict) as caught:
        move(desk, appointment, bea, start=at(16))
    assert caught.value.reason == "no_driver"
    appointment.refresh_from_db()
    assert (appointment.therapist, appointment.start) == (ana, at(10))
    assert appointment.trips.filter(status="queued").count() == 2


# --- the API --------------------------------------------------------------------------------


def post(user, pk, body):
    response = factories.api(user).post(f"/api/appointments/{pk}/reassign/", body, format="json")
    return response.status_code, json.loads(response.content)


@time_machine.travel(NOW + timedelta(hours=1), tick=False)
def test_api_refusals(desk, manager, booked, ana_and_bea):
    ana, bea = ana_and_bea
    body = {"therapist": bea.pk, "reason": "sick"}
    driver = factories.driver()
    assert post(ana, booked.pk, body)[0] == 403
    assert post(driver, booked.pk, body)[0] == 403
    assert post(ana, 10**9, body)[0] == 403  # the role first, whatever the id
    assert post(desk, 10**9, body)[0] == 404
    status, problem = post(desk, booked.pk, {"therapist": bea.pk})
    assert status == 400 and "reason" in problem["errors"]
    status, problem = post(desk, booked.pk, {"therapist": "x", "reason": "r"})
    assert status == 400 and "therapist" in problem["errors"]
    status, problem = post(desk, booked.pk, {**body, "start": "2030-05-01T10:00:00"})
    assert status == 400 and "start" in problem["errors"]
    status, problem = post(desk, booked.pk, {**body, "therapist": 10**9})
    assert status == 400 and "therapist" in problem["errors"]
    status, moved = post(manager, booked.pk, {**body, "start": at(13).isoformat()})
    assert status == 200 and moved["start"] == at(13).isoformat()
    status, _ = post(desk, booked.pk, {"therapist": ana.pk, "reason": "back"})
    assert status == 200  # Ana is free at 13:00 again
    Appointment.objects.filter(pk=booked.pk).update(status="completed")
    status, refused = post(desk, booked.pk, body)
    assert status == 409 and refused["code"] == "invalid_transition"


# --- the desk's page ------------------------------------------------------------------------


@time_machine.travel(NOW + timedelta(hours=1), tick=False)
def test_the_page_offers_the_therapists_free_then_best_first(
    client, desk, booked, ana_and_bea, service, client_record
):
    _, bea = ana_and_bea
    cora = factories.therapist(service, first_name="Cora")
    dina = factories.therapist(service, first_name="Dina")
    # Bea has more minutes that week than Cora; Dina is busy at 10:00.
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=bea.pk,
        start=at(15),
        now=NOW,
    )
    create_appointment(
        actor=desk,
        client_id=client_record.pk,
        service_id=service.pk,
        therapist_id=dina.pk,
        start=at(10, 30),
        now=NOW,
    )
    client.force_login(desk)
    page = client.get(f"/desk/appointments/{booked.pk}/").content.decode()
    assert f"/desk/appointments/{booked.pk}/reassign/choices/" in page
    form = client.get(f"/desk/appointments/{booked.pk}/reassign/choices/").content.decode()
    offered = re.findall(r'<option value="(\d+)">', form)
    assert offered == [str(cora.pk), str(bea.pk)]  # not Ana (hers), not Dina (busy)


@time_machine.travel(NOW + timedelta(hours=1), tick=False)
def test_reassigning_from_the_page(client, desk, booked, ana_and_bea):
    ana, bea = ana_and_bea

    def on_the_day_of(therapist) -> bool:
        client.force_login(therapist)
        with time_machine.travel(at(7), tick=False):
            return "Maria Santos" in client.get("/therapist/").content.decode()

    assert on_the_day_of(ana) and not on_the_day_of(bea)
    client.force_login(desk)
    url = f"/desk/appointments/{booked.pk}/reassign/"
    refused = client.post(url, {"reassign-therapist": bea.pk, "reassign-reason": ""})
    assert refused.status_code == 200
    assert "Say why, for the appointment" in unescape(refused.content.decode())
    response = client.post(url, {"reassign-therapist": bea.pk, "reassign-reason": "Ana is sick"})
    assert response.status_code == 302 and response.url == f"/desk/appointments/{booked.pk}/"
    booked.refresh_from_db()
    assert booked.therapist == bea and booked.status == "pending"
    # Ana's day no longer lists it; Bea's does.
    assert not on_the_day_of(ana) and on_the_day_of(bea)


@time_machine.travel(NOW + timedelta(hours=1), tick=False)
def test_a_refused_reassign_is_said_on_the_page(client, desk, booked, ana_and_bea):
    _, bea = ana_and_bea
    TimeOff.objects.create(staff=bea, start=at(9), end=at(12))
    client.force_login(desk)
    response = client.post(
        f"/desk/appointments/{booked.pk}/reassign/",
        {"reassign-therapist": bea.pk, "reassign-reason": "Ana is sick"},
    )
    assert response.status_code == 200
    assert "during time off" in unescape(response.content.decode())
    booked.refresh_from_db()
    assert booked.therapist_id != bea.pk
