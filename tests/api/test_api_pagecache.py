"""Cached appointment pages (scheduling/api/pagecache.py): served only while nothing they
show has changed.

These tests commit (transactional database): inside a test transaction the cache steps
aside, because a reader there can see its own uncommitted writes.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from scheduling.api.pagecache import cached_page, pages
from scheduling.models import Appointment
from scheduling.services.appointments import (
    act_on_appointment,
    create_appointment,
    reschedule_appointment,
    update_appointment_details,
)
from scheduling.services.payments import record_collection, verify_payment
from scheduling.services.trips import assign_trip, set_shift
from tests import factories
from tests.factories import api

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def booked(book, tomorrow_at):
    return book(tomorrow_at(10), needs_transport=True)


def day_url(appointment: Appointment) -> str:
    return f"/api/appointments/?date={appointment.start.astimezone().date()}"


def listed(user, url: str, **headers) -> tuple[list[dict], int]:
    """The page's rows and how many queries answering took."""
    with CaptureQueriesContext(connection) as queries:
        response = api(user).get(url, **headers)
    assert response.status_code == 200, response.content[:300]
    return response.json()["results"], len(queries)


def test_a_repeated_page_costs_one_query_and_says_the_same(desk, booked):
    url = day_url(booked)
    first, first_queries = listed(desk, url)
    again, again_queries = listed(desk, url)

    assert again == first
    assert first_queries == 3  # the counter, the page, its trips
    assert again_queries == 1  # the counter only


def test_with_a_token_the_counter_comes_with_the_user(desk, book, booked):
    """Token authentication reads the stream head in its own statement: a repeated page
    then costs that one statement, and a change still sends the next read to the
    database."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=desk).key}")
    url = day_url(booked)

    def read() -> tuple[list[int], int]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        return [row["id"] for row in response.json()["results"]], len(queries)

    assert read() == ([booked.pk], 3)  # user and head, the page, its trips
    assert read() == ([booked.pk], 1)
    other = book(booked.start + timedelta(hours=3))
    assert read() == ([booked.pk, other.pk], 3)


def test_a_page_one_process_built_serves_the_others(desk, booked):
    """After a change the first worker asked builds the page; the others (here: this
    process with its memory emptied) take it from the shared cache."""
    url = day_url(booked)
    built, _ = listed(desk, url)
    pages.clear()

    again, queries = listed(desk, url)

    assert again == built
    assert queries == 1  # the counter; the page came from the shared cache


@pytest.mark.redis
def test_a_failing_shared_cache_costs_a_database_read_not_an_error(desk, booked, settings, caplog):
    url = day_url(booked)
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1},
        }
    }
    with caplog.at_level(logging.WARNING, logger="scheduling.api.pagecache"):
        rows, _ = listed(desk, url)
        again, queries = listed(desk, url)  # from this process's memory

    assert [row["id"] for row in rows] == [booked.pk] and again == rows
    assert queries == 1
    assert "the shared cache failed" in caplog.text


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe closes


def test_no_cache_header_reads_the_database(desk, booked):
    url = day_url(booked)
    listed(desk, url)
    _, queries = listed(desk, url, HTTP_CACHE_CONTROL="no-cache")
    assert queries == 3


def other_booking(desk, therapist, service, booked, manager, driver):
    create_appointment(
        actor=desk,
        client_id=booked.client_id,
        service_id=service.pk,
        therapist_id=therapist.pk,
        start=booked.start + timedelta(hours=3),
    )


def accept(desk, therapist, service, booked, manager, driver):
    act_on_appointment(actor=therapist, appointment_id=booked.pk, action="accept")


def new_notes(desk, therapist, service, booked, manager, driver):
    update_appointment_details(
        actor=desk, appointment_id=booked.pk, changes={"notes": "Bring the hot stones"}
    )


def paid(desk, therapist, service, booked, manager, driver):
    for action in ("accept", "start"):
        act_on_appointment(actor=therapist, appointment_id=booked.pk, action=action)
    payment = record_collection(
        actor=therapist, appointment_id=booked.pk, method="cash", amount=booked.price
    )
    verify_payment(actor=manager, payment_id=payment.pk)


def moved(desk, therapist, service, booked, manager, driver):
    reschedule_appointment(
        actor=desk, appointment_id=booked.pk, start=booked.start + timedelta(hours=1)
    )


def driver_assigned(desk, therapist, service, booked, manager, driver):
    set_shift(driver=driver, on_shift=True)
    assign_trip(trip_id=booked.trips.order_by("window_start").first().pk, driver_id=driver.pk)


@pytest.mark.parametrize(
    "change",
    [other_booking, accept, new_notes, paid, moved, driver_assigned],
    ids=lambda f: f.__name__,
)
def test_every_kind_of_change_shows_on_the_next_read(
    desk, therapist, service, booked, manager, change
):
    url = day_url(booked)
    listed(desk, url)
    listed(desk, url)  # cached now
    change(desk, therapist, service, booked, manager, factories.driver())

    rows, queries = listed(desk, url)

    assert queries == 3, "a change must send the next read to the database"
    fresh, _ = listed(desk, url, HTTP_CACHE_CONTROL="no-cache")
    assert rows == fresh


def test_pages_are_kept_per_user(desk, therapist, booked):
    url = day_url(booked)
    desk_rows, _ = listed(desk, url)
    other_therapist = factories.therapist(factories.ServiceFactory())

    own, _ = listed(therapist, url)
    foreign, _ = listed(other_therapist, url)

    assert [r["id"] for r in desk_rows] == [r["id"] for r in own] == [booked.pk]
    assert foreign == []


def test_pages_are_kept_per_host_and_scheme(desk, settings, book, tomorrow_at):
    # A page's `next` link names the host and scheme it was asked through.
    settings.ALLOWED_HOSTS = ["testserver", "desk.example"]
    first = book(tomorrow_at(9))
    book(tomorrow_at(13))
    url = day_url(first) + "&page_size=1"

    def next_link(**headers) -> str:
        response = api(desk).get(url, **headers)
        assert response.status_code == 200, response.content[:300]
        return response.json()["next"]

    assert next_link().startswith("http://testserver/api/appointments/?")
    assert next_link(HTTP_HOST="desk.example").startswith("http://desk.example/")
    assert next_link(secure=True).startswith("https://testserver/")
    assert next_link().startswith("http://testserver/")  # each kept apart
    assert len(pages) == 3


def test_a_new_role_is_not_served_the_old_roles_page(desk, booked):
    url = day_url(booked)
    listed(desk, url)
    desk.role = "driver"  # the page a driver may see leaves out the desk's notes
    desk.save()

    rows, queries = listed(desk, url)

    assert queries > 1
    assert rows == []  # no trip of theirs


def test_pages_are_not_kept_past_their_age(desk, booked, settings):
    settings.API_PAGE_CACHE = {**settings.API_PAGE_CACHE, "MAX_AGE_SECONDS": 0}
    url = day_url(booked)
    listed(desk, url)
    _, queries = listed(desk, url)
    assert queries == 3


def test_size_zero_turns_it_off(desk, booked, settings):
    settings.API_PAGE_CACHE = {**settings.API_PAGE_CACHE, "SIZE": 0}
    url = day_url(booked)
    listed(desk, url)
    _, queries = listed(desk, url)
    assert queries == 2  # no counter read either
    assert len(pages) == 0


def test_the_cache_holds_at_most_its_size(desk, booked, settings):
    settings.API_PAGE_CACHE = {**settings.API_PAGE_CACHE, "SIZE": 3}
    for days in range(6):
        listed(desk, f"/api/appointments/?date={booked.start.date() + timedelta(days=days)}")
    assert len(pages) == 3


def test_a_query_with_parameters_the_page_ignores_is_answered_not_kept(desk, booked):
    rows, _ = listed(desk, day_url(booked) + "&utm_source=newsletter")
    assert [row["id"] for row in rows] == [booked.pk]
    assert len(pages) == 0


def test_a_refused_query_is_not_cached(desk, booked):
    response = api(desk).get("/api/appointments/?date=2026-02-30")
    assert response.status_code == 400
    assert len(pages) == 0


def test_a_change_committed_while_a_page_is_built_is_not_hidden(
    desk, therapist, service, client_record, booked
):
    """The counter is read before the page: a booking that commits after the page read
    the database leaves the page tagged older than the counter, so it is not served."""
    request = Request(APIRequestFactory().get(day_url(booked)))
    request.user, request.auth = desk, None  # signed in, not by token: the head is read apart

    def build_then_book() -> list[int]:
        page = list(Appointment.objects.values_list("pk", flat=True))
        other_booking(desk, therapist, service, booked, None, None)  # commits
        return page

    params = frozenset({"date"})
    built = cached_page(request, build_then_book, params=params)
    answered = cached_page(
        request, lambda: list(Appointment.objects.values_list("pk", flat=True)), params=params
    )

    assert built == [booked.pk]
    assert len(answered) == 2


@pytest.mark.postgres
def test_no_reader_sees_a_page_older_than_a_commit_it_follows(
    desk, service, client_record, tomorrow_at
):
    """Real threads: readers fill the cache while a writer books. After each booking
    commits, a fresh reader must see it, whatever pages the others built meanwhile."""
    therapists = [factories.therapist(service) for _ in range(12)]
    day = tomorrow_at(9)
    url = f"/api/appointments/?date={day.date()}"
    stop = threading.Event()
    failures: list[str] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                assert api(desk).get(url).status_code == 200
        except Exception as exc:  # reported below: a thread's assertion is otherwise lost
            failures.append(repr(exc))
        finally:
            connection.close()

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for n, therapist in enumerate(therapists):
            booked = create_appointment(
                actor=desk,
                client_id=client_record.pk,
                service_id=service.pk,
                therapist_id=therapist.pk,
                start=day,
            )
            seen = [row["id"] for row in api(desk).get(url).json()["results"]]
            if booked.pk not in seen:
                failures.append(f"booking {n} ({booked.pk}) missing from {seen}")
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert failures == []
