"""Structured logs (issue 16 item 6): one JSON line per request, task run, websocket
session and stream publication, all with the request id that follows a booking, and no
phone, name, address or message body in any of them.

Every record is captured raw (before the redaction filter, so the log calls themselves
are shown clean, not just scrubbed), formatted by the product's JSON formatter.
"""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from config.asgi import application
from scheduling.models import Appointment, Notification, Trip
from scheduling.observability import logs
from scheduling.realtime.events import EventBatch
from tests import factories

MANILA = ZoneInfo("Asia/Manila")
HEX_ID = re.compile(r"[0-9a-f]{32}")
COMMON = {"time", "level", "logger", "message", "request_id"}
FIELDS = {
    "request": {"method", "route", "status", "duration_ms", "user", "role"},
    "task": {"task", "task_id", "state", "duration_ms"},
    "stream": {"seqs", "events"},
    "websocket": {"user", "role", "state"},
}
FAKE = "scheduling.notify.fake.FakeProvider"


class Captured:
    """Every log record from every logger, as the JSON lines the product writes."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.addFilter(logs.ContextFilter())
        self.handler.setFormatter(logs.JsonFormatter())

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        parsed = []
        for line in self.text().splitlines():
            record = json.loads(line)  # each line on its own is one JSON object
            assert isinstance(record, dict) and set(record) >= COMMON, line
            kind = record.get("kind")
            if kind in FIELDS:
                assert FIELDS[kind] <= set(record), line
            parsed.append(record)
        return parsed

    def of(self, kind: str, **match) -> list[dict]:
        return [
            r
            for r in self.lines()
            if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items())
        ]


@pytest.fixture
def captured():
    capture = Captured()
    root = logging.getLogger()
    level = root.level
    # First, so that no other handler's filter has touched a record before it is seen.
    root.handlers.insert(0, capture.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(level)


@pytest.fixture
def trusted_proxy(settings):
    settings.NUM_PROXIES = 1


@pytest.fixture
def fake_sms(settings):
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {"sms": FAKE, "whatsapp": FAKE, "email": FAKE},
    }
    from scheduling.notify.fake import store

    provider = store()
    provider.reset()
    yield provider
    provider.reset()


def api_as(user, request_id: str | None = None) -> APIClient:
    client = APIClient()
    token = Token.objects.get_or_create(user=user)[0].key
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    if request_id:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}", HTTP_X_REQUEST_ID=request_id)
    return client


# --- the request id ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_id_is_generated_echoed_and_logged(captured, desk):
    response = api_as(desk).get("/api/appointments/")
    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    assert HEX_ID.fullmatch(request_id)
    [line] = captured.of("request", request_id=request_id)
    assert line["method"] == "GET" and line["route"] == "/api/appointments/"
    assert line["status"] == 200 and line["duration_ms"] >= 0
    assert (line["user"], line["role"]) == (desk.pk, "receptionist")
    assert line["level"] == "INFO" and line["logger"] == "scheduling.request"
    again = api_as(desk).get("/api/appointments/")
    assert again["X-Request-ID"] != request_id  # one per request


@pytest.mark.django_db
def test_a_trusted_proxys_sane_id_is_kept_an_untrusted_one_never(settings, desk):
    sent = "edge-7f3a.91:0001"
    settings.NUM_PROXIES = None  # no proxy in front: the header is the client's own
    assert api_as(desk, sent).get("/api/appointments/")["X-Request-ID"] != sent
    settings.NUM_PROXIES = 1
    assert api_as(desk, sent).get("/api/appointments/")["X-Request-ID"] == sent


UGLY_IDS = [
    "",
    " ",
    "a" * 129,
    "has space",
    "new\nline",
    "tab\there",
    'quote"d',
    "<script>",
    "ñandú",
    "-leading-dash",
    "semi;colon",
    "+639171234567 ",
    "a/b",
    "x" * 10_000,
]


@pytest.mark.django_db
@pytest.mark.parametrize("ugly", UGLY_IDS)
def test_ugly_request_ids_are_replaced_not_echoed(trusted_proxy, captured, desk, ugly):
    client = APIClient()
    client.force_authenticate(desk)
    response = client.get("/api/appointments/", headers={"X-Request-ID": ugly})
    assert response.status_code == 200
    assert HEX_ID.fullmatch(response["X-Request-ID"])
    assert ugly.strip() == "" or ugly not in captured.text()


@pytest.mark.django_db
def test_a_page_and_a_404_are_logged_too_without_their_path(captured, desk):
    from django.test import Client as PageClient

    pages = PageClient()
    pages.force_login(desk)
    assert pages.get("/").status_code in {200, 302}
    missing = pages.get("/no/such/page/+639171234567/Maria-Santos/")
    assert missing.status_code == 404
    lines = captured.of("request", request_id=missing["X-Request-ID"])
    assert [(r["route"], r["status"]) for r in lines] == [("<unmatched>", 404)]
    assert "Maria-Santos" not in json.dumps(lines)  # the route, never the path
    # Django's own "Not Found" line names the path (with the request's id); the
    # redaction filter takes the phone number out of it.
    redacted = Captured()
    redacted.handler.addFilter(logs.RedactFilter())
    root = logging.getLogger()
    root.handlers.insert(0, redacted.handler)
    try:
        pages.get("/no/such/page/+639171234567/")
    finally:
        root.removeHandler(redacted.handler)
    [django_line] = [r for r in redacted.lines() if r["logger"] == "django.request"]
    assert django_line["message"] == "Not Found: /no/such/page/[redacted phone]/"
    assert HEX_ID.fullmatch(django_line["request_id"])
    assert "639171234567" not in redacted.text()


# --- redaction --------------------------------------------------------------------------

PHONES = [
    "+639171234567",
    "+63 917 123 4567",
    "+63-917-123-4567",
    "+1 415 555 0100",
    "+442071838750",
    "09171234567",
    "0917 123 4567",
]


@pytest.mark.parametrize("phone", PHONES)
def test_the_redaction_filter_replaces_phone_numbers_wherever_they_are(phone):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(logs.RedactFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "to %s failed",
            phone,
            extra={"detail": f"provider said {phone}", "sent": {"to": [phone], "n": 1}},
        )
        try:
            raise ValueError(f"invalid number {phone}")
        except ValueError:
            logger.exception("sending to " + phone)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = stream.getvalue()
    digits = re.sub(r"\D", "", phone)
    assert digits not in re.sub(r"\D", "", text.replace("Z", ""))
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "to [redacted phone] failed"
    assert first["detail"] == "provider said [redacted phone]"
    assert first["sent"] == {"to": ["[redacted phone]"], "n": 1}  # still JSON, not text
    assert "ValueError: invalid number [redacted phone]" in second["exc_info"]


def test_ids_times_and_amounts_are_not_taken_for_phone_numbers():
    for text in [
        "notification 12345678 (sms) failed after 3 attempt(s)",
        "seq 1234567890123",
        "2030-05-01T14:00:00+08:00",
        "price 900.00",
        "task 2f1d3c4b-0917-4123-8567-1234567890ab",
        "0.091712345",
    ]:
        assert logs.redact(text) == text


@pytest.mark.parametrize("name", ["django.server", "django.channels.server"])
def test_the_development_servers_access_lines_lose_their_query_strings(name):
    capture = Captured()
    logger = logging.getLogger(name)
    logger.addHandler(capture.handler)
    try:
        logger.info(
            "HTTP %(method)s %(path)s %(status)s",
            {"method": "GET", "path": "/api/clients/?search=Maria+Santos", "status": 200},
        )
        logger.info('"GET /desk/clients/?q=%s HTTP/1.1" 200 512', "+639171234567")
        logger.info("WebSocket CONNECT /ws/stream/?token=0123abcd&after=5 [127.0.0.1:5]")
    finally:
        logger.removeHandler(capture.handler)
    assert [line["message"] for line in capture.lines()] == [
        "HTTP GET /api/clients/?… 200",
        '"GET /desk/clients/?… HTTP/1.1" 200 512',
        "WebSocket CONNECT /ws/stream/?… [127.0.0.1:5]",
    ]


def test_log_format_must_be_json_or_text():
    assert logs.logging_config(log_format="json", level="INFO")["handlers"]["console"]
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logs.logging_config(log_format="yaml", level="INFO")


def test_text_lines_carry_the_request_id_too():
    record = logging.LogRecord("scheduling.x", logging.INFO, __file__, 1, "hello", (), None)
    with logs.bound("abc123"):
        logs.ContextFilter().filter(record)
    line = logs.TextFormatter().format(record)
    assert line.endswith("INFO scheduling.x hello [abc123]") and "Z " in line


# --- a booking's whole life -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # real commits: tasks and publication run on commit
def test_a_bookings_whole_life_shares_its_request_id_and_leaks_nothing(
    captured, trusted_proxy, fake_sms, desk, service, therapist, client_record
):
    factories.ensure_driver()
    client_record.address = "12 Mabini St, Makati"
    client_record.save()
    therapist.phone = "+639189876543"
    therapist.save()
    notes = "Gate code 4417 at the guardhouse; ask for Lola Ines"
    with time_machine.travel(datetime(2030, 4, 30, 9, 0, tzinfo=MANILA), tick=False):
        created = api_as(desk, "booking-life-1").post(
            "/api/appointments/",
            {
                "client": client_record.pk,
                "service": service.pk,
                "therapist": therapist.pk,
                "start": datetime(2030, 5, 1, 10, 0, tzinfo=MANILA).isoformat(),
                "needs_transport": True,
                "notes": notes,
            },
            format="json",
        )
        assert created.status_code == 201, created.json()
        assert created["X-Request-ID"] == "booking-life-1"
        appointment = Appointment.objects.get(pk=created.json()["id"])
        ana = api_as(therapist, "booking-life-2")
        url = f"/api/appointments/{appointment.pk}"
        assert ana.post(f"{url}/accept/", {}, format="json").status_code == 200
    with time_machine.travel(datetime(2030, 5, 1, 9, 50, tzinfo=MANILA), tick=False):
        # The dispatch sweep hands the drop-off to the driver (its window is open).
        from scheduling.tasks import run_dispatch

        run_dispatch.delay()
    with time_machine.travel(datetime(2030, 5, 1, 10, 0, tzinfo=MANILA), tick=False):
        assert ana.post(f"{url}/start/", {}, format="json").status_code == 200
    with time_machine.travel(datetime(2030, 5, 1, 11, 0, tzinfo=MANILA), tick=False):
        assert ana.post(f"{url}/complete/", {}, format="json").status_code == 200

    bodies = list(Notification.objects.values_list("body", flat=True))
    assert bodies and fake_sms.delivered_count() >= 1
    assert Trip.objects.filter(appointment=appointment).exists()
    lines = captured.lines()

    # The booking's request, its tasks and its stream publication: one id.
    [request] = captured.of("request", request_id="booking-life-1")
    assert (request["method"], request["status"]) == ("POST", 201)
    assert (request["route"], request["user"], request["role"]) == (
        "/api/appointments/",
        desk.pk,
        "receptionist",
    )
    tasks = captured.of("task", request_id="booking-life-1")
    names = {t["task"] for t in tasks}
    assert {"scheduling.notify.deliver", "scheduling.dispatch.run"} <= names, names
    assert all(t["state"] == "success" and t["duration_ms"] >= 0 for t in tasks)
    [published] = captured.of("stream", request_id="booking-life-1")
    assert published["events"] == ["appointment.created"] and len(published["seqs"]) == 1
    # Each later request has its own id, shared with what it caused.
    for request_id in ("booking-life-2",):
        assert captured.of("request", request_id=request_id)
        assert captured.of("stream", request_id=request_id)
        assert captured.of("task", request_id=request_id, task="scheduling.notify.deliver")
    # The sweep's run has an id of its own, and the tasks it enqueued carry it on.
    sweeps = [t for t in captured.of("task", task="scheduling.dispatch.run") if not
              t["request_id"].startswith("booking-life")]  # fmt: skip
    assert sweeps and all(HEX_ID.fullmatch(t["request_id"]) for t in sweeps)

    # Nothing personal in any line.
    text = captured.text()
    people = [client_record, therapist, *factories_drivers()]
    secrets = [
        client_record.name,
        client_record.phone,
        client_record.phone.lstrip("+"),
        "Mabini",
        therapist.phone.lstrip("+"),
        therapist.get_full_name(),
        notes,
        "Lola Ines",
        *(p.phone.lstrip("+") for p in people if getattr(p, "phone", "")),
        *(body for body in bodies if body),
    ]
    leaked = [secret for secret in secrets if secret and secret in text]
    assert leaked == [], leaked
    assert len(lines) >= 8


def factories_drivers():
    from scheduling.models import User

    return list(User.objects.filter(role="driver"))


# --- a websocket session ----------------------------------------------------------------


@pytest.fixture
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.LIVE_STREAM = {**settings.LIVE_STREAM, "WATCH_SECONDS": 60.0}
    yield
    channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
def test_a_websocket_session_logs_its_connect_and_its_end(
    captured, in_memory_layer, trusted_proxy, desk
):
    token = Token.objects.create(user=desk).key
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"),
               (b"x-request-id", b"socket-1")]  # fmt: skip

    async def session() -> None:
        socket = WebsocketCommunicator(application, f"/ws/stream/?token={token}", headers)
        connected, _ = await socket.connect()
        assert connected
        await sync_add_events([desk.pk], 3)
        frame = json.loads(await socket.receive_from(timeout=5))
        while sum(1 for _ in frame["events"]) < 3:
            frame["events"] += json.loads(await socket.receive_from(timeout=5))["events"]
        await socket.disconnect(code=4000)

    async_to_sync(session)()
    [opened] = captured.of("websocket", state="connect")
    assert (opened["user"], opened["role"], opened["request_id"]) == (
        desk.pk,
        "receptionist",
        "socket-1",
    )
    [ended] = captured.of("websocket", state="disconnect")
    assert ended["request_id"] == "socket-1" and ended["close_code"] == 4000
    assert ended["frames"] >= 1 and ended["events"] == 3 and ended["duration_ms"] >= 0


@pytest.mark.django_db(transaction=True)
def test_a_refused_websocket_is_one_line_with_its_code(captured, in_memory_layer):
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"),
               (b"x-request-id", b"bad id\n")]  # fmt: skip

    async def refused() -> None:
        socket = WebsocketCommunicator(application, "/ws/stream/?token=nope", headers)
        connected, _ = await socket.connect()
        assert not connected

    async_to_sync(refused)()
    [line] = captured.of("websocket")
    assert line["state"] == "refused" and line["close_code"] == 4401
    assert line["user"] is None and HEX_ID.fullmatch(line["request_id"])


async def sync_add_events(user_ids: list[int], count: int) -> None:
    from asgiref.sync import sync_to_async

    def add() -> None:
        with transaction.atomic():
            batch = EventBatch()
            for n in range(count):
                batch.add("test.event", {"n": n}, recipients=user_ids)
            batch.flush()

    await sync_to_async(add)()


# --- a task's own line --------------------------------------------------------------------


def test_a_failing_task_logs_its_failure_and_a_task_outside_a_request_gets_an_id(captured):
    from config.celery import app

    @app.task(name="tests.logs.boom")
    def boom() -> None:
        raise RuntimeError("provider refused +639171234567")

    @app.task(name="tests.logs.fine")
    def fine() -> str:
        return logs.current() or ""

    try:
        with logs.bound("caller-1"), pytest.raises(RuntimeError):
            boom.delay()
        # `.result`, not `.get()`: get() refuses to run once anything in this process has
        # marked joins as blocking (Celery's own worker helpers do), which other tests may.
        outside = fine.delay().result
    finally:
        for name in ("tests.logs.boom", "tests.logs.fine"):
            app.tasks.unregister(name)
    [failed] = captured.of("task", task="tests.logs.boom")
    assert (failed["state"], failed["request_id"]) == ("failure", "caller-1")
    [ran] = captured.of("task", task="tests.logs.fine")
    assert ran["state"] == "success" and ran["request_id"] == outside
    assert HEX_ID.fullmatch(outside) and logs.current() is None


def test_the_slow_client_watch_still_finds_daphnes_socket_through_the_session_log():
    """The session log wraps `send`; the watch that bounds a slow client's buffer
    (transport_watch) must still reach daphne's protocol beneath it, or no socket is ever
    cut off (it was not, for a while: tests/stream/test_live_daphne.py caught it)."""
    import functools

    from asgiref.sync import async_to_sync

    from scheduling.observability.wslog import SessionLogMiddleware
    from scheduling.realtime.transport_watch import _daphne_protocol

    class Protocol:
        def registerProducer(self, producer, streaming) -> None: ...

    protocol = Protocol()

    async def handle_reply(protocol, message) -> None: ...

    seen = []

    async def inner(scope, receive, send) -> None:
        seen.append(send)

    async def receive() -> dict:
        return {"type": "websocket.disconnect", "code": 1000}

    daphne_send = functools.partial(handle_reply, protocol)
    scope = {"type": "websocket", "path": "/ws/stream/", "headers": []}
    async_to_sync(SessionLogMiddleware(inner))(scope, receive, daphne_send)
    [wrapped] = seen
    assert wrapped is not daphne_send and _daphne_protocol(wrapped) is protocol
