"""Each request's duration and database queries, labelled by its URL pattern; its request
id (bound for everything the request does, echoed in X-Request-ID) and its log line."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from scheduling.observability import logs
from scheduling.observability.metrics import REQUEST_QUERIES, REQUEST_SECONDS

# Requests that matched no pattern share one label: raw paths would be unbounded.
UNMATCHED = "<unmatched>"


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = logs.from_proxy(request.headers.get(logs.HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]  # for django.request
        with logs.bound(request_id):
            response = self._measured(request)
            response[logs.HEADER] = request_id
            return response

    def _measured(self, request: HttpRequest) -> HttpResponse:
        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        seconds = time.perf_counter() - started
        route = route_of(request)
        REQUEST_SECONDS.labels(route, request.method, str(response.status_code)).observe(seconds)
        REQUEST_QUERIES.labels(route).observe(queries[0])
        logs.request_line(
            method=request.method or "",
            route=route,
            status=response.status_code,
            seconds=seconds,
            user=user_of(request),
            request_id=logs.current() or "",
        )
        return response


def route_of(request: HttpRequest) -> str:
    """The matched pattern, e.g. `/api/appointments/(?P<pk>[0-9]+)/` (router regexes lose
    their anchors), or UNMATCHED."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return "/" + match.route.replace("^", "").replace("$", "")


def user_of(request: HttpRequest):
    """The user the request ran as, if anything looked them up (a token's user set by DRF,
    or the session's once read): never a lookup of its own just for the log line."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject) and user.__dict__["_wrapped"] is empty:
        return None
    return user
