"""Two desks booking overlapping couples visits that share a therapist, at once, on real
PostgreSQL with real threads: exactly one visit exists afterwards, whole, with its trips;
no deadlock and no error other than the visit's conflict (issue 14 item 1)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduling.errors import VisitConflict
from scheduling.models import Appointment, Transition, Trip, Visit
from scheduling.services.visits import SessionAsk, book_visit
from tests import factories
from tests.races import overlapping_appointments, run_rounds

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 4


def test_two_desks_booking_overlapping_couples_visits_leave_one_whole(
    desk, therapist, service, tomorrow_at
):
    # Ana is in both visits of each round, with a different partner in each; the two
    # visits start 30 minutes apart, so they overlap on Ana. Four cars: never short.
    partners = [factories.therapist(service, username=f"partner{i}") for i in range(2)]
    for i in range(4):
        factories.driver(vehicle="car", seats=2, username=f"car{i}")
    clients = [factories.ClientFactory() for _ in range(2)]
    other_desk = factories.UserFactory(role="receptionist", username="desk2")

    def booking(round_: int, i: int):
        # Each round on its own day, so rounds do not meet each other.
        start = tomorrow_at(10) + timedelta(days=round_, minutes=30 * i)
        # One desk names Ana first, the other second: the locks are taken in id order.
        asks = [SessionAsk(service.pk, therapist.pk), SessionAsk(service.pk, partners[i].pk)]
        return lambda: book_visit(
            actor=(desk, other_desk)[i],
            client_id=clients[i].pk,
            start=start,
            sessions=asks if i == 0 else asks[::-1],
            needs_transport=True,
        )

    rounds = run_rounds([[booking(r, i) for i in range(2)] for r in range(ROUNDS)])

    for outcomes in rounds:
        won = [o for o in outcomes if isinstance(o, Visit)]
        lost = [o for o in outcomes if not isinstance(o, Visit)]
        assert len(won) == 1, outcomes
        assert len(lost) == 1 and isinstance(lost[0], VisitConflict), outcomes
        assert [f.reason for f in lost[0].failures] == ["therapist_busy"]
        (visit,) = won
        sessions = list(visit.sessions.all())
        assert len(sessions) == 2 and {s.status for s in sessions} == {"pending"}
        assert sorted(visit.trips.values_list("leg", "passengers")) == [
            ("dropoff", 2),
            ("pickup", 2),
        ]
    assert Visit.objects.count() == ROUNDS
    # Nothing of the losers: every row belongs to a winner.
    assert (
        Appointment.objects.count() == 2 * ROUNDS == Appointment.objects.exclude(visit=None).count()
    )
    assert Trip.objects.count() == 2 * ROUNDS
    assert Transition.objects.filter(appointment__isnull=False).count() == 2 * ROUNDS
    assert overlapping_appointments() == []
