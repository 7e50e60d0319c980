"""The staff queries every "which therapists" question starts from."""

from __future__ import annotations

from scheduling.models import User
from tests import factories


def test_therapists_are_the_active_ones_and_performing_narrows_to_a_service(service):
    other = factories.ServiceFactory(name="Shiatsu")
    swedish = factories.therapist(service, username="ana")
    shiatsu = factories.therapist(other, username="bea")
    gone = factories.therapist(service, username="cy")
    gone.is_active = False
    gone.save()
    factories.UserFactory(role="receptionist", username="desk")
    factories.driver(username="dan")

    assert set(User.objects.therapists()) == {swedish, shiatsu}
    assert list(User.objects.therapists(performing=service)) == [swedish]
    assert list(User.objects.therapists(performing=other.pk)) == [shiatsu]
