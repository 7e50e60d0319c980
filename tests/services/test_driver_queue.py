"""The driver queue has one definition: what the dispatcher serves is what the stream shows."""

from __future__ import annotations

from datetime import datetime

import pytest

from scheduling.models import StreamEvent
from scheduling.realtime.events import DRIVER_QUEUE
from scheduling.services.dispatch import driver_queue
from scheduling.services.trips import set_shift
from tests import factories

pytestmark = pytest.mark.django_db
NOW = datetime.fromisoformat("2030-04-20T01:00:00+00:00")


def test_a_deactivated_driver_on_shift_leaves_the_queue_everywhere():
    dan, dora, ed = (factories.driver(username=name) for name in ("dan", "dora", "ed"))
    for n, driver in enumerate((dan, dora, ed)):
        set_shift(driver=driver, on_shift=True, now=NOW.replace(minute=n))
    dora.is_active = False
    dora.save(update_fields=["is_active"])

    set_shift(driver=ed, on_shift=False, now=NOW)  # any change sends the queue out again

    assert [p.user_id for p in driver_queue()] == [dan.pk]
    shown = StreamEvent.objects.filter(type=DRIVER_QUEUE).latest("seq").data
    assert [entry["driver"] for entry in shown["queue"]] == [dan.pk]
