"""`manage.py travel_clashes`: bookings made before travel was counted that clash now."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from scheduling.formats import clock, moment
from scheduling.services.travel import travel_clashes


class Command(BaseCommand):
    help = (
        "List the active appointments booked before travel time was counted whose travel "
        "there and back would overlap another booking of the same therapist, or run outside "
        "their working time. Nothing is changed: move or reassign them on the desk."
    )

    def handle(self, *args, **options) -> None:
        found = travel_clashes(now=timezone.now())
        if not found:
            self.stdout.write("No booking made before travel was counted clashes: 0 to fix.")
            return
        self.stdout.write(f"{len(found)} booking(s) to fix:")
        for clash in found:
            a = clash.appointment
            held = clash.would_hold
            line = (
                f"#{a.pk} {moment(a.start)} {a.therapist} ({a.service}): with travel it "
                f"holds {clock(held.start)}–"
                f"{clock(held.end)}"
            )
            reasons = [f"meets #{b.pk} at {moment(b.start)}" for b in clash.clashes_with]
            if clash.outside:
                reasons.append(f"runs {clash.outside}")
            self.stdout.write(f"  {line}; {'; '.join(reasons)}")
