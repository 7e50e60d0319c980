"""Keyset (cursor) pagination: a page costs the same at row 50 and at row 50,000."""

from rest_framework.pagination import CursorPagination


class Keyset(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ByStart(Keyset):
    ordering = ("start", "id")


class ByWindow(Keyset):
    ordering = ("window_start", "id")


class ByName(Keyset):
    ordering = ("name", "id")


class ByStaffName(Keyset):
    ordering = ("last_name", "first_name", "id")
