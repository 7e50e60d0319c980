"""/health/: 200 when every dependency answers, 503 naming the one that does not."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SECRET_URL = "redis://:hunter2@127.0.0.1:1/0"


def test_healthy_without_credentials():
    response = APIClient().get("/health/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {
        "database",
        "cache",
        "channel_layer",
        "stream_layer",
        "workers",
        "beat",
        "outbox",
    }
    assert all(check["ok"] for check in body["checks"].values())


def test_a_dead_cache_is_503_and_no_secret_leaks():
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": SECRET_URL,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=dead):
        response = APIClient().get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert "hunter2" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()


@override_settings(CELERY_TASK_ALWAYS_EAGER=False, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_an_unreachable_broker_is_503():
    response = APIClient().get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["ok"] is False


def test_a_dead_stream_layer_is_503_and_no_secret_leaks(settings):
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "stream": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [SECRET_URL]},
        },
    }
    response = APIClient().get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["stream_layer"]["ok"] is False
    assert body["checks"]["channel_layer"]["ok"] is True
    assert "hunter2" not in response.content.decode()
