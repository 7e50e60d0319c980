"""Smoke test of the websocket stream (the full suite is in test_live_*.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from scheduling.services.appointments import create_appointment

pytestmark = pytest.mark.django_db(transaction=True)
HOST = [(b"host", b"localhost"), (b"origin", b"http://localhost")]


def socket(user, after=0) -> WebsocketCommunicator:
    token = Token.objects.get_or_create(user=user)[0].key
    return WebsocketCommunicator(application, f"/ws/stream/?after={after}&token={token}",
                                 headers=HOST)


def test_therapist_gets_catch_up_then_live(desk, therapist, service, client_record,
                                           tomorrow_at):
    def book(hour):
        return create_appointment(actor=desk, client_id=client_record.pk, service_id=service.pk,
                                  therapist_id=therapist.pk, start=tomorrow_at(hour))

    first = book(9)
    ws = socket(therapist)

    async def run():
        connected, _ = await ws.connect()
        assert connected
        replay = await ws.receive_json_from(timeout=5)
        assert [e["data"]["id"] for e in replay["events"]] == [first.pk]
        second = await sync_to_async(book)(14)
        live = await ws.receive_json_from(timeout=5)
        assert live["type"] == "events"
        assert [(e["type"], e["data"]["id"]) for e in live["events"]] == [
            ("appointment.created", second.pk)]
        await ws.disconnect()

    async_to_sync(run)()


def test_anonymous_and_foreign_origin_are_refused(therapist):
    token = Token.objects.create(user=therapist).key

    async def run():
        anonymous = WebsocketCommunicator(application, "/ws/stream/", headers=HOST)
        assert (await anonymous.connect())[0] is False
        evil = WebsocketCommunicator(application, f"/ws/stream/?token={token}",
                                     headers=[(b"host", b"localhost"),
                                              (b"origin", b"http://evil.example")])
        assert (await evil.connect())[0] is False

    async_to_sync(run)()
