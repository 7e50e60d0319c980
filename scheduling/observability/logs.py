"""Structured logs: the request id, the formatters and filters every log line goes through,
and the one line per HTTP request, Celery task run and stream publication.

The request id lives in a context variable: a web request binds it (MetricsMiddleware),
every Celery task enqueued while it is bound carries it in the message's headers
(`before_task_publish`), the worker binds it again around the task's run (so the tasks
that task enqueues carry it on), and the websocket session binds its own
(scheduling/observability/wslog.py). Each log record gets it from there (ContextFilter),
so one booking's request, its dispatch and notification tasks and its stream publication
share one id. Context variables, not thread-locals: an asyncio task and a thread pool's
`sync_to_async` call both see the id of the code that started them.

No log line carries a phone number, an address, a name or a message body: the lines
below log ids, and RedactFilter replaces whatever looks like a phone number in any line
(the message, its arguments, the traceback, the extra fields) as a safety net.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from celery import signals
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

HEADER = "X-Request-ID"
# What a proxy may hand us as a request id: bounded, and nothing a log reader or a
# header could trip on (no spaces, quotes, control characters or non-ASCII).
SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# The Celery message header that carries it.
TASK_HEADER = "request_id"

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

requests_log = logging.getLogger("scheduling.request")
tasks_log = logging.getLogger("scheduling.task")
stream_log = logging.getLogger("scheduling.stream")


def new_id() -> str:
    return uuid.uuid4().hex


def sane(value: object) -> str | None:
    """`value` if it is an acceptable request id, else None."""
    if isinstance(value, str) and SANE_ID.fullmatch(value):
        return value
    return None


def from_proxy(value: str | None) -> str:
    """The request id for an incoming request or websocket: the one the trusted proxy sent
    (only when NUM_PROXIES says one is in front, and only a sane value), else a new one.
    Without a trusted proxy the header comes from the client, who must not choose it."""
    from django.conf import settings

    if getattr(settings, "NUM_PROXIES", None) and (given := sane(value)):
        return given
    return new_id()


def current() -> str | None:
    return REQUEST_ID.get()


@contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- formatting and filtering ---------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Every record gets the request id bound where it was logged (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            # Django logs a 4xx/5xx response after the middleware has returned, with the
            # request on the record: the id is read from it then.
            request = getattr(record, "request", None)
            record.request_id = REQUEST_ID.get() or getattr(request, "request_id", None)
        return True


# E.164 (+ and 7-15 digits, spaces, dots or dashes allowed between them) and the local
# Philippine mobile form (09xx xxx xxxx).
PHONE = re.compile(r"(?<![\w+])(?:\+[1-9](?:[ .-]?\d){6,14}|0 ?9\d{2}(?:[ .-]?\d){7})(?![\w])")
REDACTED = "[redacted phone]"
# The record's own attributes: everything else on it came from `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


def redact(text: str) -> str:
    return PHONE.sub(REDACTED, text)


class RedactFilter(logging.Filter):
    """A safety net: what looks like a phone number in a record is replaced, wherever in
    the record it is. (The log calls themselves log ids; this catches what they did not
    think of, such as a provider's error message inside a traceback.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatters print exc_text instead
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = _scrubbed(value)
        return True


def _scrubbed(value: Any, depth: int = 0) -> Any:
    """An extra field, JSON-ready with its phone numbers out: numbers stay numbers, lists
    and dicts stay themselves, anything else is written as its text (Django's `request`
    shows its path)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, list | tuple):
        return [_scrubbed(item, depth + 1) for item in value]
    if depth < 4 and isinstance(value, dict):
        return {str(k): _scrubbed(v, depth + 1) for k, v in value.items()}
    return redact(str(value))


QUERY = re.compile(r"\?[^\s\"'\]]*")


class QueryFilter(logging.Filter):
    """For the development servers' access lines (runserver, daphne's runserver): the path
    without its query string, which can hold a phone number, a name or a websocket's API
    token. (Under gunicorn and daphne in the stack there is no access log: the request
    line above names the route.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = QUERY.sub("?…", message), ()
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    and the record's extra fields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "message"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.setdefault("request_id", getattr(record, "request_id", None))


class TextFormatter(logging.Formatter):
    """The human-readable line (LOG_FORMAT=text): UTC time, level, logger, message, and
    the request id when there is one. Django sets the process time zone to TIME_ZONE;
    logs stay in UTC so that web, worker and database logs line up."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed's signature is narrower

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)sZ %(levelname)s %(name)s %(message)s")
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id:
            first, nl, rest = line.partition("\n")
            line = f"{first} [{request_id}]{nl}{rest}"
        return line


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """settings.LOGGING: one handler on stdout, JSON or text, behind both filters."""
    if log_format not in {"json", "text"}:
        raise ValueError(f"LOG_FORMAT must be json or text, not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "scheduling.observability.logs.ContextFilter"},
            "redact": {"()": "scheduling.observability.logs.RedactFilter"},
            "no_query": {"()": "scheduling.observability.logs.QueryFilter"},
        },
        "formatters": {
            "json": {"()": "scheduling.observability.logs.JsonFormatter"},
            "text": {"()": "scheduling.observability.logs.TextFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": log_format,
                "filters": ["context", "redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        # Django's development servers log each request with its query string, through a
        # handler of their own: here they go through this one, without the query.
        "loggers": {
            name: {"handlers": ["console"], "filters": ["no_query"], "propagate": False}
            for name in ("django.server", "django.channels.server")
        },
    }


# --- the lines --------------------------------------------------------------------------------


def request_line(
    *, method: str, route: str, status: int, seconds: float, user: Any, request_id: str
) -> None:
    user_id = role = None
    if user is not None and getattr(user, "is_authenticated", False):
        user_id, role = user.pk, getattr(user, "effective_role", None)
    requests_log.info(
        "%s %s %s %.1f ms",
        method,
        route,
        status,
        ms(seconds),
        extra={
            "kind": "request",
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": ms(seconds),
            "user": user_id,
            "role": role,
            "request_id": request_id,
        },
    )


def stream_line(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """The events handed to the channel layer: their sequence numbers and types only (the
    data has addresses and notes)."""
    seqs = [message["seq"] for _, message in messages if "seq" in message]
    kinds = [message.get("event") or message.get("type") for _, message in messages]
    stream_log.info(
        "published events %s", seqs, extra={"kind": "stream", "seqs": seqs, "events": kinds}
    )


# --- Celery: the id travels in the task's headers ------------------------------------------


@signals.before_task_publish.connect
def _carry(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = REQUEST_ID.get()
    if headers is not None and request_id is not None:
        headers.setdefault(TASK_HEADER, request_id)


def enter_task(task: Any) -> Token[str | None]:
    """Bind the id for a task's run: the one its message carried; in-process (eager) the
    caller's; otherwise (beat, a command) a new one, which the tasks it enqueues carry on."""
    request = getattr(task, "request", None)
    carried = sane(getattr(request, TASK_HEADER, None))
    if carried is None and getattr(request, "is_eager", False):
        carried = REQUEST_ID.get()
    return REQUEST_ID.set(carried or new_id())


def leave_task(
    token: Token[str | None], *, task: str, task_id: str, state: str, seconds: float | None
) -> None:
    tasks_log.info(
        "%s[%s] %s %s",
        task,
        task_id,
        state,
        "" if seconds is None else f"{ms(seconds):.1f} ms",
        extra={
            "kind": "task",
            "task": task,
            "task_id": task_id,
            "state": state,
            "duration_ms": None if seconds is None else ms(seconds),
        },
    )
    try:
        REQUEST_ID.reset(token)
    except ValueError:  # bound in another context (cannot happen with Celery's pools)
        REQUEST_ID.set(None)
