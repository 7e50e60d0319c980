"""Two desks booking overlapping standing series for one therapist at once, on real
PostgreSQL with real threads: exactly one series exists afterwards, whole (issue 14)."""

from __future__ import annotations

import pytest

from scheduling.errors import SeriesConflict
from scheduling.models import Appointment, Series, Transition
from scheduling.services.series import Repeat, book_series
from tests import factories
from tests.races import overlapping_appointments, run_rounds

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_desks_booking_overlapping_series_leave_one_whole(
    desk, therapist, service, tomorrow_at
):
    clients = [factories.ClientFactory() for _ in range(4)]
    # Every other week from the same day, and weekly: they meet on weeks 0, 2, 4, 6.
    repeats = [Repeat(every_weeks=2, count=4), Repeat(every_weeks=1, count=8)] * 2

    def booking(i: int):
        return lambda: book_series(
            actor=desk,
            client_id=clients[i].pk,
            service_id=service.pk,
            therapist_id=therapist.pk,
            start=tomorrow_at(10),
            repeat=repeats[i],
        )

    (outcomes,) = run_rounds([[booking(i) for i in range(4)]])
    won = [o for o in outcomes if not isinstance(o, Exception)]
    lost = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1 and all(isinstance(e, SeriesConflict) for e in lost), outcomes
    (series,) = Series.objects.all()
    occurrences = Appointment.objects.filter(series=series)
    assert occurrences.count() == won[0].series.count == len(won[0].appointments)
    assert Appointment.objects.count() == occurrences.count()  # nothing of the losers
    assert Transition.objects.count() == occurrences.count()
    assert overlapping_appointments() == []
