from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    """The first response to a POST sent with an Idempotency-Key, replayed on retries.

    The unique (user, key) row is inserted in the same transaction as the thing it
    creates, so a concurrent duplicate waits for the first to commit and then replays
    it; if the first fails, nothing is stored and the retry runs afresh.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the request (method, path, body) so a reused key with another body is seen.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
