"""What the worker tests share (the processes themselves are tests/worker_support.py's):
the reference model of FIFO dispatch that test_worker_dispatch.py and test_scale_out.py
compare the real workers' assignments with, and the horizon that keeps every trip in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduling.models import Trip

# Every trip is within the horizon: the tests are about order, not the clock.
HORIZON_MINUTES = 60 * 24 * 400


@dataclass
class Driver:
    id: int
    vehicle: str
    seats: int
    on_shift: bool = False
    driving: int | None = None


@dataclass
class Model:
    """FIFO as the issue states it, with nothing shared with the implementation."""

    drivers: dict[int, Driver]
    queue: list[int] = field(default_factory=list)
    waiting: dict[int, tuple] = field(default_factory=dict)  # trip -> (window, id, passengers)

    def go_on_shift(self, driver_id: int) -> None:
        driver = self.drivers[driver_id]
        driver.on_shift = True
        if driver.driving is None:
            self.queue.append(driver_id)

    def go_off_shift(self, driver_id: int) -> None:
        self.drivers[driver_id].on_shift = False
        if driver_id in self.queue:
            self.queue.remove(driver_id)

    def finish_trip(self, driver_id: int) -> None:
        driver = self.drivers[driver_id]
        driver.driving = None
        if driver.on_shift:
            self.queue.append(driver_id)

    def add_trip(self, trip: Trip) -> None:
        self.waiting[trip.pk] = (trip.window_start, trip.pk, trip.passengers)

    def fits(self, driver_id: int, passengers: int) -> bool:
        driver = self.drivers[driver_id]
        return passengers <= driver.seats and (passengers == 1 or driver.vehicle == "car")

    def dispatch(self) -> dict[int, int]:
        """Trips by window then creation; each to the longest-waiting driver who fits."""
        given = {}
        for _, trip_id, passengers in sorted(self.waiting.values()):
            chosen = next((d for d in self.queue if self.fits(d, passengers)), None)
            if chosen is None:
                continue
            self.queue.remove(chosen)
            self.drivers[chosen].driving = trip_id
            del self.waiting[trip_id]
            given[trip_id] = chosen
        return given
