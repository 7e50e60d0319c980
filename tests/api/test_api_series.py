"""POST /api/appointments/ with repeat, and cancel/reschedule with a scope (issue 14)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from scheduling.models import Appointment, Series, Transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    def as_user(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return as_user


@pytest.fixture
def weekly(client_record, service, therapist, tomorrow_at):
    return {
        "client": client_record.pk,
        "service": service.pk,
        "therapist": therapist.pk,
        "start": tomorrow_at(10).isoformat(),
        "repeat": {"every_weeks": 1, "count": 4},
    }


def test_a_repeat_books_the_series_and_answers_with_its_first(api, desk, weekly, tomorrow_at):
    response = api(desk).post("/api/appointments/", weekly, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    series = Series.objects.get()
    ids = list(Appointment.objects.order_by("start").values_list("pk", flat=True))
    assert body["id"] == ids[0] and body["start"] == tomorrow_at(10).isoformat()
    assert body["series"] == {"id": series.pk, "appointments": ids}
    assert "skipped" not in body
    # Every other representation carries the series' id.
    detail = api(desk).get(f"/api/appointments/{ids[2]}/").json()
    assert detail["series"] == series.pk and detail["response_deadline"] is None
    listed = api(desk).get("/api/appointments/").json()["results"]
    assert [a["series"] for a in listed] == [series.pk] * 4


def test_a_single_booking_has_no_series(api, desk, weekly):
    single = {k: v for k, v in weekly.items() if k != "repeat"}
    body = api(desk).post("/api/appointments/", single, format="json").json()
    assert body["series"] is None


def test_one_clash_is_a_409_naming_it_and_nothing_is_written(api, desk, weekly, book, tomorrow_at):
    book(tomorrow_at(10) + timedelta(weeks=2))
    before = (Appointment.objects.count(), Transition.objects.count())
    response = api(desk).post("/api/appointments/", weekly, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["reason"] == "series_conflict"
    assert [(f["start"], f["reason"]) for f in body["failures"]] == [
        ((tomorrow_at(10) + timedelta(weeks=2)).isoformat(), "therapist_busy")
    ]
    assert (Appointment.objects.count(), Transition.objects.count()) == before
    assert not Series.objects.exists()


def test_skip_conflicts_books_the_rest_and_lists_the_skipped(api, desk, weekly, book, tomorrow_at):
    book(tomorrow_at(10) + timedelta(weeks=2))
    response = api(desk).post(
        "/api/appointments/", {**weekly, "skip_conflicts": True}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert len(body["series"]["appointments"]) == 3
    assert [s["start"] for s in body["skipped"]] == [
        (tomorrow_at(10) + timedelta(weeks=2)).isoformat()
    ]
    assert body["skipped"][0]["reason"] == "therapist_busy" and body["skipped"][0]["detail"]


def test_until_books_up_to_the_day(api, desk, weekly, tomorrow_at):
    last = (tomorrow_at(10) + timedelta(weeks=4)).date()
    repeat = {"every_weeks": 2, "until": last.isoformat()}
    body = api(desk).post("/api/appointments/", {**weekly, "repeat": repeat}, format="json").json()
    assert len(body["series"]["appointments"]) == 3


def test_an_idempotent_repeat_books_once(api, desk, weekly):
    client = api(desk)
    first = client.post("/api/appointments/", weekly, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client.post("/api/appointments/", weekly, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Series.objects.count() == 1 and Appointment.objects.count() == 4


@pytest.mark.parametrize(
    "repeat, field",
    [
        ({"every_weeks": 3, "count": 4}, "every_weeks"),
        ({"every_weeks": "weekly", "count": 4}, "every_weeks"),
        ({"every_weeks": True, "count": 4}, "every_weeks"),
        ({"count": 4}, "every_weeks"),
        ({"every_weeks": 1, "count": 1}, "count"),
        ({"every_weeks": 1, "count": 27}, "count"),
        ({"every_weeks": 1, "count": "many"}, "count"),
        ({"every_weeks": 1, "count": 2**70}, "count"),
        ({"every_weeks": 1}, "count"),
        ({"every_weeks": 1, "count": 3, "until": "2027-01-01"}, "count"),
        ({"every_weeks": 1, "until": "someday"}, "until"),
        ({"every_weeks": 1, "until": "99999-01-01"}, "until"),
        ({"every_weeks": 1, "until": "1999-01-01"}, "until"),
        ({"every_weeks": 1, "until": "2999-12-31"}, "until"),
        ([1, 2], "non_field_errors"),
        ("weekly", "non_field_errors"),
    ],
)
def test_bad_repeat_input_is_a_400_naming_the_field(api, desk, weekly, repeat, field):
    response = api(desk).post("/api/appointments/", {**weekly, "repeat": repeat}, format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert all(isinstance(m, str) for messages in errors.values() for m in messages), errors
    nested = [m.split(":")[0] for m in errors.get("repeat", [])]
    assert field in errors or field in nested or (field == "non_field_errors" and nested)
    assert not Appointment.objects.exists() and not Series.objects.exists()


def test_skip_conflicts_must_be_a_boolean(api, desk, weekly):
    response = api(desk).post(
        "/api/appointments/", {**weekly, "skip_conflicts": "perhaps"}, format="json"
    )
    assert response.status_code == 400 and "skip_conflicts" in response.json()["errors"]


def test_cancel_with_scope_following(api, desk, weekly):
    ids = api(desk).post("/api/appointments/", weekly, format="json").json()["series"]
    third = ids["appointments"][2]
    response = api(desk).post(
        f"/api/appointments/{third}/cancel/", {"scope": "following"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    statuses = list(Appointment.objects.order_by("start").values_list("status", flat=True))
    assert statuses == ["pending", "pending", "cancelled", "cancelled"]


def test_a_bad_scope_is_a_400(api, desk, weekly):
    ids = api(desk).post("/api/appointments/", weekly, format="json").json()["series"]
    first = ids["appointments"][0]
    for scope in ("some", 7, None, ["all"]):
        response = api(desk).post(
            f"/api/appointments/{first}/cancel/", {"scope": scope}, format="json"
        )
        assert response.status_code == 400 and "scope" in response.json()["errors"], scope


def test_reschedule_all_and_its_409(api, desk, weekly, book, tomorrow_at):
    series = api(desk).post("/api/appointments/", weekly, format="json").json()["series"]
    second = series["appointments"][1]
    book(tomorrow_at(15) + timedelta(weeks=3))
    new = (tomorrow_at(15) + timedelta(weeks=1)).isoformat()
    refused = api(desk).post(
        f"/api/appointments/{second}/reschedule/", {"start": new, "scope": "all"}, format="json"
    )
    assert refused.status_code == 409
    assert [f["appointment"] for f in refused.json()["failures"]] == [series["appointments"][3]]
    moved = api(desk).post(
        f"/api/appointments/{second}/reschedule/",
        {"start": (tomorrow_at(12) + timedelta(weeks=1)).isoformat(), "scope": "all"},
        format="json",
    )
    assert moved.status_code == 200, moved.json()
    assert moved.json()["start"] == (tomorrow_at(12) + timedelta(weeks=1)).isoformat()
    hours = {a.start.hour for a in Appointment.objects.filter(series_id=series["id"])}
    assert len(hours) == 1


def test_a_therapist_accepts_the_series_once(api, weekly, therapist):
    from tests.factories import UserFactory

    desk = UserFactory(role="receptionist", username="desk2")
    series = api(desk).post("/api/appointments/", weekly, format="json").json()["series"]
    first = series["appointments"][0]
    response = api(therapist).post(f"/api/appointments/{first}/accept/", {}, format="json")
    assert response.status_code == 200
    assert set(Appointment.objects.values_list("status", flat=True)) == {"confirmed"}


@pytest.mark.parametrize("role, code", [("therapist", 403), ("driver", 403), ("manager", 201)])
def test_a_repeat_by_role(api, weekly, role, code):
    from tests.factories import UserFactory

    user = UserFactory(role=role, username=f"{role}-x")
    response = api(user).post("/api/appointments/", weekly, format="json")
    assert response.status_code == code
    assert Series.objects.count() == (1 if code == 201 else 0)


def test_a_repeat_anonymously_is_401(weekly):
    response = APIClient().post("/api/appointments/", weekly, format="json")
    assert response.status_code == 401 and not Series.objects.exists()


@pytest.mark.parametrize("scope", ["following", "all"])
def test_a_therapist_cannot_cancel_a_series(api, weekly, desk, therapist, scope):
    ids = api(desk).post("/api/appointments/", weekly, format="json").json()["series"]
    response = api(therapist).post(
        f"/api/appointments/{ids['appointments'][0]}/cancel/", {"scope": scope}, format="json"
    )
    assert response.status_code == 403
    assert not Appointment.objects.filter(status="cancelled").exists()
