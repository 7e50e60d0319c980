"""The desk-control API additions of issue 13 that are not reassign
(tests/services/test_reassign.py) or "any therapist" (tests/services/test_choosing.py): the
appointment list's client filter."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
import time_machine
from django.utils import timezone

from scheduling.services.appointments import create_appointment
from tests import factories

pytestmark = pytest.mark.django_db
DAY = date(2030, 5, 1)
NOW = datetime.fromisoformat("2030-04-20T00:00:00+00:00")


def at(hour: int) -> datetime:
    return timezone.make_aware(datetime.combine(DAY, time(hour)))


@time_machine.travel(NOW, tick=False)
def test_the_list_filters_by_client_within_the_callers_scope(desk, service, therapist):
    maria, jose = factories.ClientFactory(), factories.ClientFactory()
    other = factories.therapist(service)
    booked = {}
    for who, hour, by in ((maria, 9, therapist), (jose, 12, therapist), (maria, 15, other)):
        booked[(who.pk, hour)] = create_appointment(
            actor=desk,
            client_id=who.pk,
            service_id=service.pk,
            therapist_id=by.pk,
            start=at(hour),
        ).pk

    def ids(user, **query) -> list[int]:
        response = factories.api(user).get("/api/appointments/", query)
        assert response.status_code == 200, response.content
        return [a["id"] for a in response.json()["results"]]

    assert ids(desk, client=maria.pk) == [booked[(maria.pk, 9)], booked[(maria.pk, 15)]]
    assert ids(desk, client=jose.pk, date=DAY.isoformat()) == [booked[(jose.pk, 12)]]
    assert ids(therapist, client=maria.pk) == [booked[(maria.pk, 9)]]  # their own only
    assert ids(desk, client=10**9) == []
    for bad in ("abc", "0", "-1"):
        response = factories.api(desk).get("/api/appointments/", {"client": bad})
        assert response.status_code == 400 and "client" in response.json()["errors"]
