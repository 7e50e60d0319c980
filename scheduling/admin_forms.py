"""Admin forms that save through the services (issue 13 item 6): a client added or edited
in the admin is checked and written by `create_client`/`update_client` (phone normalised
there, once), a service added or edited by `create_service`/`update_service`, exactly as
the desk and the API do.

The service is called from the form's `clean()`, so whatever it refuses is shown on the
form, beside the field it names; the admin's own transaction (changeform_view is atomic)
rolls the write back should anything after it fail. The admin's `save_model` then has
nothing left to write (`SavedByService`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from scheduling.errors import DomainError, ValidationFailed
from scheduling.models import Client, Service
from scheduling.services.catalog import create_service, update_service
from scheduling.services.clients import create_client, update_client

CLIENT_FIELDS = ("name", "phone", "email", "address", "area", "notes", "preferences")
SERVICE_FIELDS = ("name", "duration_minutes", "buffer_minutes", "price", "active")


class ThroughService(forms.ModelForm):
    """A model form whose `clean()` hands the cleaned values to a service."""

    saved_by_service = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned is None:  # ModelForm.clean() returns cleaned_data; say so to the checker
            cleaned = self.cleaned_data
        if self.errors:
            return cleaned
        try:
            saved = self.save_through_service(cleaned)
        except ValidationFailed as exc:
            self._show(exc)
            return cleaned
        except DomainError as exc:
            self.add_error(None, exc.message)
            return cleaned
        if saved is not None:
            self.instance, self.saved_by_service = saved, True
            # The values the service stored (a normalised phone), so the admin shows them.
            for name in self._meta.fields or ():
                if name in cleaned and hasattr(saved, name):
                    cleaned[name] = getattr(saved, name)
        return cleaned

    def save_through_service(self, cleaned: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _show(self, exc: ValidationFailed) -> None:
        named = {f: m for f, m in exc.errors.items() if f in self.fields}
        for field, field_messages in named.items():
            for message in field_messages:
                self.add_error(field, message)
        if not named:
            self.add_error(None, exc.message)


class ClientForm(ThroughService):
    class Meta:
        model = Client
        fields = CLIENT_FIELDS

    def save_through_service(self, cleaned: dict[str, Any]) -> Client:
        values = {name: cleaned.get(name) for name in CLIENT_FIELDS}
        values["area"] = values["area"].pk if values["area"] is not None else None
        if self.instance.pk is None:
            text = {k: v or "" for k, v in values.items() if k not in ("area", "preferences")}
            return create_client(**text, area=values["area"], preferences=values["preferences"])
        changes = {name: values[name] for name in self.changed_data if name in values}
        return update_client(client=self.instance, **changes) if changes else self.instance


class ServiceForm(ThroughService):
    class Meta:
        model = Service
        fields = SERVICE_FIELDS

    def save_through_service(self, cleaned: dict[str, Any]) -> Service:
        if self.instance.pk is None:
            return create_service(**{name: cleaned[name] for name in SERVICE_FIELDS})
        changes = {name: cleaned[name] for name in self.changed_data if name in SERVICE_FIELDS}
        return update_service(service=self.instance, **changes) if changes else self.instance


# What the mixin is mixed into, for the type checker only.
if TYPE_CHECKING:
    _Admin = admin.ModelAdmin[Any]
else:
    _Admin = object


class SavedByService(_Admin):
    """For a ModelAdmin whose form wrote the row through a service already."""

    def save_model(
        self, request: HttpRequest, obj: Any, form: forms.ModelForm[Any], change: bool
    ) -> None:
        if not getattr(form, "saved_by_service", False):
            super().save_model(request, obj, form, change)
