"""Role gates for the API and pages. What each role may *see* is the QuerySets'
`visible_to(user)`; what each role may *do* to an object is the state machines'. These
classes only keep a role away from a whole endpoint (403)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from scheduling import states


def role(user) -> str | None:
    return getattr(user, "effective_role", None) if user and user.is_authenticated else None


class RolePermission(BasePermission):
    roles: frozenset[str] = frozenset()
    message = "Your role may not use this."

    def has_permission(self, request, view) -> bool:
        return role(request.user) in self.roles


class IsDesk(RolePermission):
    roles = states.DESK
    message = "Only receptionists and managers may use this."


class IsManager(RolePermission):
    roles = frozenset({states.MANAGER})
    message = "Only managers may do this."


class IsDriver(RolePermission):
    roles = frozenset({states.DRIVER})
    message = "Only drivers have shifts."


class IsDeskOrDriver(RolePermission):
    roles = states.DESK | {states.DRIVER}
    message = "Only receptionists, managers and drivers may see trips."
