"""The receptionist's desk (receptionists and managers).

The day board (a timeline per therapist), booking, an appointment's detail and actions,
the queues that need a person, and the drivers. Every write goes through a service;
every part the stream can change is a live region (static/js/app.js) whose fragment is
rendered by the same template as the first page, so a live refresh and a reload agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import phonenumbers
from django import forms
from django.contrib import messages
from django.db.models import Count, Prefetch, Q, QuerySet, Subquery, Window
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from scheduling import states
from scheduling.domain import (
    DaySchedule,
    Interval,
    at_wall_time,
    business_zone,
    local_date,
    local_day_bounds,
    subtract,
)
from scheduling.errors import Conflict, DomainError, ValidationFailed
from scheduling.forms import (
    AppointmentForm,
    ClientForm,
    ReasonForm,
    RescheduleForm,
    sensible_day,
)
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    Audience,
    Channel,
    Client,
    DriverProfile,
    Leg,
    Notification,
    NotificationStatus,
    PaymentStatus,
    Service,
    ServiceArea,
    Transition,
    Trip,
    TripStatus,
    User,
)
from scheduling.permissions import role
from scheduling.phones import default_region
from scheduling.services import dispatch, notifications
from scheduling.services.appointments import (
    CANCELS_TRANSPORT,
    act_on_appointment,
    create_appointment,
    reschedule_appointment,
)
from scheduling.services.availability import availability, day_schedules
from scheduling.services.capacity import NO_DRIVER
from scheduling.services.clients import create_client
from scheduling.services.common import latest_bookable
from scheduling.services.travel import Travel, default_minutes, travel_for, travel_of
from scheduling.views.common import (
    call_for_form,
    call_for_page,
    form_errors_from,
    live_after,
    role_required,
)

desk_only = role_required(*states.DESK)

# Rows a queue lists; its heading says how many there are in all.
QUEUE_LIMIT = 50
# Rejected and expired bookings stay on the rebooking list until this long after their time.
REBOOK_RECENT = timedelta(days=2)
CLIENT_RESULTS = 8
# The board's span on a day nobody works.
QUIET_DAY = (time(8), time(20))
# The actions the detail page has a form for; the rules table decides when each is shown.
PAGE_ACTIONS = ("reschedule", "cancel", "no_show")
SKIP_REASONS = {
    "off_shift": "off shift",
    "busy": "busy",
    "vehicle": "vehicle too small",
    # Taking this trip would have left another booked trip with no driver who can take it.
    "needed_later": "kept for another booked trip no one else can take",
}


# Words for the stored values: the choices' own labels ("" is the "from" of a creation).
WORDS = {
    **{
        choice.value: choice.label
        for choices in (AppointmentStatus, TripStatus, PaymentStatus, Leg, Channel, Audience)
        for choice in choices
    },
    "": "new",
}


def word(value: str) -> str:
    return WORDS.get(value, value.replace("_", " ").capitalize())


def labelled(rows: list, *names: str) -> list:
    """Give each row a `<name>_label` for the templates (like get_FOO_display, in WORDS)."""
    for row in rows:
        for name in names:
            setattr(row, f"{name}_label", word(getattr(row, name)))
    return rows


def local_hm(instant: datetime) -> str:
    return f"{timezone.localtime(instant):%H:%M}"


def money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def masked_phone(e164: str) -> str:
    """Enough of a number to tell two clients apart on the phone, not enough to copy:
    '0917 ••• 4567'."""
    try:
        national = phonenumbers.format_number(
            phonenumbers.parse(e164, default_region()), phonenumbers.PhoneNumberFormat.NATIONAL
        )
    except phonenumbers.NumberParseException:
        national = e164
    digits = [c for c in national if c.isdigit()]
    if len(digits) < 8:
        return national
    return f"{''.join(digits[:4])} ••• {''.join(digits[-4:])}"


def bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "desk/bad_request.html", {"message": message}, status=400)


def day_from(request: HttpRequest) -> date | None:
    """?date=YYYY-MM-DD (today when absent); None when it is not a day the desk shows."""
    text = request.GET.get("date", "").strip()
    if not text:
        return timezone.localdate()
    try:
        return sensible_day(date.fromisoformat(text))
    except (ValueError, forms.ValidationError):
        return None


def bad_day(request: HttpRequest) -> HttpResponse:
    shown = request.GET.get("date", "")[:40]
    return bad_request(
        request, f"“{shown}” is not a day the board can show. Pick a date like 2030-05-01."
    )


def int_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


# --- transport and status, as the desk reads them ----------------------------------------


@dataclass(frozen=True)
class Transport:
    label: str  # in full: "Drop-off: Dan Lim en route"
    tone: str  # a CSS suffix: none, queued, assigned, moving, done, cancelled
    short: str  # for a small board block: "En route"


def transport_of(appointment: Appointment) -> Transport:
    """Where the appointment's transport stands: the first leg still to be driven.
    Reads `appointment.trips` (prefetch it, ordered by window)."""
    if not appointment.needs_transport:
        return Transport("No transport", "none", "No transport")
    trips = list(appointment.trips.all())
    if not trips or all(t.status == TripStatus.CANCELLED for t in trips):
        return Transport("Transport cancelled", "cancelled", "Transport cancelled")
    ahead = [t for t in trips if t.status not in (TripStatus.DONE, TripStatus.CANCELLED)]
    if not ahead:
        return Transport("Transport done", "done", "Transport done")
    trip = ahead[0]
    leg = word(trip.leg)
    if trip.status == TripStatus.QUEUED:
        return Transport(f"{leg}: trip queued", "queued", "Trip queued")
    driver = str(trip.driver) if trip.driver_id else "driver"
    if trip.status == TripStatus.ASSIGNED:
        return Transport(f"{leg}: {driver} assigned", "assigned", driver)
    if trip.status == TripStatus.EN_ROUTE:
        return Transport(f"{leg}: {driver} en route", "moving", f"En route, {driver}")
    return Transport(f"{leg}: {driver} arrived", "moving", f"Arrived, {driver}")


def trips_prefetch() -> Prefetch:
    return Prefetch(
        "trips", queryset=Trip.objects.select_related("driver").order_by("window_start", "id")
    )


# --- the day board -------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """The board's time axis: positions are percentages of it."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def at(self, instant: datetime) -> float:
        offset = (instant - self.start).total_seconds() / self.seconds * 100
        return min(100.0, max(0.0, offset))

    def place(self, start: datetime, end: datetime) -> tuple[str, str]:
        left = self.at(start)
        return f"{left:.3f}", f"{max(self.at(end) - left, 0.0):.3f}"


@dataclass
class Segment:
    kind: str  # off, break, time-off
    label: str  # with its times, for screen readers and the tooltip
    short: str  # drawn in the segment
    left: str
    width: str


@dataclass(frozen=True)
class Piece:
    """A stretch of a block's lane: where it is drawn, and its times in words."""

    left: str
    width: str
    text: str


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

    @property
    def times(self) -> str:
        return f"{local_hm(self.appointment.start)}–{local_hm(self.appointment.end)}"

    @property
    def away(self) -> str:
        """From leaving base to being back, as the board's tooltip says it."""
        a = self.appointment
        return f"{local_hm(a.busy_from)}–{local_hm(a.busy_until)}"

    @property
    def starts(self) -> str:
        return local_hm(self.appointment.start)

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


def board_span(day: date, schedules: dict[int, DaySchedule], booked: list[Appointment]) -> Span:
    """From the earliest working hour to the latest of the day (whole hours), widened to
    any appointment outside them."""
    day_start, day_end = local_day_bounds(day)
    starts = [h.start for s in schedules.values() for h in s.hours] + [a.busy_from for a in booked]
    ends = [h.end for s in schedules.values() for h in s.hours] + [a.busy_until for a in booked]
    if not starts:
        zone = business_zone()
        return Span(at_wall_time(day, QUIET_DAY[0], zone), at_wall_time(day, QUIET_DAY[1], zone))
    first = timezone.localtime(min(starts)).replace(minute=0, second=0, microsecond=0)
    last = timezone.localtime(max(ends))
    rounded = last.replace(minute=0, second=0, microsecond=0)
    if rounded < last:
        rounded += timedelta(hours=1)
    start, end = max(first, day_start), min(rounded, day_end)
    if end <= start:
        end = start + timedelta(hours=1)
    return Span(start, end)


def hour_ticks(span: Span) -> list[tuple[str, str]]:
    ticks, current = [], span.start
    while current < span.end:
        ticks.append((local_hm(current), f"{span.at(current):.3f}"))
        current += timedelta(hours=1)
    return ticks


def hours_text(schedule: DaySchedule) -> str:
    if not schedule.hours:
        return "Not working"
    if not schedule.working:
        return "Time off"
    return ", ".join(f"{local_hm(h.start)}–{local_hm(h.end)}" for h in schedule.hours)


def segments_of(schedule: DaySchedule, span: Span) -> list[Segment]:
    """The row's blocked time: outside working hours, breaks, time off."""
    whole = Interval(span.start, span.end)
    pieces = [
        *(("off", "Outside working hours", i) for i in subtract([whole], schedule.hours)),
        *(("break", "Break", i) for i in schedule.breaks),
        *(("time-off", "Time off", i) for i in schedule.time_off),
    ]
    segments = []
    for kind, label, interval in pieces:
        if not interval.overlaps(whole):
            continue
        left, width = span.place(interval.start, interval.end)
        text = f"{label} {local_hm(max(interval.start, span.start))}–"
        text += local_hm(min(interval.end, span.end))
        segments.append(Segment(kind, text, label, left, width))
    return segments


def travel_piece(start: datetime, end: datetime, span: Span) -> Piece | None:
    if end <= start:
        return None
    left, width = span.place(start, end)
    return Piece(left, width, f"Travel {local_hm(start)}–{local_hm(end)}")


def lay_out(booked: list[Appointment], span: Span, *, show_all: bool) -> list[Block]:
    """Blocks in lanes: two whose busy ranges overlap (a no-show and the booking made in
    its place) sit one under the other. A block takes its lane from leaving base
    (`busy_from`) to being back (`busy_until`): the travel drawn either side of the
    session is the therapist's as much as the session is."""
    lane_ends: list[datetime] = []
    blocks = []
    for appointment in sorted(booked, key=lambda a: (a.busy_from, a.start, a.pk)):
        lane = next((i for i, end in enumerate(lane_ends) if end <= appointment.busy_from), None)
        if lane is None:
            lane = len(lane_ends)
            lane_ends.append(appointment.busy_until)
        else:
            lane_ends[lane] = appointment.busy_until
        left, width = span.place(appointment.start, appointment.end)
        tail_left, tail = span.place(appointment.end, appointment.blocked_until)
        blocks.append(
            Block(
                appointment=appointment,
                left=left,
                width=width,
                tail_left=tail_left,
                tail=tail,
                lane=lane,
                transport=transport_of(appointment),
                hidden_status=show_all and appointment.status in CANCELS_TRANSPORT,
                travel_out=travel_piece(appointment.busy_from, appointment.start, span),
                travel_back=travel_piece(appointment.blocked_until, appointment.busy_until, span),
            )
        )
    return blocks


def board_context(day: date, *, show_all: bool) -> dict[str, Any]:
    day_rows = Appointment.objects.on_day(day)
    therapists = list(
        User.objects.filter(role=states.THERAPIST)
        .filter(Q(is_active=True) | Q(pk__in=Subquery(day_rows.values("therapist_id"))))
        .order_by("first_name", "last_name", "id")
    )
    booked = list(day_rows.select_related("client", "service").prefetch_related(trips_prefetch()))
    # Statuses after which the appointment will not take place: off the board unless asked.
    not_happening = [a for a in booked if a.status in CANCELS_TRANSPORT]
    shown = booked if show_all else [a for a in booked if a.status not in CANCELS_TRANSPORT]
    schedules = day_schedules([t.pk for t in therapists], day)
    span = board_span(day, schedules, shown)
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
            blocks=lay_out(by_therapist.get(t.pk, []), span, show_all=show_all),
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


# --- queues that need a person --------------------------------------------------------------


@dataclass
class WaitingTrip:
    trip: Trip
    reason: str
    checked_at: datetime | None


def first_rows(rows: QuerySet, limit: int) -> tuple[list, int]:
    """The first `limit` rows and how many there are in all, in one query."""
    listed = list(rows.annotate(total=Window(Count("pk")))[:limit])
    return listed, (listed[0].total if listed else 0)


def skip_text(decision, names: dict[int, str]) -> str:
    if decision is None:
        return "The dispatcher has not looked at it yet."
    if not decision.skipped:
        return "No driver was waiting in the queue."
    passed = ", ".join(
        f"{names.get(s['driver'], 'a driver')} ({SKIP_REASONS.get(s['reason'], s['reason'])})"
        for s in decision.skipped
    )
    return f"Every waiting driver was passed over: {passed}."


def waiting_trips(trips: list[Trip]) -> list[WaitingTrip]:
    """Queued trips with the dispatcher's last word on each, in two queries."""
    decisions = dispatch.last_decisions([t.pk for t in trips])
    driver_ids = {s["driver"] for d in decisions.values() for s in d.skipped}
    names = {u.pk: str(u) for u in User.objects.filter(pk__in=driver_ids)}
    return [
        WaitingTrip(
            trip=trip,
            reason=skip_text(decisions.get(trip.pk), names),
            checked_at=decisions[trip.pk].decided_at if trip.pk in decisions else None,
        )
        for trip in trips
    ]


@dataclass
class FailedLine:
    notification: Notification
    what: str
    channel: str
    recipient: str
    to: str


def failed_lines(rows: list[Notification]) -> list[FailedLine]:
    """Notifications as the desk reads them (the failed ones, or an appointment's)."""
    return [
        FailedLine(
            notification=n,
            what=notifications.SUBJECTS.get(n.kind, word(n.kind)),
            channel=word(n.channel),
            recipient=f"{word(n.audience)} {n.client or n.user}",
            to=n.to if "@" in n.to else masked_phone(n.to),
        )
        for n in rows
    ]


def queues_context(limit: int = QUEUE_LIMIT) -> dict[str, Any]:
    """The four lists (their first `limit` rows) and how long each is."""
    now = timezone.now()
    pending, pending_total = first_rows(
        Appointment.objects.filter(status=AppointmentStatus.PENDING)
        .select_related("client", "service", "therapist")
        .order_by("response_deadline", "id"),
        limit,
    )
    rebook, rebook_total = first_rows(
        Appointment.objects.to_rebook(since=now - REBOOK_RECENT)
        .select_related("client", "service", "therapist")
        .order_by("start", "id"),
        limit,
    )
    trips, trips_total = first_rows(
        Trip.objects.filter(dispatch.dispatchable(now))
        .select_related("appointment__client", "appointment__service")
        .order_by("window_start", "created_at", "id"),
        limit,
    )
    failed, failed_total = first_rows(
        Notification.objects.filter(status=NotificationStatus.FAILED)
        .select_related("client", "user")
        .order_by("-updated_at", "-id"),
        limit,
    )
    return {
        "pending": pending,
        "pending_total": pending_total,
        "rebook": labelled(rebook, "status"),
        "rebook_total": rebook_total,
        "waiting": waiting_trips(labelled(trips, "leg")),
        "waiting_total": trips_total,
        "failed": failed_lines(failed),
        "failed_total": failed_total,
        "attention_total": pending_total + rebook_total + trips_total + failed_total,
    }


@desk_only
@require_GET
def queues(request: HttpRequest) -> HttpResponse:
    context = {"live_after": live_after(request.user), **queues_context()}
    return render(request, "desk/queues.html", context)


@desk_only
@require_GET
def queues_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "desk/_queues.html", queues_context())


@desk_only
@require_GET
def attention_fragment(request: HttpRequest) -> HttpResponse:
    """The board's summary of the queues: how many of each, and the most pressing."""
    return render(request, "desk/_attention.html", queues_context(limit=1))


@desk_only
@require_POST
def retry_notification(request: HttpRequest, pk: int) -> HttpResponse:
    done = call_for_page(request, notifications.retry_notification, notification_id=pk)
    if done is not None:
        messages.success(request, "The message will be sent again.")
    if request.htmx:
        return render(request, "desk/_queues_swap.html", queues_context())
    if request.POST.get("back") == "appointment":
        appointment_id = (
            Notification.objects.filter(pk=pk).values_list("appointment_id", flat=True).first()
        )
        if appointment_id:
            return redirect("desk:appointment", pk=appointment_id)
    return redirect("desk:queues")


# --- drivers -------------------------------------------------------------------------------


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


# --- booking -------------------------------------------------------------------------------


@dataclass
class ClientChoice:
    client: Client
    phone: str
    checked: bool = False


def client_choices(clients, checked_id: int | None = None) -> list[ClientChoice]:
    return [ClientChoice(c, masked_phone(c.phone), c.pk == checked_id) for c in clients]


def service_choices() -> list[tuple[int, str]]:
    return [
        (s.pk, f"{s.name} · {s.duration_minutes} min · {money(s.price)}")
        for s in Service.objects.filter(active=True).order_by("name")
    ]


@dataclass(frozen=True)
class Slot:
    """A start time as the form offers it: one that books, or one the therapist could make
    but no driver could carry (shown, not choosable)."""

    value: str  # ISO, with its offset
    label: str  # "14:30"
    no_driver: bool = False


@dataclass(frozen=True)
class TherapistChoice:
    therapist: User
    free: int  # starts that book
    no_driver: int  # starts refused only for want of a driver

    @property
    def text(self) -> str:
        free = f"{self.free} free time{'s' if self.free > 1 else ''}" if self.free else ""
        free = free or "no free time"
        return f"{free}, {self.no_driver} with no driver" if self.no_driver else free


@dataclass(frozen=True)
class AreaChoice:
    value: str  # "" for the client's area, or the default travel
    label: str


# Changes that keep the start chosen: it stays chosen if it is still offered.
TIMES_INCLUDE = (
    "#id_service, #id_date, #id_therapist, #id_needs_transport, #id_area, [name='client']:checked"
)


@dataclass
class TimesPanel:
    """How the therapist gets there, the therapist select and the start times, for one
    service and day: everything the availability service's answer depends on."""

    service: Service | None = None
    day: date | None = None
    therapist_id: int | None = None
    therapists: list[TherapistChoice] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    chosen_start: str = ""
    note: str = ""
    needs_transport: bool = False
    travel: Travel | None = None
    client: Client | None = None
    areas: list[AreaChoice] = field(default_factory=list)
    area_id: int | None = None
    area_error: str = ""
    moving: bool = False  # a reschedule's: its travel and transport are the booking's

    include = TIMES_INCLUDE
    include_start = TIMES_INCLUDE + ", [name='start']:checked"

    @property
    def therapist(self) -> User | None:
        return next(
            (c.therapist for c in self.therapists if c.therapist.pk == self.therapist_id), None
        )

    @property
    def groups(self) -> list[tuple[str, list[Slot]]]:
        """The starts by part of the day, so a long list is quick to scan."""
        parts: dict[str, list[Slot]] = {"Morning": [], "Afternoon": [], "Evening": []}
        for slot in self.slots:
            hour = int(slot.label[:2])
            part = "Morning" if hour < 12 else "Afternoon" if hour < 17 else "Evening"
            parts[part].append(slot)
        return [(part, slots) for part, slots in parts.items() if slots]

    @property
    def chosen_part(self) -> str:
        """The part of the day whose starts hold the chosen one ("" when it is not shown):
        a refusal of it is put there, beside the time."""
        return next(
            (part for part, slots in self.groups for s in slots if s.value == self.chosen_start),
            "",
        )

    @property
    def chosen_label(self) -> str:
        return next((s.label for s in self.slots if s.value == self.chosen_start), "")

    @property
    def area_value(self) -> str:
        return str(self.area_id) if self.area_id else ""

    @property
    def any_no_driver(self) -> bool:
        return any(s.no_driver for s in self.slots)

    @property
    def travel_text(self) -> str:
        if self.travel is None:
            return ""
        where = self.travel.area.name if self.travel.area else "default travel"
        return f"{self.travel.minutes} min each way, {where}"


def client_area_label(client: Client | None) -> str:
    """The area select's first choice: the client's own area, else the default."""
    if client is not None and client.area is not None:
        area = client.area
        return f"{area.name}, the client's area ({area.travel_minutes} min each way)"
    return f"Default travel ({default_minutes()} min each way)"


def area_choices(client: Client | None) -> list[AreaChoice]:
    own = client.area_id if client is not None else None
    return [AreaChoice("", client_area_label(client))] + [
        AreaChoice(str(a.pk), f"{a.name} ({a.travel_minutes} min each way)")
        for a in ServiceArea.objects.active()
        if a.pk != own
    ]


def booking_travel(panel: TimesPanel) -> Travel:
    """The travel a booking with the panel's client and area would get, by the booking
    service's own rule (`travel_for`); an area that is not offered is said beside the
    select, and the client's travel is shown meanwhile."""
    try:
        return travel_for(client=panel.client, area_id=panel.area_id)
    except ValidationFailed as error:
        panel.area_error = error.message
        panel.area_id = None
        return travel_for(client=panel.client, area_id=None)


def times_panel(
    service_id: Any,
    day: date | None,
    therapist_id: Any,
    chosen_start: str = "",
    *,
    moving: Appointment | None = None,
    needs_transport: bool = False,
    client_id: Any = None,
    area_id: Any = None,
) -> TimesPanel:
    """What the booking form offers for the values chosen so far: the therapists who
    perform the service (with how many free times each has that day) and, once one is
    chosen, their start times, all from the availability service, asked with the travel
    the booking would get and whether it needs a driver. `moving`: the appointment a
    reschedule moves (its own time is free for it; its travel and transport stay)."""
    panel = TimesPanel(day=day, chosen_start=chosen_start or "", needs_transport=needs_transport)
    service_pk = int_or_none(service_id)
    panel.service = (
        Service.objects.filter(pk=service_pk, active=True).first() if service_pk else None
    )
    panel.therapist_id = int_or_none(therapist_id)
    if moving is not None:
        panel.moving = True
        panel.needs_transport = moving.needs_transport
        panel.travel = travel_of(moving)
    else:
        client_pk = int_or_none(client_id)
        panel.client = (
            Client.objects.select_related("area").filter(pk=client_pk).first()
            if client_pk
            else None
        )
        panel.area_id = int_or_none(area_id)
        panel.travel = booking_travel(panel)
        panel.areas = area_choices(panel.client)
    if panel.service is None:
        panel.note = "Choose a service to see who performs it and when they are free."
        return panel
    if day is None:
        panel.note = "Pick a day to see the free times."
        return panel
    now = timezone.now()
    offered = availability(
        service=panel.service,
        day=day,
        now=now,
        moving=moving.pk if moving is not None else None,
        travel=panel.travel.time,
        needs_transport=panel.needs_transport,
    )
    panel.therapists = [
        TherapistChoice(a.therapist, len(a.starts), len(a.no_driver)) for a in offered
    ]
    mine = next((a for a in offered if a.therapist.pk == panel.therapist_id), None)
    if day < timezone.localdate():
        panel.note = "That day has passed."
    elif day > local_date(latest_bookable(now)):
        panel.note = "That is too far ahead to book; check the year."
    elif not panel.therapists:
        panel.note = f"No therapist performs {panel.service.name} yet."
    elif panel.therapist_id and mine is None:
        panel.note = f"That therapist does not perform {panel.service.name}; choose another."
        panel.therapist_id = None
    elif mine is None:
        panel.note = "Choose a therapist to see their free times."
    elif not mine.starts and mine.no_driver:
        then = "Try another day or therapist, or book without transport."
        if moving:
            then = "Try another day."
        panel.note = (
            f"No driver is free to take {mine.therapist} to any of their free times that "
            f"day. {then}"
        )
    elif not mine.starts:
        panel.note = f"{mine.therapist} has no free time for {panel.service.name} that day."
    if mine is not None:
        refused = set(mine.no_driver)
        panel.slots = [
            Slot(timezone.localtime(s).isoformat(), local_hm(s), s in refused)
            for s in sorted([*mine.starts, *mine.no_driver])
        ]
    return panel


def checked(data: Any, name: str) -> bool:
    """A checkbox's value in `data` (a QueryDict or the form's initial dict)."""
    if hasattr(data, "getlist"):
        return bool(forms.CheckboxInput().value_from_datadict(data, {}, name))
    return bool(data.get(name))


def new_form_page(
    request: HttpRequest,
    form: AppointmentForm,
    *,
    client_form: ClientForm | None = None,
    conflicts: list[Appointment] = (),
) -> HttpResponse:
    values = form.data if form.is_bound else form.initial
    client_id = int_or_none(values.get("client"))
    chosen = Client.objects.filter(pk=client_id) if client_id else Client.objects.none()
    # A bound form's day as cleaned (None when it was not a day), else the initial one.
    day = getattr(form, "cleaned_data", {}).get("date") if form.is_bound else values.get("date")
    context = {
        "form": form,
        "services": service_choices(),
        "client_form": client_form or ClientForm(),
        "client_results": client_choices(chosen, client_id),
        "times": times_panel(
            values.get("service"),
            day,
            values.get("therapist"),
            values.get("start", ""),
            needs_transport=checked(values, "needs_transport"),
            client_id=client_id,
            area_id=values.get("area"),
        ),
        "conflicts": conflicts,
    }
    return render(request, "desk/new.html", context)


def prefill(request: HttpRequest) -> dict[str, Any]:
    """Initial values from the link that opened the form: the board (a day, a therapist)
    or a rejected booking to rebook (?rebook=<id>: client, service, address, notes,
    transport and an area chosen for it)."""
    initial: dict[str, Any] = {"date": timezone.localdate()}
    day = day_from(request)
    if day is not None and request.GET.get("date"):
        initial["date"] = day
    for name in ("client", "service", "therapist"):
        if int_or_none(request.GET.get(name)):
            initial[name] = int_or_none(request.GET.get(name))
    source_id = int_or_none(request.GET.get("rebook"))
    source = (
        Appointment.objects.select_related("client").filter(pk=source_id).first()
        if source_id
        else None
    )
    if source is not None:
        initial.update(
            client=source.client_id,
            service=source.service_id,
            address=source.address,
            notes=source.notes,
            needs_transport=source.needs_transport,
        )
        if source.area_id and source.area_id != source.client.area_id:
            initial["area"] = source.area_id
    return initial


def conflict_message(error: Conflict, therapist_name: str) -> tuple[str, list[Appointment]]:
    """The service's conflict, with the appointments it names as the desk knows them."""
    ids = [c.appointment_id for c in error.conflicts if c.appointment_id]
    if not ids:
        return error.message, []
    clashing = list(
        Appointment.objects.filter(pk__in=ids).select_related("client", "service").order_by("start")
    )
    named = "; ".join(
        f"{a.client.name}, {a.service.name}, "
        f"{timezone.localtime(a.start):%a %-d %b %H:%M}–{local_hm(a.end)} "
        f"(away {local_hm(a.busy_from)}–{local_hm(a.busy_until)} with travel and clean-up)"
        for a in clashing
    )
    text = f"{therapist_name} is already booked then: {named}. Pick another time."
    return text, clashing


def book(form: AppointmentForm, actor: User) -> tuple[Appointment | None, list[Appointment]]:
    data = form.cleaned_data
    try:
        appointment = create_appointment(
            actor=actor,
            client_id=data["client"],
            service_id=data["service"],
            therapist_id=data["therapist"],
            start=data["start"],
            address=data["address"],
            notes=data["notes"],
            needs_transport=data["needs_transport"],
            area_id=data["area"],
        )
    except Conflict as error:
        if error.reason == NO_DRIVER:
            # The therapist could make it; the drivers cannot: said in the service's words
            # beside the time, which the form now shows as one with no driver.
            form.add_error("start", error.message)
            return None, []
        therapist = User.objects.filter(pk=data["therapist"]).first()
        text, clashing = conflict_message(error, str(therapist or "The therapist"))
        form.add_error("start", text)
        return None, clashing
    except DomainError as error:
        form_errors_from(form, error)
        return None, []
    return appointment, []


@desk_only
@require_http_methods(["GET", "POST"])
def new_appointment(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return new_form_page(request, AppointmentForm(initial=prefill(request)))
    form = AppointmentForm(request.POST)
    if not form.is_valid():
        return new_form_page(request, form)
    appointment, clashing = book(form, request.user)
    if appointment is None:
        return new_form_page(request, form, conflicts=clashing)
    messages.success(
        request,
        f"Booked {appointment.client.name} with {appointment.therapist} on "
        f"{timezone.localtime(appointment.start):%a %-d %b at %H:%M}. "
        "Waiting for the therapist to accept.",
    )
    return redirect("desk:appointment", pk=appointment.pk)


@desk_only
@require_GET
def booking_times(request: HttpRequest) -> HttpResponse:
    """How the therapist gets there, the therapist select and the start times of the
    booking form (htmx fragment)."""
    field = AppointmentForm.base_fields["date"]
    try:
        day = field.clean(request.GET.get("date", ""))
        day_error = ""
    except forms.ValidationError as error:
        day, day_error = None, error.messages[0]
    panel = times_panel(
        request.GET.get("service"),
        day,
        request.GET.get("therapist"),
        request.GET.get("start", ""),
        needs_transport=checked(request.GET, "needs_transport"),
        client_id=request.GET.get("client"),
        area_id=request.GET.get("area"),
    )
    if day_error and panel.service is not None:
        panel.note = day_error
    return render(request, "desk/_times.html", {"times": panel})


@desk_only
@require_POST
def client_search(request: HttpRequest) -> HttpResponse:
    """Clients by name or phone fragment. A POST, so that phone numbers never go into a
    URL (and so into access logs and browser history)."""
    query = request.POST.get("q", "")[:100]
    found = list(Client.objects.search(query)[: CLIENT_RESULTS + 1]) if query.strip() else []
    context = {
        "client_results": client_choices(
            found[:CLIENT_RESULTS], int_or_none(request.POST.get("client"))
        ),
        "query": query.strip(),
        "more": len(found) > CLIENT_RESULTS,
        "searched": True,
    }
    return render(request, "desk/_client_results.html", context)


@desk_only
@require_POST
def new_client(request: HttpRequest) -> HttpResponse:
    """Add a client from the booking form; they come back chosen."""
    form = ClientForm(request.POST)
    client = None
    if form.is_valid():
        client = call_for_form(
            form,
            create_client,
            name=form.cleaned_data["name"],
            phone=form.cleaned_data["phone"],
            address=form.cleaned_data["address"],
            area=form.cleaned_data["area"],
        )
    if not request.htmx:
        if client is None:
            page = AppointmentForm(initial={"date": timezone.localdate()})
            return new_form_page(request, page, client_form=form)
        return redirect(f"{reverse('desk:new')}?client={client.pk}")
    if client is None:
        return render(request, "desk/_new_client.html", {"client_form": form, "open": True})
    context = {
        "client_form": ClientForm(),
        "client_results": client_choices([client], client.pk),
        "added": client,
    }
    return render(request, "desk/_client_added.html", context)


# --- an appointment ------------------------------------------------------------------------


@dataclass
class TripLine:
    trip: Trip
    reason: str = ""
    checked_at: datetime | None = None


def allowed_actions(appointment: Appointment, actor_role: str | None) -> list[str]:
    """The page's actions that the rules table allows from the current status."""
    return [
        action
        for action in PAGE_ACTIONS
        if actor_role in states.APPOINTMENT_RULES[action].roles
        and appointment.status in states.APPOINTMENT_RULES[action].sources
    ]


@dataclass
class LogLine:
    at: datetime
    subject: str
    from_label: str
    to_label: str
    action_note: str
    actor: User | None
    reason: str


# Actions whose status change alone does not say what happened.
TOLD_ACTIONS = {
    "create": "booked",
    "reschedule": "rescheduled",
    "request_pickup": "pickup asked for",
}


def log_lines(appointment: Appointment) -> list[LogLine]:
    """The appointment's and its trips' transitions, oldest first, in one query."""
    rows = (
        Transition.objects.filter(Q(appointment=appointment) | Q(trip__appointment=appointment))
        .select_related("actor", "trip")
        .order_by("at", "id")
    )
    return [
        LogLine(
            at=t.at,
            subject=f"{word(t.trip.leg)} trip" if t.trip_id else "Appointment",
            from_label=word(t.from_status) if t.from_status else "",
            to_label=word(t.to_status),
            action_note="planned"
            if t.trip_id and t.action == "create"
            else TOLD_ACTIONS.get(t.action, ""),
            actor=t.actor,
            reason=t.reason,
        )
        for t in rows
    ]


def national_phone(e164: str) -> str:
    try:
        number = phonenumbers.parse(e164, default_region())
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def detail_context(appointment: Appointment) -> dict[str, Any]:
    """Everything about one appointment. `appointment` comes from `appointment_for`."""
    trips = labelled(list(appointment.trips.all()), "status", "leg")
    queued = [t for t in trips if t.status == TripStatus.QUEUED]
    reasons = {w.trip.pk: w for w in waiting_trips(queued)} if queued else {}
    sent = appointment.notifications.select_related("client", "user").order_by("-created_at", "-id")
    return {
        "appointment": appointment,
        "status_label": word(appointment.status),
        "payment_label": word(appointment.payment_status),
        "client_phone": national_phone(appointment.client.phone),
        "price": money(appointment.price),
        "transport": transport_of(appointment),
        "trips": [
            TripLine(t, reasons[t.pk].reason, reasons[t.pk].checked_at)
            if t.pk in reasons
            else TripLine(t)
            for t in trips
        ],
        "log": log_lines(appointment),
        "sent": failed_lines(list(sent)),
    }


def appointment_for(pk: int, user: User) -> Appointment:
    rows = (
        Appointment.objects.visible_to(user)
        .select_related("client__area", "service", "therapist", "created_by", "area")
        .prefetch_related(trips_prefetch())
    )
    return get_object_or_404(rows, pk=pk)


def actions_context(
    appointment: Appointment, user: User, forms_by_action: dict[str, forms.Form] | None = None
) -> dict[str, Any]:
    given = forms_by_action or {}
    actions = allowed_actions(appointment, role(user))
    day = local_date(appointment.start)
    reschedule = given.get("reschedule") or RescheduleForm(initial={"date": day})
    values = reschedule.data if reschedule.is_bound else {}
    bound = reschedule.is_bound
    chosen_day = getattr(reschedule, "cleaned_data", {}).get("date") if bound else day
    return {
        "appointment": appointment,
        "status_label": word(appointment.status),
        "actions": actions,
        "reschedule_form": reschedule,
        "reschedule_times": times_panel(
            appointment.service_id,
            chosen_day,
            appointment.therapist_id,
            values.get("reschedule-start", ""),
            moving=appointment,
        )
        if "reschedule" in actions
        else None,
        "cancel_form": given.get("cancel") or ReasonForm(prefix="cancel", reason_required=True),
        "no_show_form": given.get("no_show") or ReasonForm(prefix="no_show"),
    }


def detail_page(
    request: HttpRequest,
    appointment: Appointment,
    forms_by_action: dict[str, forms.Form] | None = None,
    *,
    after: int | None = None,
) -> HttpResponse:
    actions = actions_context(appointment, request.user, forms_by_action)
    for action, form in (forms_by_action or {}).items():
        # The status moved on and the action's form is no longer drawn: say why here.
        if action not in actions["actions"]:
            for error in form.non_field_errors():
                messages.error(request, error)
    context = {
        "live_after": after if after is not None else live_after(request.user),
        **detail_context(appointment),
        **actions,
    }
    return render(request, "desk/detail.html", context)


@desk_only
@require_GET
def appointment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    after = live_after(request.user)
    return detail_page(request, appointment_for(pk, request.user), after=after)


@desk_only
@require_GET
def appointment_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    appointment = appointment_for(pk, request.user)
    return render(request, "desk/_appointment.html", detail_context(appointment))


@desk_only
@require_GET
def appointment_actions(request: HttpRequest, pk: int) -> HttpResponse:
    """The actions panel, redrawn only when the status it was drawn for has changed: a
    change elsewhere must not wipe a reason being typed (204: htmx leaves it as it is)."""
    appointment = appointment_for(pk, request.user)
    if request.GET.get("drawn_for") == appointment.status:
        return HttpResponse(status=204)
    return render(request, "desk/_actions.html", actions_context(appointment, request.user))


@desk_only
@require_GET
def reschedule_times(request: HttpRequest, pk: int) -> HttpResponse:
    appointment = appointment_for(pk, request.user)
    try:
        day = RescheduleForm.base_fields["date"].clean(request.GET.get("reschedule-date", ""))
        day_error = ""
    except forms.ValidationError as error:
        day, day_error = None, error.messages[0]
    panel = times_panel(
        appointment.service_id,
        day,
        appointment.therapist_id,
        request.GET.get("reschedule-start", ""),
        moving=appointment,
    )
    if day_error:
        panel.note = day_error
    return render(
        request, "desk/_reschedule_times.html", {"times": panel, "appointment": appointment}
    )


@desk_only
@require_POST
def reschedule(request: HttpRequest, pk: int) -> HttpResponse:
    appointment = appointment_for(pk, request.user)
    form = RescheduleForm(request.POST)
    if form.is_valid():
        try:
            moved = reschedule_appointment(
                actor=request.user,
                appointment_id=appointment.pk,
                start=form.cleaned_data["start"],
                reason=form.cleaned_data["reason"],
            )
        except Conflict as error:
            form.add_error("start", conflict_message(error, str(appointment.therapist))[0])
        except DomainError as error:
            form_errors_from(form, error)
        else:
            messages.success(
                request,
                f"Moved to {timezone.localtime(moved.start):%a %-d %b at %H:%M}. "
                f"{moved.therapist} has to accept the new time.",
            )
            return redirect("desk:appointment", pk=appointment.pk)
    return detail_page(request, appointment, {"reschedule": form})


@desk_only
@require_POST
def act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Cancel or no-show: the status action with the reason typed."""
    appointment = appointment_for(pk, request.user)
    form = ReasonForm(request.POST, prefix=action, reason_required=action == "cancel")
    if form.is_valid():
        done = call_for_form(
            form,
            act_on_appointment,
            actor=request.user,
            appointment_id=appointment.pk,
            action=action,
            reason=form.cleaned_data["reason"],
        )
        if done is not None:
            label = {"cancel": "Cancelled", "no_show": "Marked as a no-show"}[action]
            messages.success(request, f"{label}. {done.client.name} and the therapist are told.")
            return redirect("desk:appointment", pk=appointment.pk)
    return detail_page(request, appointment, {action: form})


urlpatterns = [
    path("", board, name="board"),
    path("board/", board_fragment, name="board_fragment"),
    path("queues/", queues, name="queues"),
    path("queues/fragment/", queues_fragment, name="queues_fragment"),
    path("queues/summary/", attention_fragment, name="attention_fragment"),
    path("drivers/", drivers, name="drivers"),
    path("drivers/fragment/", drivers_fragment, name="drivers_fragment"),
    path("drivers/summary/", drivers_summary_fragment, name="drivers_summary_fragment"),
    path("notifications/<int:pk>/retry/", retry_notification, name="retry_notification"),
    path("appointments/new/", new_appointment, name="new"),
    path("appointments/new/times/", booking_times, name="booking_times"),
    path("clients/search/", client_search, name="client_search"),
    path("clients/new/", new_client, name="new_client"),
    path("appointments/<int:pk>/", appointment_detail, name="appointment"),
    path("appointments/<int:pk>/fragment/", appointment_fragment, name="appointment_fragment"),
    path("appointments/<int:pk>/actions/", appointment_actions, name="appointment_actions"),
    path("appointments/<int:pk>/times/", reschedule_times, name="reschedule_times"),
    path("appointments/<int:pk>/reschedule/", reschedule, name="reschedule"),
    path("appointments/<int:pk>/cancel/", act, {"action": "cancel"}, name="cancel"),
    path("appointments/<int:pk>/no-show/", act, {"action": "no_show"}, name="no_show"),
]
