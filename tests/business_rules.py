"""The state machines' business rules written out as literals (docs/design.md), apart from
`scheduling.states`: tests/domain/test_states.py compares the table with them, and
tests/services/test_transitions.py drives the services through every (action, status,
role) with them.
"""

from __future__ import annotations

from scheduling.states import AppointmentStatus, TripStatus

DESK = {"receptionist", "manager"}
ROLES = ("receptionist", "therapist", "driver", "manager", "system")

# What the business wants: action -> (from statuses, to status, roles). NEW ("") is the
# "from" of something being created.
APPOINTMENT_EXPECTED: dict[str, tuple[set[str], str, set[str]]] = {
    "create": ({""}, "pending", DESK),
    "accept": ({"pending"}, "confirmed", {"therapist"}),
    "reject": ({"pending"}, "rejected", {"therapist"}),
    "start": ({"confirmed"}, "in_progress", {"therapist"}),
    "complete": ({"in_progress"}, "completed", {"therapist"}),
    "cancel": ({"pending", "confirmed"}, "cancelled", DESK),
    "no_show": ({"confirmed"}, "no_show", {"therapist", *DESK}),
    "expire": ({"pending"}, "expired", {"system"}),
    "reschedule": ({"pending", "confirmed"}, "pending", DESK),
    "reassign": ({"pending", "confirmed"}, "pending", DESK),
}
TRIP_EXPECTED: dict[str, tuple[set[str], str, set[str]]] = {
    # The dispatcher, or the desk by hand (issue 13); the desk also takes it back.
    "assign": ({"queued"}, "assigned", {"system", *DESK}),
    "unassign": ({"assigned"}, "queued", DESK),
    "depart": ({"assigned"}, "en_route", {"driver"}),
    "arrive": ({"en_route"}, "arrived", {"driver"}),
    "complete": ({"arrived"}, "done", {"driver"}),
    "cancel": ({"queued", "assigned", "en_route", "arrived"}, "cancelled", {*DESK, "system"}),
}
APPOINTMENT_STATUSES = [s.value for s in AppointmentStatus]
TRIP_STATUSES = [s.value for s in TripStatus]
