"""A standing booking: one client's appointment repeated every 1, 2 or 4 weeks (issue 14)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

EVERY_WEEKS = (1, 2, 4)


class Series(models.Model):
    """The repeat as asked for; its occurrences are the appointments linked to it.

    `first_start` is the first date asked for and `wall_time` its local time in the
    business time zone, which every occurrence keeps across DST changes."""

    every_weeks = models.PositiveSmallIntegerField()
    count = models.PositiveSmallIntegerField(null=True, blank=True)
    until = models.DateField(null=True, blank=True)
    first_start = models.DateTimeField()
    wall_time = models.TimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "series"
        constraints = [
            models.CheckConstraint(
                condition=Q(every_weeks__in=EVERY_WEEKS), name="series_every_1_2_or_4_weeks"
            ),
            models.CheckConstraint(
                condition=(
                    Q(count__isnull=False, until__isnull=True)
                    | Q(count__isnull=True, until__isnull=False)
                ),
                name="series_count_or_until",
            ),
        ]

    def __str__(self) -> str:
        return f"series #{self.pk} ({self.cadence})"

    @property
    def cadence(self) -> str:
        """How the desk says the repeat: "weekly", "every 2 weeks"."""
        return "weekly" if self.every_weeks == 1 else f"every {self.every_weeks} weeks"
