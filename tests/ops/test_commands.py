"""Management commands: create_staff, expire_overdue, seed_demo."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from io import StringIO
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scheduling.domain import Interval, local_date
from scheduling.management.commands import seed_demo
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Break,
    Client,
    DriverProfile,
    Payment,
    Service,
    TherapistProfile,
    Transition,
    User,
    WorkingHours,
)
from scheduling.phones import digits_only, normalize_phone
from scheduling.selectors.reports import build_report
from scheduling.services.appointments import act_on_appointment, create_appointment
from scheduling.services.availability import day_schedules
from scheduling.services.payments import balance_of
from tests import factories

STRONG = "Sampaguita-2026!"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def staff(*args: str) -> User:
    out = run("create_staff", *args)
    return User.objects.get(pk=int(out.strip()))


def staff_rows() -> dict[str, int]:
    """How many rows create_staff could have written, per table."""
    return {
        model.__name__: model.objects.count()
        for model in (User, TherapistProfile, DriverProfile, WorkingHours, Break)
    }


# --- create_staff ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_therapist_with_services_and_hours(service):
    other = factories.ServiceFactory(name="Shiatsu")
    factories.ServiceFactory(name="Thai massage")  # not given: must not be attached

    out = run(
        "create_staff",
        "--role=therapist",
        "--username=maricel",
        f"--password={STRONG}",
        "--first-name=Maricel",
        "--last-name=Dela Cruz",
        "--phone=0917 555 0111",
        f"--services={service.pk},{other.pk}",
        "--hours=10:00-19:00",
    )

    user = User.objects.get(username="maricel")
    assert out == f"{user.pk}\n"  # only the id, for scripts
    assert user.role == "therapist"
    assert user.check_password(STRONG)
    assert (user.first_name, user.last_name, user.phone) == (
        "Maricel",
        "Dela Cruz",
        "+639175550111",
    )
    assert not user.is_staff
    assert set(user.therapist_profile.services.all()) == {service, other}
    assert not DriverProfile.objects.filter(user=user).exists()
    hours = list(user.working_hours.order_by("weekday").values_list("weekday", "start", "end"))
    assert hours == [(day, time(10), time(19)) for day in range(7)]


@pytest.mark.django_db
def test_create_driver_gets_default_hours_and_motorcycle(settings):
    settings.SCHEDULING = {**settings.SCHEDULING, "DEFAULT_WORKING_HOURS": "07:30-16:45"}

    user = staff("--role=driver", "--username=ramon", f"--password={STRONG}")

    profile = user.driver_profile
    assert (profile.vehicle, profile.seats, profile.on_shift) == ("motorcycle", 1, False)
    assert not TherapistProfile.objects.filter(user=user).exists()
    assert set(user.working_hours.values_list("weekday", "start", "end")) == {
        (day, time(7, 30), time(16, 45)) for day in range(7)
    }


@pytest.mark.django_db
def test_create_driver_with_car_has_four_seats():
    user = staff("--role=driver", "--username=edgardo", f"--password={STRONG}", "--vehicle=car")
    assert (user.driver_profile.vehicle, user.driver_profile.seats) == ("car", 4)


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "is_staff"), [("receptionist", False), ("manager", True)])
def test_create_desk_roles_have_no_profile_or_hours(role, is_staff):
    user = staff(f"--role={role}", "--username=joy", f"--password={STRONG}")

    assert user.effective_role == role
    # Managers use the admin; the flag also lets them into Django's stock admin pages.
    assert user.is_staff is is_staff
    assert not TherapistProfile.objects.filter(user=user).exists()
    assert not DriverProfile.objects.filter(user=user).exists()
    assert not user.working_hours.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["ana", "ANA"])
def test_existing_username_fails_clearly_and_changes_nothing(username):
    original = staff("--role=therapist", "--username=ana", f"--password={STRONG}")
    before = staff_rows()

    with pytest.raises(CommandError, match=r"username '.*' is already taken") as failure:
        run("create_staff", "--role=driver", f"--username={username}", "--password=Other-pass-99")

    assert "nothing was changed" in str(failure.value)
    assert staff_rows() == before
    original.refresh_from_db()
    assert original.role == "therapist" and original.check_password(STRONG)


BAD_ARGUMENTS = [
    (["--role=therapist", "--hours=9-17"], "not in the form HH:MM-HH:MM"),
    (["--role=therapist", "--hours=08:00-08:00"], "end is not after the start"),
    (["--role=driver", "--hours=20:00-08:00"], "end is not after the start"),
    (["--role=therapist", "--hours=24:00-25:00"], "not a time of day"),
    (["--role=therapist", "--services=9999,9998"], "no service with id 9999, 9998"),
    (["--role=driver", "--services={service}"], "Only therapists perform services"),
    (["--role=therapist", "--vehicle=car"], "Only drivers have a vehicle"),
    (["--role=receptionist", "--hours=08:00-17:00"], "Only therapists and drivers"),
    (["--role=manager", "--phone=12345"], "not a valid phone number"),
    (["--role=manager", "--phone=call me"], "not a phone number"),
    (["--role=therapist", "--services=3;4"], "not a list of service ids"),
    (["--role=manager", "--username=ana cruz"], "Enter a valid username"),
    (["--role=manager", "--username=  "], "A username is required"),
    (["--role=janitor"], "invalid choice"),
    (["--role=driver", "--vehicle=bicycle"], "invalid choice"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("arguments", "message"), BAD_ARGUMENTS)
def test_bad_arguments_fail_and_write_nothing(service, arguments, message):
    arguments = [a.format(service=service.pk) for a in arguments]
    before = staff_rows()

    with pytest.raises(CommandError, match=message):
        run("create_staff", "--username=newbie", f"--password={STRONG}", *arguments)

    assert staff_rows() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "message"),
    [("", "password is required"), ("short", "too short"), ("12345678901", "entirely numeric")],
)
def test_weak_password_is_refused_by_django_validators(password, message):
    before = staff_rows()
    with pytest.raises(CommandError, match=message):
        run("create_staff", "--role=manager", "--username=boss", f"--password={password}")
    assert staff_rows() == before


@pytest.mark.django_db
def test_every_problem_is_reported_at_once():
    with pytest.raises(CommandError) as failure:
        run(
            "create_staff",
            "--role=therapist",
            "--username=ana",
            f"--password={STRONG}",
            "--hours=late",
            "--phone=12",
            "--vehicle=car",
        )
    message = str(failure.value)
    assert "HH:MM-HH:MM" in message
    assert "phone" in message
    assert "Only drivers have a vehicle" in message


def test_missing_required_arguments_fail():
    with pytest.raises(CommandError, match="--username"):
        run("create_staff", "--role=therapist", f"--password={STRONG}")


# --- expire_overdue -------------------------------------------------------------------------


@pytest.mark.django_db
def test_expire_overdue_expires_only_overdue_pending(
    desk, therapist, service, client_record, tomorrow_at
):
    def book(hour: int) -> Appointment:
        return create_appointment(
            actor=desk,
            client_id=client_record.pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=tomorrow_at(hour),
        )

    overdue, waiting, accepted = book(9), book(12), book(15)
    act_on_appointment(actor=therapist, appointment_id=accepted.pk, action="accept")
    past = timezone.now() - timedelta(minutes=1)
    # The deadline passing, as the sweep would see it an hour from now.
    Appointment.objects.filter(pk__in=[overdue.pk, accepted.pk]).update(response_deadline=past)

    out = run("expire_overdue")

    assert out.strip() == f"Expired 1 appointment(s): #{overdue.pk}"
    statuses = dict(Appointment.objects.values_list("pk", "status"))
    assert statuses == {
        overdue.pk: AppointmentStatus.EXPIRED,
        waiting.pk: AppointmentStatus.PENDING,
        accepted.pk: AppointmentStatus.CONFIRMED,
    }
    log = Transition.objects.get(appointment=overdue, action="expire")
    assert (log.from_status, log.to_status, log.actor) == ("pending", "expired", None)

    assert "expired 0" in run("expire_overdue")


# --- seed_demo ------------------------------------------------------------------------------


def row_counts() -> dict[str, int]:
    models = [*apps.get_app_config("scheduling").get_models(), *apps.get_models()]
    return {model._meta.label: model.objects.count() for model in dict.fromkeys(models)}


@pytest.mark.django_db
def test_seed_demo_twice_creates_nothing_the_second_time():
    first = run("seed_demo")
    after_first = row_counts()

    second = run("seed_demo")

    assert row_counts() == after_first
    assert "Appointments: 0 new" in second
    for output in (first, second):
        assert "Open http://127.0.0.1:8000/admin/" in output
        for spec in seed_demo.STAFF:
            assert f"{spec.role}" in output and spec.username in output
            assert spec.password in output


@pytest.mark.django_db
def test_seed_demo_logins_work_and_staff_are_set_up():
    run("seed_demo")

    for spec in seed_demo.STAFF:
        user = User.objects.get(username=spec.username)
        assert user.role == spec.role
        assert user.check_password(spec.password)
    therapists = User.objects.filter(role="therapist")
    assert therapists.count() == 6
    assert {u.first_name for u in therapists} >= {"Maricel", "Rodel"}
    for user in therapists:
        assert 0 < user.therapist_profile.services.count() < Service.objects.count()
        assert user.working_hours.filter(start=time(8), end=time(20)).count() == 7
    assert Break.objects.filter(start=time(12), end=time(13)).values("staff").distinct().count()
    vehicles = set(DriverProfile.objects.values_list("vehicle", "seats"))
    assert vehicles == {("motorcycle", 1), ("car", 4)}
    assert User.objects.get(username="manager").is_staff


@pytest.mark.django_db
def test_seed_demo_clients_are_valid_and_searchable():
    run("seed_demo")

    clients = list(Client.objects.all())
    assert len(clients) == seed_demo.CLIENT_COUNT
    for client in clients:
        assert normalize_phone(client.phone) == client.phone
        assert client.phone.startswith("+639")
        assert client.phone_digits == digits_only(client.phone)
        assert client.address.endswith("Metro Manila")
    sample = clients[0]
    assert sample in Client.objects.search(sample.phone[-7:])


@pytest.mark.django_db
def test_seed_demo_appointments_are_bookable_and_consistent():
    run("seed_demo")

    tomorrow = timezone.localdate() + timedelta(days=1)
    days = [tomorrow, tomorrow + timedelta(days=1)]
    every = list(Appointment.objects.select_related("therapist", "service", "created_by"))
    appointments = [a for a in every if local_date(a.start) >= tomorrow]
    assert appointments
    assert {local_date(a.start) for a in appointments} == set(days)
    assert {a.created_by.username for a in every} == {"desk"}
    assert {a.status for a in appointments} == {"pending", "confirmed"}
    assert_no_overlaps([a for a in every if a.status in ("completed", "no_show")])
    transport = [a for a in appointments if a.needs_transport]
    assert 0.2 <= len(transport) / len(appointments) <= 0.6
    for appointment in transport:
        assert sorted(appointment.trips.values_list("leg", flat=True)) == ["dropoff", "pickup"]
    for appointment in appointments:
        assert appointment.therapist.therapist_profile.services.filter(
            pk=appointment.service_id
        ).exists()
        schedule = day_schedules([appointment.therapist_id], local_date(appointment.start))
        session = Interval(appointment.start, appointment.end)
        assert schedule[appointment.therapist_id].why_not_working(session) is None
    assert_no_overlaps(appointments)


# The history is drawn from dice seeded by each day's date; on this one (the date the
# test failed at in a CI run, 2026-12-04 Manila), yesterday's dice gave no cash
# payment, so no hand-over was left pending until seed_demo made sure of one.
SEEDED_ON = datetime(2026, 12, 4, 3, 10, tzinfo=ZoneInfo("Asia/Manila"))


@pytest.mark.django_db
def test_seed_demo_has_a_settled_past_month():
    with time_machine.travel(SEEDED_ON, tick=True):
        seed_and_check_the_past_month()


def seed_and_check_the_past_month() -> None:
    run("seed_demo")

    today = timezone.localdate()
    past = list(Appointment.objects.filter(start__lt=timezone.now()).select_related("therapist"))
    days = {local_date(a.start) for a in past}
    assert min(days) == today - timedelta(days=28) and max(days) == today - timedelta(days=1)
    assert {a.status for a in past} == {"completed", "no_show", "cancelled"}
    for appointment in past:
        # The derived status is what the payments say, and the history reads in order.
        assert appointment.payment_status == balance_of(appointment).status, appointment.pk
        stamps = list(appointment.transitions.order_by("id").values_list("at", flat=True))
        assert stamps == sorted(stamps) and stamps[-1] < timezone.now(), appointment.pk
        schedule = day_schedules([appointment.therapist_id], local_date(appointment.start))
        session = Interval(appointment.start, appointment.end)
        assert schedule[appointment.therapist_id].why_not_working(session) is None
    payments = Payment.objects.all()
    assert {p.method for p in payments} == {"cash", "ewallet"}
    assert {"succeeded", "refunded", "partially_refunded", "pending"} <= {
        p.status for p in payments
    }
    # Still-pending cash is recent: on the desk's list and the therapist's hand-over.
    for held in payments.filter(status="pending"):
        assert held.appointment.start >= timezone.now() - timedelta(days=3)
    statuses = {a.payment_status for a in past if a.status == "completed"}
    assert {"paid", "unpaid"} <= statuses
    report = build_report(first_day=today - timedelta(days=28), last_day=today - timedelta(days=1))
    assert report.money.net > 0 and report.money.refunded > 0
    assert report.money.owing_count > 0 and report.money.collectors


def assert_no_overlaps(appointments: list[Appointment]) -> None:
    by_therapist: dict[int, list[Appointment]] = {}
    for appointment in appointments:
        by_therapist.setdefault(appointment.therapist_id, []).append(appointment)
    for booked in by_therapist.values():
        booked.sort(key=lambda a: a.start)
        for earlier, later in pairwise(booked):
            assert earlier.blocked_until <= later.start, (earlier.pk, later.pk)


@pytest.mark.django_db
def test_seed_demo_refuses_a_demo_username_with_another_role():
    factories.UserFactory(username="desk", role="therapist")
    before = row_counts()

    with pytest.raises(CommandError, match="'desk' exists as a therapist"):
        run("seed_demo")

    assert row_counts() == before
