"""Each request's duration and database queries, labelled by its URL pattern."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse

from scheduling.observability.metrics import REQUEST_QUERIES, REQUEST_SECONDS

# Requests that matched no pattern share one label: raw paths would be unbounded.
UNMATCHED = "<unmatched>"


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        route = route_of(request)
        REQUEST_SECONDS.labels(route, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        REQUEST_QUERIES.labels(route).observe(queries[0])
        return response


def route_of(request: HttpRequest) -> str:
    """The matched pattern, e.g. `/api/appointments/(?P<pk>[0-9]+)/` (router regexes lose
    their anchors), or UNMATCHED."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return "/" + match.route.replace("^", "").replace("$", "")
