"""The state machines as data: `scheduling.states`, without the database.

The business rules are written out as literals (tests/business_rules.py, from
docs/design.md), so a wrong table fails here instead of being compared with itself;
tests/services/test_transitions.py drives the services with the same literals.
"""

from __future__ import annotations

from collections import deque

import pytest

from scheduling import states
from scheduling.errors import InvalidTransition, NotPermitted
from scheduling.states import (
    APPOINTMENT_RULES,
    NEW,
    SYSTEM,
    THERAPIST,
    TRIP_RULES,
    AppointmentStatus,
    Rule,
    TripStatus,
)
from tests.business_rules import (
    APPOINTMENT_EXPECTED,
    APPOINTMENT_STATUSES,
    DESK,
    ROLES,
    TRIP_EXPECTED,
    TRIP_STATUSES,
)

# Acting for staff (issue 13): the actions the desk may take on a therapist's or a
# driver's behalf, confirmed by phone. Nobody else acts for anyone.
APPOINTMENT_PROXIES = {
    "accept": DESK,
    "reject": DESK,
    "start": DESK,
    "complete": DESK,
    "no_show": DESK,
}
TRIP_PROXIES = {"depart": DESK, "arrive": DESK, "complete": DESK}
APPOINTMENT_TERMINAL = {"completed", "rejected", "cancelled", "expired", "no_show"}
TRIP_TERMINAL = {"done", "cancelled"}

MACHINES = {
    "appointment": (APPOINTMENT_RULES, APPOINTMENT_EXPECTED, APPOINTMENT_STATUSES),
    "trip": (TRIP_RULES, TRIP_EXPECTED, TRIP_STATUSES),
}


def expected_triples(expected: dict[str, tuple[set[str], str, set[str]]]) -> set[tuple]:
    return {
        (action, source, target, role)
        for action, (sources, target, roles) in expected.items()
        for source in sources
        for role in roles
    }


def cross_product(noun: str) -> list[tuple[str, str, str, str]]:
    """Every (noun, action, from, role), the creation pseudo-status included."""
    rules, _, statuses = MACHINES[noun]
    return [
        (noun, action, current, role)
        for action in rules
        for current in [NEW, *statuses]
        for role in ROLES
    ]


# --- the table says what the business wants ----------------------------------------------


@pytest.mark.parametrize("noun", MACHINES)
def test_table_is_exactly_the_business_rules(noun):
    rules, expected, _ = MACHINES[noun]
    assert set(states.triples(rules)) == expected_triples(expected)


@pytest.mark.parametrize("noun", MACHINES)
def test_rules_are_keyed_by_their_action_and_name_real_statuses(noun):
    rules, _, statuses = MACHINES[noun]
    for action, rule in rules.items():
        assert rule.action == action
        assert rule.target in statuses
        assert rule.sources <= {NEW, *statuses}
        assert rule.sources, action
        assert rule.roles <= set(ROLES), action


def test_triples_lists_each_allowed_transition_once_in_a_stable_order():
    triples = list(states.triples(APPOINTMENT_RULES))
    assert len(triples) == len(set(triples))
    assert triples == list(states.triples(APPOINTMENT_RULES))
    assert ("accept", "pending", "confirmed", "therapist") in triples


def test_role_constants():
    assert {"receptionist", "manager"} == states.DESK
    assert ROLES[:4] == (states.RECEPTIONIST, states.THERAPIST, states.DRIVER, states.MANAGER)
    assert states.SYSTEM == "system"


def test_status_groups():
    assert set(states.ACTIVE_APPOINTMENT_STATUSES) == {"pending", "confirmed", "in_progress"}
    assert set(states.BUSY_TRIP_STATUSES) == {"assigned", "en_route", "arrived"}
    # Open = may still change = not terminal.
    assert set(states.OPEN_TRIP_STATUSES) == set(TRIP_STATUSES) - TRIP_TERMINAL


# --- check(): the full cross product -----------------------------------------------------


@pytest.mark.parametrize(
    "noun, action, current, role", cross_product("appointment") + cross_product("trip")
)
def test_check(noun, action, current, role):
    rules, _, _ = MACHINES[noun]
    rule = rules[action]
    if role not in rule.roles:
        with pytest.raises(NotPermitted) as info:
            states.check(rules, action, current=current, role=role, noun=noun)
        # The role is refused first: nothing in the answer tells the status.
        assert not isinstance(info.value, InvalidTransition)
        if current:
            assert current.replace("_", " ") not in info.value.message
    elif current not in rule.sources:
        with pytest.raises(InvalidTransition) as info:
            states.check(rules, action, current=current, role=role, noun=noun)
        assert info.value.current_status == current
    else:
        assert (action, current, rule.target, role) in set(states.triples(rules))
        assert states.check(rules, action, current=current, role=role, noun=noun) is rule


@pytest.mark.parametrize("noun", MACHINES)
def test_check_returns_the_rule_for_every_allowed_triple(noun):
    rules, _, _ = MACHINES[noun]
    for action, source, target, role in states.triples(rules):
        rule = states.check(rules, action, current=source, role=role, noun=noun)
        assert isinstance(rule, Rule)
        assert (rule.action, rule.target) == (action, target)


def test_role_is_checked_before_status():
    # A driver may never accept, so it hears "not permitted" whatever the status.
    with pytest.raises(NotPermitted):
        states.check(
            APPOINTMENT_RULES, "accept", current="completed", role="driver", noun="appointment"
        )
    with pytest.raises(NotPermitted):
        states.check(TRIP_RULES, "depart", current="done", role=THERAPIST, noun="trip")


@pytest.mark.parametrize("noun", MACHINES)
@pytest.mark.parametrize("action", ["explode", "", "Accept", "no-show"])
def test_unknown_action_is_an_invalid_transition(noun, action):
    rules, _, _ = MACHINES[noun]
    with pytest.raises(InvalidTransition) as info:
        states.check(rules, action, current="pending", role=SYSTEM, noun=noun)
    assert info.value.current_status == "pending"
    assert noun in info.value.message


def test_messages_name_the_role_the_action_and_the_status():
    with pytest.raises(NotPermitted, match=r"^A driver may not no-show an? appointment\.$"):
        states.check(
            APPOINTMENT_RULES, "no_show", current="confirmed", role="driver", noun="appointment"
        )
    with pytest.raises(
        InvalidTransition, match=r"^Cannot accept an? appointment that is in progress\.$"
    ):
        states.check(
            APPOINTMENT_RULES, "accept", current="in_progress", role=THERAPIST, noun="appointment"
        )


def test_messages_use_the_right_article():
    with pytest.raises(NotPermitted, match=r"^A driver may not no-show an appointment\.$"):
        states.check(
            APPOINTMENT_RULES, "no_show", current="confirmed", role="driver", noun="appointment"
        )


# --- the graphs --------------------------------------------------------------------------


def reachable(rules: dict[str, Rule], start: str) -> set[str]:
    seen = {start}
    todo = deque([start])
    while todo:
        status = todo.popleft()
        for rule in rules.values():
            if status in rule.sources and rule.target not in seen:
                seen.add(rule.target)
                todo.append(rule.target)
    return seen


def outgoing(rules: dict[str, Rule], status: str) -> set[str]:
    return {rule.action for rule in rules.values() if status in rule.sources}


@pytest.mark.parametrize(
    "noun, first", [("appointment", AppointmentStatus.PENDING), ("trip", TripStatus.QUEUED)]
)
def test_every_status_is_reachable_from_the_first(noun, first):
    rules, _, statuses = MACHINES[noun]
    assert reachable(rules, first) == set(statuses)


def test_creation_leads_to_pending():
    assert reachable(APPOINTMENT_RULES, NEW) == {NEW, *APPOINTMENT_STATUSES}
    assert outgoing(APPOINTMENT_RULES, NEW) == {"create"}


@pytest.mark.parametrize(
    "noun, terminal", [("appointment", APPOINTMENT_TERMINAL), ("trip", TRIP_TERMINAL)]
)
def test_terminal_statuses_have_no_way_out_and_the_others_can_end(noun, terminal):
    rules, _, statuses = MACHINES[noun]
    for status in statuses:
        if status in terminal:
            assert outgoing(rules, status) == set(), status
        else:
            assert outgoing(rules, status), f"{status} is a dead end"
            assert reachable(rules, status) & terminal, f"{status} can never end"


def test_outgoing_actions_per_status_as_the_business_says():
    assert {s: outgoing(APPOINTMENT_RULES, s) for s in APPOINTMENT_STATUSES} == {
        "pending": {"accept", "reject", "cancel", "expire", "reschedule", "reassign"},
        "confirmed": {"start", "cancel", "no_show", "reschedule", "reassign"},
        "in_progress": {"complete"},
        "completed": set(),
        "rejected": set(),
        "cancelled": set(),
        "expired": set(),
        "no_show": set(),
    }
    assert {s: outgoing(TRIP_RULES, s) for s in TRIP_STATUSES} == {
        "queued": {"assign", "cancel"},
        "assigned": {"depart", "cancel", "unassign"},
        "en_route": {"arrive", "cancel"},
        "arrived": {"complete", "cancel"},
        "done": set(),
        "cancelled": set(),
    }


# --- acting for staff: the same table, its proxies column -------------------------------

PROXIES = {"appointment": APPOINTMENT_PROXIES, "trip": TRIP_PROXIES}


@pytest.mark.parametrize("noun", MACHINES)
def test_proxies_are_exactly_the_business_rules(noun):
    rules, expected, _ = MACHINES[noun]
    proxies = PROXIES[noun]
    assert {a: set(r.proxies) for a, r in rules.items() if r.proxies} == proxies
    assert set(states.proxy_triples(rules)) == {
        (action, source, expected[action][1], role)
        for action, roles in proxies.items()
        for source in expected[action][0]
        for role in roles
    }
    # One acts only for the staff member whose action it is: a therapist's or a driver's.
    for action in proxies:
        assert rules[action].roles & {THERAPIST, states.DRIVER}, action


@pytest.mark.parametrize(
    "noun, action, current, role", cross_product("appointment") + cross_product("trip")
)
def test_check_on_behalf(noun, action, current, role):
    rules, _, _ = MACHINES[noun]
    rule = rules[action]
    if role not in PROXIES[noun].get(action, set()):
        with pytest.raises(NotPermitted) as info:
            states.check(rules, action, current=current, role=role, noun=noun, on_behalf=True)
        assert "behalf" in info.value.message
        assert not states.may(rules, action, current=current, role=role, on_behalf=True)
    elif current not in rule.sources:
        with pytest.raises(InvalidTransition):
            states.check(rules, action, current=current, role=role, noun=noun, on_behalf=True)
        assert not states.may(rules, action, current=current, role=role, on_behalf=True)
    else:
        assert (
            states.check(rules, action, current=current, role=role, noun=noun, on_behalf=True)
            is rule
        )
        assert states.may(rules, action, current=current, role=role, on_behalf=True)


def test_the_desk_refused_its_own_accept_is_told_to_act_on_behalf():
    with pytest.raises(NotPermitted, match="on_behalf"):
        states.check_role(APPOINTMENT_RULES, "accept", role="receptionist", noun="appointment")
    with pytest.raises(NotPermitted, match=r"^A therapist may not accept an appointment on"):
        states.check_role(
            APPOINTMENT_RULES, "accept", role=THERAPIST, noun="appointment", on_behalf=True
        )


def test_offered_keeps_the_pages_order_and_only_what_the_role_may_take_now():
    actions = ["cancel", "accept", "start", "reject"]
    shown = states.offered(
        states.APPOINTMENT_RULES,
        actions,
        current=states.AppointmentStatus.PENDING,
        role=states.THERAPIST,
    )
    assert shown == [
        a
        for a in actions
        if states.may(
            states.APPOINTMENT_RULES, a, current="pending", role="therapist", on_behalf=False
        )
    ]
    assert "accept" in shown and "start" not in shown
    assert states.offered(states.APPOINTMENT_RULES, actions, current="pending", role=None) == []
