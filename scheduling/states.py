"""The state machines of appointments and trips, as data.

One table per machine of (action, from, to, roles, proxies). The API, pages, tasks and
commands all go through `check()`; nothing else decides whether a status may change.

`proxies` are the roles that may take a staff member's action for them (`on_behalf`): the
desk, when a therapist or driver confirms it by phone. The status rules are the same;
the transition log records both the person who acted and the one they acted for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import models

from scheduling.errors import InvalidTransition, NotPermitted


class AppointmentStatus(models.TextChoices):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NO_SHOW = "no_show", "No-show"


class TripStatus(models.TextChoices):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route", "En route"
    ARRIVED = "arrived"
    DONE = "done"
    CANCELLED = "cancelled"


# Statuses in which an appointment holds the therapist's time (exclusion constraint).
ACTIVE_APPOINTMENT_STATUSES = (
    AppointmentStatus.PENDING,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.IN_PROGRESS,
)
# Statuses in which a trip holds its driver's time (exclusion constraint).
BUSY_TRIP_STATUSES = (TripStatus.ASSIGNED, TripStatus.EN_ROUTE, TripStatus.ARRIVED)
OPEN_TRIP_STATUSES = (TripStatus.QUEUED, *BUSY_TRIP_STATUSES)

# Actor roles. SYSTEM is the platform itself: deadline sweeps, dispatch, cascades.
RECEPTIONIST = "receptionist"
THERAPIST = "therapist"
DRIVER = "driver"
MANAGER = "manager"
SYSTEM = "system"
DESK = frozenset({RECEPTIONIST, MANAGER})


@dataclass(frozen=True)
class Rule:
    action: str
    sources: frozenset[str]
    target: str
    roles: frozenset[str]
    # Who may take it on behalf of one of `roles` (the desk, confirmed by phone).
    proxies: frozenset[str] = frozenset()


def _rule(
    action: str,
    sources: Iterable[str],
    target: str,
    roles: Iterable[str],
    proxies: Iterable[str] = frozenset(),
) -> Rule:
    return Rule(action, frozenset(sources), target, frozenset(roles), frozenset(proxies))


A = AppointmentStatus
NEW = ""  # the "from" status of something being created
T = TripStatus

APPOINTMENT_RULES: dict[str, Rule] = {
    r.action: r
    for r in (
        _rule("create", {NEW}, A.PENDING, DESK),
        # The therapist's own actions; the desk may take them for the therapist.
        _rule("accept", {A.PENDING}, A.CONFIRMED, {THERAPIST}, DESK),
        _rule("reject", {A.PENDING}, A.REJECTED, {THERAPIST}, DESK),
        _rule("start", {A.CONFIRMED}, A.IN_PROGRESS, {THERAPIST}, DESK),
        _rule("complete", {A.IN_PROGRESS}, A.COMPLETED, {THERAPIST}, DESK),
        _rule("cancel", {A.PENDING, A.CONFIRMED}, A.CANCELLED, DESK),
        # The desk records a no-show itself, or for the therapist who reported it.
        _rule("no_show", {A.CONFIRMED}, A.NO_SHOW, {THERAPIST, *DESK}, DESK),
        _rule("expire", {A.PENDING}, A.EXPIRED, {SYSTEM}),
        # A new time needs the therapist's acceptance again.
        _rule("reschedule", {A.PENDING, A.CONFIRMED}, A.PENDING, DESK),
        # Another therapist (services/reassign.py), who has to accept it.
        _rule("reassign", {A.PENDING, A.CONFIRMED}, A.PENDING, DESK),
    )
}

TRIP_RULES: dict[str, Rule] = {
    r.action: r
    for r in (
        # The dispatcher, or the desk by hand (services/manual_dispatch.py).
        _rule("assign", {T.QUEUED}, T.ASSIGNED, {SYSTEM, *DESK}),
        # The desk takes a trip not yet under way back into the queue.
        _rule("unassign", {T.ASSIGNED}, T.QUEUED, DESK),
        # The driver's own actions; the desk may take them for the driver.
        _rule("depart", {T.ASSIGNED}, T.EN_ROUTE, {DRIVER}, DESK),
        _rule("arrive", {T.EN_ROUTE}, T.ARRIVED, {DRIVER}, DESK),
        _rule("complete", {T.ARRIVED}, T.DONE, {DRIVER}, DESK),
        _rule("cancel", set(OPEN_TRIP_STATUSES), T.CANCELLED, {*DESK, SYSTEM}),
    )
}


def check(
    rules: dict[str, Rule],
    action: str,
    *,
    current: str,
    role: str,
    noun: str,
    on_behalf: bool = False,
) -> Rule:
    """The rule for `action` if `role` may take it from `current` (for the staff member
    whose action it is, when `on_behalf`); raise otherwise.

    The role is checked first so that a forbidden actor learns nothing about status.
    """
    rule = rules.get(action)
    if rule is None:
        raise InvalidTransition(f"Unknown action '{action}' for {_a(noun)}.", current)
    check_role(rules, action, role=role, noun=noun, on_behalf=on_behalf)
    if current not in rule.sources:
        label = current.replace("_", " ")
        raise InvalidTransition(
            f"Cannot {action.replace('_', '-')} {_a(noun)} that is {label}.", current
        )
    return rule


def check_role(
    rules: dict[str, Rule], action: str, *, role: str, noun: str, on_behalf: bool = False
) -> None:
    """Raise NotPermitted unless `role` may take `action` from some status (for someone
    else, when `on_behalf`): what can be said before the object is even looked up (a
    forbidden actor gets 403, found or not)."""
    rule = rules.get(action)
    if rule is None:
        return
    verb = action.replace("_", "-")
    if on_behalf and role not in rule.proxies:
        raise NotPermitted(f"A {role} may not {verb} {_a(noun)} on someone's behalf.")
    if not on_behalf and role not in rule.roles:
        hint = " (only on the staff member's behalf: send on_behalf)"
        hint = hint if role in rule.proxies else ""
        raise NotPermitted(f"A {role} may not {verb} {_a(noun)}{hint}.")


def may(rules: dict[str, Rule], action: str, *, current: str, role: str, on_behalf: bool) -> bool:
    """Whether `role` may take `action` from `current` (the pages' list of what to offer)."""
    rule = rules.get(action)
    if rule is None or current not in rule.sources:
        return False
    return role in (rule.proxies if on_behalf else rule.roles)


def offered(
    rules: dict[str, Rule], actions: Iterable[str], *, current: str, role: str | None
) -> list[str]:
    """Of the `actions` a page can show, those `role` may take from `current`, in order.
    The desk, therapist and driver pages all ask this (one rule, one place)."""
    if role is None:
        return []
    return [a for a in actions if may(rules, a, current=current, role=role, on_behalf=False)]


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def triples(rules: dict[str, Rule]) -> Iterator[tuple[str, str, str, str]]:
    """Every allowed (action, from, to, role), for tests and documentation."""
    for rule in rules.values():
        for source in sorted(rule.sources):
            for role in sorted(rule.roles):
                yield rule.action, source, rule.target, role


def proxy_triples(rules: dict[str, Rule]) -> Iterator[tuple[str, str, str, str]]:
    """Every allowed (action, from, to, role acting on someone's behalf)."""
    for rule in rules.values():
        for source in sorted(rule.sources):
            for role in sorted(rule.proxies):
                yield rule.action, source, rule.target, role
