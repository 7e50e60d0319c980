"""What the API tests share: the role matrix's world (tests/api/test_api_matrix.py and
tests/api/test_api_schema.py run against the same one) and the rate limit raised for the
tests that book many times in seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import transaction

from tests.api.matrix import World, build_world


@pytest.fixture
def generous_rate_limit(settings):
    """Many bookings by one user in seconds: not what the rate limit is about."""
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "appointment_create": (10_000, 60)}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """The role matrix's world (tests/api/matrix.py: every role, own and foreign objects,
    appointments with trips, stream events), built once per module inside a transaction
    that each test's own (a savepoint) nests in and that is rolled back at the end:
    building it takes far longer than a case. A module that needs another world defines
    its own `world`."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)
