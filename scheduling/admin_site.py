"""The managers' admin site and the permissions every admin page of it uses.

Apart from scheduling/admin.py so the record-keeping pages (scheduling/admin_records.py)
can use them without importing the editable pages' module.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from scheduling.models import Role, User


def is_manager(request: HttpRequest) -> bool:
    user = request.user
    return bool(
        user.is_authenticated
        and user.is_active
        and getattr(user, "effective_role", None) == Role.MANAGER
    )


class ManagerLoginForm(AdminAuthenticationForm):
    """Admits managers whatever their `is_staff` flag, and nobody else."""

    def confirm_login_allowed(self, user: User) -> None:
        # Skip AdminAuthenticationForm's is_staff rule: the role decides here.
        AuthenticationForm.confirm_login_allowed(self, user)
        if user.effective_role != Role.MANAGER:
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )


class ManagerAdminSite(admin.AdminSite):
    site_header = "Scheduling administration"
    site_title = "Scheduling admin"
    index_title = "Managers' administration"
    login_form = ManagerLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        return is_manager(request)


site = ManagerAdminSite(name="admin")


# --- permissions ----------------------------------------------------------------------------


class ManagerOnly:
    """Managers may view, add and change; delete only where `deletable` says so."""

    deletable = False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_manager(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_manager(request)

    # `obj` is passed by inlines only; ModelAdmin calls this with the request alone.
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_manager(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_manager(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.deletable and is_manager(request)


class ReadOnly(ManagerOnly):
    """Records written only by the services (logs, stream, dispatch): look, never touch."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ManagerModelAdmin(ManagerOnly, admin.ModelAdmin):
    list_per_page = 50


class ReadOnlyModelAdmin(ReadOnly, admin.ModelAdmin):
    list_per_page = 50
    # Append-only tables grow without bound: no COUNT(*) of the whole table per page.
    show_full_result_count = False
