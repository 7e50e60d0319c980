"""ASGI entry point: websockets (daphne). HTTP stays on WSGI in the full stack; in the
embedded development server daphne serves both."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_http = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from scheduling.observability.wslog import SessionLogMiddleware  # noqa: E402
from scheduling.realtime.routing import websocket_route  # noqa: E402
from scheduling.realtime.ws_auth import TokenOrSessionAuth  # noqa: E402

# Django and the app are loaded: move those objects out of the cyclic collector's way.
# A full collection otherwise walks all of them again each time, a pause every socket of
# the process feels (it showed as the p99 of the stream's latency under load).
gc.freeze()

application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": AllowedHostsOriginValidator(
            # Inside the authentication: the session's log lines name its user.
            TokenOrSessionAuth(SessionLogMiddleware(websocket_route))
        ),
    }
)
