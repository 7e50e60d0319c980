"""`manage.py dispatch_queue`: the driver queue and the queued trips; `--run` dispatches."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from scheduling.formats import clock, moment
from scheduling.models import DispatchDecision, DriverProfile, Trip, TripStatus, User
from scheduling.services.dispatch import dispatchable, driver_queue, last_decisions, run_pass


def describe(driver: DriverProfile) -> str:
    seats = f", {driver.seats} seats" if driver.vehicle == "car" else ""
    return f"{driver.user} ({driver.vehicle}{seats})"


def by_hand(decision: DispatchDecision) -> str:
    """'given to Liza by Joy at Mon 3 Jun 08:10: she knows the gate'."""
    verb = "given to" if decision.outcome == "assigned" else "taken back from"
    return (
        f"{verb} {decision.driver} by {decision.decided_by} at "
        f"{moment(decision.decided_at)}: {decision.reason}"
    )


class Command(BaseCommand):
    help = (
        "Print the driver queue (longest waiting first) and the queued trips with the "
        "dispatcher's last word on each; with --run, run one dispatch pass first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", action="store_true", help="Run one dispatch pass first.")
        parser.add_argument(
            "--limit", type=int, default=50, help="Queued trips to list (default 50)."
        )

    def handle(self, *args, **options) -> None:
        if options["run"]:
            self.report_pass(run_pass())
        now = timezone.now()
        self.stdout.write("Driver queue, longest waiting first:")
        queue = list(driver_queue())
        for position, driver in enumerate(queue, start=1):
            self.stdout.write(
                f"  {position}. {describe(driver)}, waiting since {moment(driver.available_since)}"
            )
        if not queue:
            self.stdout.write("  (nobody waiting)")

        trips = list(
            Trip.objects.filter(status=TripStatus.QUEUED)
            .select_related("appointment")
            .order_by("window_start", "created_at", "id")[: options["limit"]]
        )
        ready = set(
            Trip.objects.filter(dispatchable(now), pk__in=[t.pk for t in trips]).values_list(
                "pk", flat=True
            )
        )
        decisions = last_decisions([t.pk for t in trips])
        names = self.driver_names(decisions.values())
        self.stdout.write("Queued trips, by window:")
        for trip in trips:
            when = "dispatchable now" if trip.pk in ready else "waits for the horizon"
            line = (
                f"  #{trip.pk} {trip.leg} of appointment #{trip.appointment_id}, "
                f"{moment(trip.window_start)}-{clock(trip.window_end)}, "
                f"{trip.passengers} passenger(s): {when}"
            )
            decision = decisions.get(trip.pk)
            if decision is not None and decision.decided_by_id is not None:
                line += f"; {by_hand(decision)}"
            elif decision is not None:
                skipped = ", ".join(
                    f"{names.get(s['driver'], s['driver'])} {s['reason']}" for s in decision.skipped
                )
                line += f"; no driver at {moment(decision.decided_at)}"
                line += f" (skipped: {skipped})" if skipped else " (queue empty)"
            self.stdout.write(line)
        if not trips:
            self.stdout.write("  (no queued trips)")

        # Issue 13: who gave or took back which trip by hand, and why.
        manual = list(
            DispatchDecision.objects.filter(decided_by__isnull=False)
            .select_related("driver", "decided_by")
            .order_by("-id")[: options["limit"]]
        )
        self.stdout.write("Decisions taken by hand, latest first:")
        for decision in manual:
            self.stdout.write(f"  trip #{decision.trip_id}: {by_hand(decision)}")
        if not manual:
            self.stdout.write("  (none)")

    def report_pass(self, decisions: list[DispatchDecision]) -> None:
        names = self.driver_names(decisions)
        self.stdout.write(f"Dispatch pass: {len(decisions)} decision(s).")
        for d in decisions:
            if d.driver_id:
                self.stdout.write(f"  trip #{d.trip_id} -> {names[d.driver_id]}")
            else:
                self.stdout.write(f"  trip #{d.trip_id}: no driver ({len(d.skipped)} skipped)")

    @staticmethod
    def driver_names(decisions) -> dict[int, str]:
        ids: set[int] = set()
        for d in decisions:
            ids.update(s["driver"] for s in d.skipped)
            if d.driver_id:
                ids.add(d.driver_id)
        return {u.pk: str(u) for u in User.objects.filter(pk__in=ids)}
