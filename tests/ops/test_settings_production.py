"""What config.settings.production refuses to start without."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.live_support import BASE_DIR

DEPLOYMENT = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "s" * 60,
    "ALLOWED_HOSTS": "scheduling.example",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def check(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PAYMENT_GATEWAY", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={**base, **DEPLOYMENT, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_payment_gateway_is_named_never_defaulted_to_fake_links():
    missing = check()
    assert missing.returncode != 0
    assert "Set the PAYMENT_GATEWAY environment variable" in missing.stderr
    named = check(PAYMENT_GATEWAY="razorpay")
    assert named.returncode == 0, named.stderr
