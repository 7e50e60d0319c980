"""A fake SMS/WhatsApp/email provider: the outside world for tests and benchmarks.

It behaves like a provider that accepts an idempotency key: the first call with a key
delivers and answers with a message id; any later call with that key answers with the
same id and delivers nothing. It fails on demand, takes time, and counts everything.

Its state lives in Redis (`SCHEDULING["FAKE_PROVIDER_URL"]`, keys prefixed by the optional
`FAKE_PROVIDER_NAMESPACE`), so a test can configure it and count what a separate worker
process sent; without that URL it lives in the process.

Failures are decided by hashing, so a test can predict them exactly: a key fails
permanently when `fails_permanently(key)`, and its n-th call fails transiently when
`fails_transiently(key, n)`.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from functools import cache
from typing import cast

import redis
from django.conf import settings

from scheduling.notify import Message, PermanentError, TransientError

PREFIX = "fakeprovider:"


@dataclass(frozen=True)
class Behaviour:
    transient_rate: float = 0.0
    permanent_rate: float = 0.0
    latency_ms: float = 0.0
    # After delivering, before answering: a provider that took the message but whose
    # answer is slow (or never arrives, if the caller dies meanwhile).
    answer_ms: float = 0.0
    seed: str = "0"

    def fails_permanently(self, key: str) -> bool:
        return unit(self.seed, "permanent", key) < self.permanent_rate

    def fails_transiently(self, key: str, call: int) -> bool:
        return unit(self.seed, "transient", key, str(call)) < self.transient_rate


def unit(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts`."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class RedisStore:
    def __init__(self, url: str, namespace: str = "") -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = PREFIX + namespace
        # One round trip each (a script is cheaper for the caller than a pipeline).
        self._start = self.redis.register_script(
            "return {redis.call('HGETALL', KEYS[1]), "
            "redis.call('HINCRBY', KEYS[2], ARGV[1], 1), "
            "redis.call('HGET', KEYS[3], ARGV[1])}"
        )
        # Atomic: the log gets the key only if this call set it.
        self._deliver = self.redis.register_script(
            "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then "
            "redis.call('RPUSH', KEYS[2], ARGV[1]) return 1 end return 0"
        )

    def behaviour(self) -> Behaviour:
        return self._parse(self.redis.hgetall(self.prefix + "config"))

    @staticmethod
    def _parse(raw: dict) -> Behaviour:
        return Behaviour(
            transient_rate=float(raw.get("transient_rate", 0)),
            permanent_rate=float(raw.get("permanent_rate", 0)),
            latency_ms=float(raw.get("latency_ms", 0)),
            answer_ms=float(raw.get("answer_ms", 0)),
            seed=raw.get("seed", "0"),
        )

    def start(self, key: str) -> tuple[Behaviour, int, str | None]:
        """The behaviour, this call's number for `key`, and its first delivery's id: one
        round trip."""
        names = ("config", "calls", "delivered")
        flat, call, first = self._start(keys=[self.prefix + n for n in names], args=[key])
        return self._parse(dict(zip(flat[::2], flat[1::2], strict=True))), call, first

    def configure(self, behaviour: Behaviour) -> None:
        self.redis.hset(
            self.prefix + "config", mapping={k: str(v) for k, v in asdict(behaviour).items()}
        )

    def call(self, key: str) -> int:
        return self.redis.hincrby(self.prefix + "calls", key, 1)

    def delivered(self, key: str) -> str | None:
        # decode_responses: str, never bytes
        return cast(str | None, self.redis.hget(self.prefix + "delivered", key))

    def deliver(self, key: str, provider_id: str) -> bool:
        return bool(
            self._deliver(
                keys=[self.prefix + "delivered", self.prefix + "log"], args=[key, provider_id]
            )
        )

    def calls(self) -> dict[str, int]:
        calls = cast(dict[str, str], self.redis.hgetall(self.prefix + "calls"))
        return {k: int(v) for k, v in calls.items()}

    def log(self) -> list[str]:
        return cast(list[str], self.redis.lrange(self.prefix + "log", 0, -1))

    def delivered_count(self) -> int:
        return self.redis.llen(self.prefix + "log")

    def reset(self) -> None:
        self.redis.delete(*(self.prefix + name for name in ("config", "calls", "delivered", "log")))


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def behaviour(self) -> Behaviour:
        return self._behaviour

    def start(self, key: str) -> tuple[Behaviour, int, str | None]:
        return self._behaviour, self.call(key), self.delivered(key)

    def configure(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour

    def call(self, key: str) -> int:
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            return self._calls[key]

    def delivered(self, key: str) -> str | None:
        return self._delivered.get(key)

    def deliver(self, key: str, provider_id: str) -> bool:
        with self._lock:
            if key in self._delivered:
                return False
            self._delivered[key] = provider_id
            self._log.append(key)
            return True

    def calls(self) -> dict[str, int]:
        return dict(self._calls)

    def log(self) -> list[str]:
        return list(self._log)

    def delivered_count(self) -> int:
        return len(self._log)

    def reset(self) -> None:
        self._behaviour = Behaviour()
        self._calls: dict[str, int] = {}
        self._delivered: dict[str, str] = {}
        self._log: list[str] = []


@cache
def _store_for(url: str, namespace: str) -> RedisStore | MemoryStore:
    return RedisStore(url, namespace) if url else MemoryStore()


def store() -> RedisStore | MemoryStore:
    config = settings.SCHEDULING
    return _store_for(config["FAKE_PROVIDER_URL"], config.get("FAKE_PROVIDER_NAMESPACE", ""))


class FakeProvider:
    dedupes_by_key = True

    def send(self, message: Message) -> str:
        shared = store()
        behaviour, call, first = shared.start(message.key)
        if first:
            return first
        if behaviour.fails_permanently(message.key):
            raise PermanentError("fake provider: recipient rejected")
        if behaviour.fails_transiently(message.key, call):
            raise TransientError(f"fake provider: try again (call {call})")
        if behaviour.latency_ms:
            time.sleep(behaviour.latency_ms / 1000)
        provider_id = f"fake-{uuid.uuid4().hex[:16]}"
        if not shared.deliver(message.key, provider_id):
            # A concurrent call with the same key delivered first: answer with its id.
            provider_id = shared.delivered(message.key) or provider_id
        if behaviour.answer_ms:
            time.sleep(behaviour.answer_ms / 1000)
        return provider_id
