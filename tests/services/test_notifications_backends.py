"""Delivery backends (scheduling/notify/): console, email, Twilio, and the fake provider.

The outside world is faked at its edge only: a local SMTP conversation and a local HTTP
server answering as Twilio does. The backends' own code runs for real.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from django.conf import settings as django_settings
from django.core import mail

from scheduling.notify import (
    Message,
    OutcomeUnknown,
    PermanentError,
    TransientError,
    backend_for,
    masked,
)
from scheduling.notify.console import ConsoleBackend
from scheduling.notify.email import EmailBackend
from scheduling.notify.fake import Behaviour, FakeProvider, MemoryStore, RedisStore, store
from scheduling.notify.twilio import TwilioBackend

SMS = Message(key="k1", channel="sms", to="+639171234567", subject="Hi", body="See you at 10:00")


def test_console_writes_the_message_with_the_number_masked():
    out = io.StringIO()
    provider_id = ConsoleBackend(stream=out).send(SMS)
    assert provider_id == "console:k1"
    text = out.getvalue()
    assert "See you at 10:00" in text
    assert "+639171234567" not in text
    assert masked(SMS.to) in text


def test_masked_keeps_little():
    assert masked("+639171234567") == "+639***567"
    assert masked("maria@example.com") == "m***@example.com"
    assert masked("12345") == "***"


def test_backend_for_follows_the_settings(settings):
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "NOTIFY_BACKENDS": {
            **settings.SCHEDULING["NOTIFY_BACKENDS"],
            "sms": "scheduling.notify.fake.FakeProvider",
        },
    }
    assert isinstance(backend_for("sms"), FakeProvider)
    assert isinstance(backend_for("email"), EmailBackend)


# --- email --------------------------------------------------------------------------------


def test_email_goes_through_djangos_backend_with_a_message_id_from_the_key():
    message = Message(
        key="appointment1:x:t2:email:client3",
        channel="email",
        to="maria@example.com",
        subject="Booking received",
        body="Hello",
    )
    message_id = EmailBackend().send(message)
    (sent,) = mail.outbox
    assert (sent.subject, sent.body, sent.to) == (
        "Booking received",
        "Hello",
        ["maria@example.com"],
    )
    assert sent.extra_headers["Message-ID"] == message_id
    assert "appointment1.x.t2.email.client3" in message_id


class SMTPStub(socketserver.StreamRequestHandler):
    """Just enough SMTP: greets, accepts the sender, answers RCPT with `rcpt_reply`."""

    rcpt_reply = b"250 OK"

    def handle(self) -> None:
        self.wfile.write(b"220 stub ESMTP\r\n")
        for raw in self.rfile:
            verb = raw.decode().strip().split(" ")[0].upper()
            if verb in {"EHLO", "HELO"}:
                self.wfile.write(b"250 stub\r\n")
            elif verb == "MAIL":
                self.wfile.write(b"250 OK\r\n")
            elif verb == "RCPT":
                self.wfile.write(self.rcpt_reply + b"\r\n")
            elif verb == "RSET":
                self.wfile.write(b"250 OK\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 not here\r\n")


@contextmanager
def smtp_server(reply: bytes) -> Iterator[int]:
    handler = type("Handler", (SMTPStub,), {"rcpt_reply": reply})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [(b"550 no such user", PermanentError), (b"451 try again later", TransientError)],
)
def test_smtp_refusals_are_permanent_or_transient_by_code(settings, reply, error):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_TIMEOUT = 5
    message = Message(key="k", channel="email", to="x@example.com", subject="s", body="b")
    with smtp_server(reply) as port:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        with pytest.raises(error):
            EmailBackend().send(message)


def test_unreachable_smtp_server_is_transient(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    message = Message(key="k", channel="email", to="x@example.com", subject="s", body="b")
    with pytest.raises(TransientError):
        EmailBackend().send(message)


# --- Twilio -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TwilioStub(BaseHTTPRequestHandler):
    """Answers as Twilio's Messages resource does; records what it was sent."""

    status = 201
    payload: dict = {"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}
    delay = 0.0
    seen: list[dict] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.seen.append(
            {
                "path": self.path,
                "auth": self.headers["Authorization"],
                "form": {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()},
            }
        )
        time.sleep(self.delay)
        body = json.dumps(self.payload).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@contextmanager
def twilio_server(settings, **behaviour) -> Iterator[list[dict]]:
    seen: list[dict] = []
    handler = type("Handler", (TwilioStub,), {**behaviour, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SCHEDULING = {
        **settings.SCHEDULING,
        "TWILIO_ACCOUNT_SID": "AC123",
        "TWILIO_AUTH_TOKEN": "secret",
        "TWILIO_SMS_FROM": "+15005550006",
        "TWILIO_WHATSAPP_FROM": "+14155238886",
        "TWILIO_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "NOTIFY_TIME_LIMIT_SECONDS": 3,
    }
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_twilio_sms_request_has_the_rest_api_shape(settings):
    with twilio_server(settings) as seen:
        sid = TwilioBackend().send(SMS)
    assert sid == "SM0123456789abcdef0123456789abcdef"
    (request,) = seen
    assert request["path"] == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request["auth"] == "Basic " + base64.b64encode(b"AC123:secret").decode()
    assert request["form"] == {"To": "+639171234567", "From": "+15005550006", "Body": SMS.body}


def test_twilio_whatsapp_numbers_carry_the_prefix(settings):
    message = Message(key="k2", channel="whatsapp", to="+639171234567", subject="", body="Hi")
    with twilio_server(settings) as seen:
        TwilioBackend().send(message)
    assert seen[0]["form"]["To"] == "whatsapp:+639171234567"
    assert seen[0]["form"]["From"] == "whatsapp:+14155238886"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PermanentError),  # 21211 invalid 'To' number
        (401, PermanentError),
        (429, TransientError),
        (503, TransientError),
    ],
)
def test_twilio_errors_map_by_status(settings, status, error):
    payload = {"code": 21211, "message": "Invalid 'To' Phone Number", "status": status}
    with twilio_server(settings, status=status, payload=payload), pytest.raises(error) as raised:
        TwilioBackend().send(SMS)
    assert f"Twilio {status}" in str(raised.value)


def test_twilio_read_timeout_is_an_unknown_outcome(settings):
    with twilio_server(settings, delay=1.5) as seen, pytest.raises(OutcomeUnknown):
        TwilioBackend().send(SMS)  # the timeout is a third of the 3 s time limit
    assert len(seen) == 1  # the request did reach the provider


def test_twilio_unreachable_is_transient(settings):
    with twilio_server(settings):
        settings.SCHEDULING = {
            **settings.SCHEDULING,
            "TWILIO_API_URL": f"http://127.0.0.1:{free_port()}",
        }
        with pytest.raises(TransientError):
            TwilioBackend().send(SMS)


def test_twilio_needs_credentials(settings):
    settings.SCHEDULING = {**settings.SCHEDULING, "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": ""}
    with pytest.raises(Exception, match="TWILIO_ACCOUNT_SID"):
        TwilioBackend()


# --- the fake provider ------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def fake(request, settings):
    url = django_settings.FAKE_PROVIDER_URL if request.param == "redis" else ""
    settings.SCHEDULING = {**settings.SCHEDULING, "FAKE_PROVIDER_URL": url}
    shared = store()
    shared.reset()
    assert isinstance(shared, RedisStore if url else MemoryStore)
    yield shared
    shared.reset()


def test_fake_provider_delivers_once_per_key(fake):
    first = FakeProvider().send(SMS)
    again = FakeProvider().send(SMS)
    assert first == again
    assert fake.log() == ["k1"]
    assert fake.calls() == {"k1": 2}


def test_fake_provider_fails_as_configured_and_predictably(fake):
    behaviour = Behaviour(transient_rate=0.3, permanent_rate=0.05, seed="7")
    fake.configure(behaviour)
    keys = [f"n{i}" for i in range(300)]
    permanent = {k for k in keys if behaviour.fails_permanently(k)}
    assert 5 <= len(permanent) <= 30  # about 5 %

    outcomes = {}
    for key in keys:
        message = Message(key=key, channel="sms", to="+639171234567", subject="", body="")
        try:
            FakeProvider().send(message)
            outcomes[key] = "sent"
        except PermanentError:
            outcomes[key] = "permanent"
        except TransientError:
            outcomes[key] = "transient"

    assert {k for k, v in outcomes.items() if v == "permanent"} == permanent
    transient = {k for k, v in outcomes.items() if v == "transient"}
    assert transient == {
        k for k in keys if k not in permanent and behaviour.fails_transiently(k, 1)
    }
    assert 50 <= len(transient) <= 130  # about 30 % of the rest
    assert set(fake.log()) == {k for k, v in outcomes.items() if v == "sent"}


def test_fake_provider_latency(fake):
    fake.configure(Behaviour(latency_ms=50))
    started = time.monotonic()
    FakeProvider().send(SMS)
    assert time.monotonic() - started >= 0.05
