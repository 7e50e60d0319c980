"""The drivers: the FIFO queue in order, who is on shift, each driver's current trip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from scheduling.models import DriverProfile, Trip
from scheduling.services import dispatch
from scheduling.views.common import live_after
from scheduling.views.desk.dispatch import drivers_dispatch_context
from scheduling.views.desk.present import desk_only, labelled


@dataclass
class DriverLine:
    profile: DriverProfile
    position: int | None
    trip: Trip | None


def drivers_context() -> dict[str, Any]:
    queue = list(dispatch.driver_queue())
    positions = {p.user_id: n for n, p in enumerate(queue, start=1)}
    current: dict[int, Trip] = {}
    busy = Trip.objects.busy().select_related("appointment__client").order_by("window_start", "id")
    for trip in labelled(list(busy), "status", "leg"):
        current.setdefault(trip.driver_id, trip)
    profiles = list(
        DriverProfile.objects.filter(user__is_active=True)
        .select_related("user")
        .order_by("user__first_name", "user__last_name", "user_id")
    )
    working = [
        DriverLine(p, positions.get(p.user_id), current.get(p.user_id))
        for p in profiles
        if p.on_shift or p.user_id in current
    ]
    return {
        "driver_queue": queue,
        "drivers_working": working,
        "drivers_off": [p for p in profiles if not (p.on_shift or p.user_id in current)],
        "drivers_driving": sum(1 for line in working if line.trip is not None),
        **drivers_dispatch_context(),
    }


@desk_only
@require_GET
def drivers(request: HttpRequest) -> HttpResponse:
    context = {"live_after": live_after(request.user), **drivers_context()}
    return render(request, "desk/drivers.html", context)


@desk_only
@require_GET
def drivers_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "desk/_drivers.html", drivers_context())


@desk_only
@require_GET
def drivers_summary_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "desk/_drivers_summary.html", drivers_context())
