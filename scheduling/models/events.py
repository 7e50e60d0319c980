from django.conf import settings
from django.db import models


class EventCounter(models.Model):
    """A single row holding the last stream sequence number handed out.

    Taking the next number locks this row until the writing transaction commits, so
    sequence order is commit order: a reader that has seen seq N can never later meet a
    smaller number committing (which a plain sequence would allow), and rolled-back
    transactions leave no gaps.
    """

    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"last stream seq {self.last_seq}"


class StreamEventQuerySet(models.QuerySet):
    def visible_to(self, user) -> "StreamEventQuerySet":
        """The desk stream carries everything; a therapist's or driver's only theirs."""
        if user.is_desk:
            return self
        return self.filter(recipients__user=user)


class StreamEvent(models.Model):
    """What changed, in order, for live dashboards and their catch-up."""

    seq = models.BigIntegerField(primary_key=True)
    type = models.CharField(max_length=40)
    data = models.JSONField(default=dict)
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    trip = models.ForeignKey(
        "scheduling.Trip", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = StreamEventQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.seq} {self.type}"


class StreamEventRecipient(models.Model):
    """A staff member's personal stream gets this event (the desk stream gets them all)."""

    event = models.ForeignKey(StreamEvent, on_delete=models.CASCADE, related_name="recipients")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "event"], name="event_recipient_unique"),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} for user {self.user_id}"
