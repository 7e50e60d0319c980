"""Keyset (cursor) pagination: a page costs the same at row 50 and at row 50,000."""

from __future__ import annotations

from typing import Any, TypeVar

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class Keyset(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        """`?page_size=` is a whole number from 1 (above the maximum gives the maximum);
        anything else, empty included, is a 400 on page_size, not silently the default."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        digits = raw.lstrip("0")
        if not raw.isascii() or not raw.isdigit() or not digits:
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"Must be a whole number from 1 (at most {self.max_page_size} are sent)."
                    ]
                }
            )
        # Past the maximum only the maximum counts (and int() never reads a huge string).
        if len(digits) > len(str(self.max_page_size)):
            return self.max_page_size
        return min(int(digits), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (
                    f"Results per page (default {self.page_size}; more than "
                    f"{self.max_page_size} gives {self.max_page_size})."
                )
        return parameters


class ByStart(Keyset):
    ordering = ("start", "id")


class ByWindow(Keyset):
    ordering = ("window_start", "id")


class ByName(Keyset):
    ordering = ("name", "id")


class ByStaffName(Keyset):
    ordering = ("last_name", "first_name", "id")


_Row = TypeVar("_Row")


def keyset_page(page: list[_Row] | None) -> list[_Row]:
    """A page from a `Keyset` paginator. DRF answers None for "not paginated" (no
    paginator, or a page size of 0), which cannot happen here: every list that calls this
    pages with a Keyset, whose get_page_size is never below 1."""
    assert page is not None, "a list without a Keyset paginator"
    return page
