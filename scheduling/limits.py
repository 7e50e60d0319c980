"""Input limits, one place for all of them: the desk's forms, the API's serializers and
the reports read these, so the same field is refused at the same length everywhere."""

from __future__ import annotations

# Years outside these are typos, and near 1 or 9999 date arithmetic overflows.
FIRST_YEAR, LAST_YEAR = 2000, 2999
YEARS_TEXT = f"a year between {FIRST_YEAR} and {LAST_YEAR}"
# Free text (addresses, notes, reasons): long enough for any real one; a megabyte of text
# is an attack or a bug.
TEXT_MAX = 2000
NAME_MAX = 200
PHONE_MAX = 32
SEARCH_MAX = 100
