"""The day board: a timeline per therapist (working time, breaks and time off shaded),
each appointment a block with client, service, status and transport, beside the queues'
summary and the drivers. The geometry is timeline.py's; this module reads the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db.models import Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from scheduling import states
from scheduling.formats import clock
from scheduling.models import Appointment, User
from scheduling.services.appointments import CANCELS_TRANSPORT
from scheduling.services.availability import day_schedules
from scheduling.views.common import live_after
from scheduling.views.desk.drivers import drivers_context
from scheduling.views.desk.present import (
    Transport,
    bad_day,
    day_from,
    desk_only,
    transport_of,
    trips_prefetch,
    word,
)
from scheduling.views.desk.queues import queues_context
from scheduling.views.desk.timeline import (
    Piece,
    Segment,
    Span,
    board_span,
    hour_ticks,
    hours_text,
    placements,
    segments_of,
)
from scheduling.views.desk.visits import visit_label, visits_among


@dataclass
class Block:
    appointment: Appointment
    left: str
    width: str
    tail_left: str  # clean-up after the session (the service's buffer)
    tail: str
    lane: int
    transport: Transport
    hidden_status: bool  # drawn only when the desk asked for every status
    # The therapist's travel: from leaving base to the start, from the end of the clean-up
    # to being back. None when the booking counts no travel (booked before travel was).
    travel_out: Piece | None = None
    travel_back: Piece | None = None
    # A session of a couples or group visit: "Couples visit #12" and the partners' names.
    visit_label: str = ""
    partners: str = ""

    @property
    def times(self) -> str:
        return f"{clock(self.appointment.start)}–{clock(self.appointment.end)}"

    @property
    def away(self) -> str:
        """From leaving base to being back, as the board's tooltip says it."""
        a = self.appointment
        return f"{clock(a.busy_from)}–{clock(a.busy_until)}"

    @property
    def starts(self) -> str:
        return clock(self.appointment.start)

    @property
    def status_label(self) -> str:
        return word(self.appointment.status)


@dataclass
class Row:
    therapist: User
    hours_text: str
    segments: list[Segment] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    @property
    def lanes(self) -> int:
        return 1 + max((b.lane for b in self.blocks), default=0)


def lay_out(
    booked: list[Appointment],
    span: Span,
    *,
    show_all: bool,
    visits: dict[int, list[Appointment]] | None = None,
) -> list[Block]:
    """Blocks in lanes, placed by the timeline (`timeline.placements`), each with its
    transport and whether its status is one shown only on asking; a visit's session with
    its label and partners (`visits`: the day's sessions by visit)."""
    visits = visits or {}
    blocks = []
    for appointment, placed in placements(booked, span):
        sessions = visits.get(appointment.visit_id or 0, [])
        label, partners, carried = visit_words(appointment, sessions)
        blocks.append(
            Block(
                appointment=appointment,
                left=placed.left,
                width=placed.width,
                tail_left=placed.tail_left,
                tail=placed.tail,
                lane=placed.lane,
                transport=transport_of(carried),
                hidden_status=show_all and appointment.status in CANCELS_TRANSPORT,
                travel_out=placed.travel_out,
                travel_back=placed.travel_back,
                visit_label=label,
                partners=partners,
            )
        )
    return blocks


def visit_words(
    appointment: Appointment, sessions: list[Appointment]
) -> tuple[str, str, Appointment]:
    """A visit's session on the board: "Couples visit #12" (or "Group visit of 3 #12"),
    the partners still booked, and the session whose trips carry it (the visit's shared
    trips hang on its lead session)."""
    if not sessions:
        return "", "", appointment
    live = [s for s in sessions if s.status not in CANCELS_TRANSPORT]
    carried = next((s for s in sessions if s.trips.all()), appointment)
    partners = [s for s in live if s.pk != appointment.pk]
    if not partners:
        return f"Visit #{appointment.visit_id}", "", carried
    label = f"{visit_label(len(partners) + 1)} #{appointment.visit_id}"
    return label, ", ".join(str(s.therapist) for s in partners), carried


def board_context(day: date, *, show_all: bool) -> dict[str, Any]:
    day_rows = Appointment.objects.on_day(day)
    therapists = list(
        User.objects.filter(role=states.THERAPIST)
        .filter(Q(is_active=True) | Q(pk__in=Subquery(day_rows.values("therapist_id"))))
        .order_by("first_name", "last_name", "id")
    )
    booked = list(
        day_rows.select_related("client", "service", "therapist").prefetch_related(trips_prefetch())
    )
    # A visit's sessions start together, so the day holds all of them: no query.
    visits = visits_among(booked)
    # Statuses after which the appointment will not take place: off the board unless asked.
    not_happening = [a for a in booked if a.status in CANCELS_TRANSPORT]
    shown = booked if show_all else [a for a in booked if a.status not in CANCELS_TRANSPORT]
    schedules = day_schedules([t.pk for t in therapists], day)
    hours = [h for s in schedules.values() for h in s.hours]
    span = board_span(day, hours, shown)
    by_therapist: dict[int, list[Appointment]] = {}
    for appointment in shown:
        by_therapist.setdefault(appointment.therapist_id, []).append(appointment)
    # Therapists with neither hours nor bookings that day are named, not drawn.
    resting = [t for t in therapists if not schedules[t.pk].hours and t.pk not in by_therapist]
    rows = [
        Row(
            therapist=t,
            hours_text=hours_text(schedules[t.pk]),
            segments=segments_of(schedules[t.pk], span),
            blocks=lay_out(by_therapist.get(t.pk, []), span, show_all=show_all, visits=visits),
        )
        for t in therapists
        if t not in resting
    ]
    today = timezone.localdate()
    now = timezone.now()
    return {
        "day": day,
        "is_today": day == today,
        "relative_day": relative_day(day, today),
        "previous_day": day - timedelta(days=1),
        "next_day": day + timedelta(days=1),
        "today": today,
        "rows": rows,
        "resting": resting,
        "ticks": hour_ticks(span),
        "span": span,
        "now_at": f"{span.at(now):.3f}" if span.start <= now < span.end else None,
        "show_all": show_all,
        "not_happening": len(not_happening),
        "booked_count": len(shown) - (len(not_happening) if show_all else 0),
    }


def relative_day(day: date, today: date) -> str:
    offset = (day - today).days
    named = {0: "Today", 1: "Tomorrow", -1: "Yesterday"}
    if offset in named:
        return named[offset]
    return f"In {offset} days" if offset > 0 else f"{-offset} days ago"


def board_query(day: date, show_all: bool) -> str:
    return f"?date={day.isoformat()}" + ("&all=1" if show_all else "")


@desk_only
@require_GET
def board(request: HttpRequest) -> HttpResponse:
    day = day_from(request)
    if day is None:
        return bad_day(request)
    show_all = request.GET.get("all") == "1"
    after = live_after(request.user)
    context = {
        "live_after": after,
        "board_query": board_query(day, show_all),
        **board_context(day, show_all=show_all),
        **queues_context(limit=1),
        **drivers_context(),
    }
    return render(request, "desk/board.html", context)


@desk_only
@require_GET
def board_fragment(request: HttpRequest) -> HttpResponse:
    day = day_from(request)
    if day is None:
        return bad_day(request)
    show_all = request.GET.get("all") == "1"
    context = {"board_query": board_query(day, show_all), **board_context(day, show_all=show_all)}
    return render(request, "desk/_board.html", context)
