"""The booking form's times panel, shared by booking and rescheduling: how the therapist
gets there, the therapists who perform the service and their start times, all from the
availability service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.utils import timezone

from scheduling.domain import local_date
from scheduling.errors import ValidationFailed
from scheduling.formats import clock
from scheduling.models import Appointment, Client, Service, ServiceArea, User
from scheduling.services.availability import availability
from scheduling.services.common import latest_bookable
from scheduling.services.travel import Travel, default_minutes, travel_for, travel_of
from scheduling.views.desk.choice import any_therapist_starts
from scheduling.views.desk.present import int_or_none


@dataclass(frozen=True)
class Offer:
    """The free times the panel shows: one therapist's, or (therapist None) anyone's."""

    therapist: User | None
    starts: list[datetime]
    no_driver: list[datetime]


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
    panel.service = Service.objects.bookable().filter(pk=service_pk).first() if service_pk else None
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
    mine = next(
        (
            Offer(a.therapist, a.starts, a.no_driver)
            for a in offered
            if a.therapist.pk == panel.therapist_id
        ),
        None,
    )
    if panel.therapist_id is None and panel.therapists and moving is None:
        # "Any therapist": every start someone can take (the choice is made at booking).
        mine = Offer(None, *any_therapist_starts(offered))
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
        who = mine.therapist or "any therapist"
        panel.note = f"No driver is free to take {who} to any of their free times that day. {then}"
    elif not mine.starts:
        who = mine.therapist or "No therapist"
        panel.note = f"{who} has no free time for {panel.service.name} that day."
    if mine is not None:
        refused = set(mine.no_driver)
        panel.slots = [
            Slot(timezone.localtime(s).isoformat(), clock(s), s in refused)
            for s in sorted([*mine.starts, *mine.no_driver])
        ]
    return panel
