from django.db import models


class StreamRetention(models.Model):
    """One row: the highest stream seq deleted by retention (0 while nothing was).

    Written in the same transaction as each batch it deletes, so a reader that reads
    events first and this row second can tell "nothing happened after my seq" from
    "what happened after my seq is gone" (and tells the client to reload).
    """

    pruned_through = models.BigIntegerField(default=0)
    pruned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"stream pruned through {self.pruned_through}"
