"""GET /metrics: Prometheus text format, for `Authorization: Bearer $METRICS_TOKEN` only."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scheduling.observability.metrics import registry


def metrics(request: HttpRequest) -> HttpResponse:
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        raise Http404("metrics are off (METRICS_TOKEN is empty)")
    given = request.headers.get("Authorization", "")
    if not given:
        return _refused(401, "Authorization: Bearer <METRICS_TOKEN> is required.")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return _refused(403, "That token is not the metrics token.")
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def _refused(status: int, detail: str) -> HttpResponse:
    response = HttpResponse(detail + "\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response
