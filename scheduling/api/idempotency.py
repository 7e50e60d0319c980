"""Idempotency-Key: the first response to a keyed request is kept and replayed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from scheduling.errors import KeyReused
from scheduling.models import IdempotencyKey, User

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: Any
    replayed: bool


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def once(
    *, user: User, key: str, request_fingerprint: str, produce: Callable[[], tuple[int, Any]]
) -> Outcome:
    """Run `produce` at most once per (user, key), inside one transaction with it.

    A concurrent duplicate blocks on the unique index until the first commits and then
    replays its stored response; if the first fails, its row goes with its rollback and
    the duplicate runs as if it were first.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                claim = IdempotencyKey.objects.create(
                    user=user, key=key, fingerprint=request_fingerprint
                )
        except IntegrityError:
            stored = IdempotencyKey.objects.get(user=user, key=key)
            if stored.fingerprint != request_fingerprint:
                raise KeyReused(
                    "This Idempotency-Key was already used with a different request."
                ) from None
            # The claim and its response commit in one transaction, so a row another
            # request can read always has its status code.
            assert stored.status_code is not None
            return Outcome(stored.status_code, stored.response, replayed=True)
        status_code, body = produce()
        claim.status_code, claim.response = status_code, body
        claim.save(update_fields=["status_code", "response"])
    return Outcome(status_code, body, replayed=False)
