"""Ending a login ends its live stream. A websocket outlives the request that opened it,
so a user who signs out, is deactivated, or loses an API token would otherwise keep
receiving events on sockets already open. Each of those publishes a revocation on the
stream's group; every realtime process closes the matching sockets with 4401 ("log in
again": live.js stops and the page asks for a login).

Which sockets match: those of the signed-out session; those authenticated by the deleted
token; every socket of a deactivated user.
"""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from scheduling.models import User
from scheduling.realtime import events

REVOKE = "stream.revoke"


def revoke(*, user_id: int, session_key: str | None = None, token: str | None = None) -> None:
    """Close `user_id`'s sockets (only the session's or the token's when one is named),
    once the surrounding transaction commits."""
    message = {"type": REVOKE, "user": user_id, "session": session_key, "token": token}
    transaction.on_commit(lambda: events.publish([(events.STREAM_GROUP, message)]), robust=True)


def matches(message: dict, *, session_key: str | None, token: str | None) -> bool:
    """Whether a socket opened with this session or token is the one revoked."""
    if message.get("session"):
        return message["session"] == session_key
    if message.get("token"):
        return message["token"] == token
    return True


@receiver(user_logged_out)
def _signed_out(sender, request, user, **kwargs) -> None:
    # Sent before the session is flushed, so its key still names the socket's session.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        revoke(user_id=user.pk, session_key=session_key)


@receiver(post_save, sender=User)
def _deactivated(sender, instance: User, **kwargs) -> None:
    if not instance.is_active:
        revoke(user_id=instance.pk)


@receiver(post_delete, sender=Token)
def _token_deleted(sender, instance: Token, **kwargs) -> None:
    revoke(user_id=instance.user_id, token=instance.key)
