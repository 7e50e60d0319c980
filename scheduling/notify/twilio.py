"""SMS and WhatsApp through Twilio's REST API (Programmable Messaging).

POST {TWILIO_API_URL}/2010-04-01/Accounts/{sid}/Messages.json with HTTP basic auth
(account SID, auth token) and the form fields To, From, Body; WhatsApp numbers carry the
`whatsapp:` prefix on both ends. The answer is the message resource, whose `sid` is kept.
Errors come back as JSON `{"code": …, "message": …, "status": …}`.

Twilio's Messages API takes no idempotency key, so this backend does not dedupe: a send
cut off after the request left (read timeout) is reported as OutcomeUnknown and is not
repeated automatically.
"""

from __future__ import annotations

import base64
import json
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from scheduling.notify import Message, OutcomeUnknown, PermanentError, TransientError

# Statuses worth another try: rate limited, or Twilio having a bad moment.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class TwilioBackend:
    dedupes_by_key = False

    def __init__(self) -> None:
        config = settings.SCHEDULING
        self.account_sid = config["TWILIO_ACCOUNT_SID"]
        self.auth_token = config["TWILIO_AUTH_TOKEN"]
        self.senders = {
            "sms": config["TWILIO_SMS_FROM"],
            "whatsapp": config["TWILIO_WHATSAPP_FROM"],
        }
        self.api_url = config["TWILIO_API_URL"].rstrip("/")
        # Below the delivery task's time limit, so a hung connection ends as a timeout here.
        self.timeout = max(1, int(config["NOTIFY_TIME_LIMIT_SECONDS"]) // 3)
        if not (self.account_sid and self.auth_token):
            raise ImproperlyConfigured("The Twilio backend needs TWILIO_ACCOUNT_SID/AUTH_TOKEN.")

    def send(self, message: Message) -> str:
        sender = self.senders.get(message.channel)
        if not sender:
            raise PermanentError(f"no Twilio sender number configured for {message.channel}")
        to = message.to
        if message.channel == "whatsapp":
            to, sender = f"whatsapp:{to}", f"whatsapp:{sender.removeprefix('whatsapp:')}"
        request = self.request({"To": to, "From": sender, "Body": message.body})
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return json.load(response)["sid"]
        except HTTPError as exc:
            raise self.error(exc) from exc
        except (TimeoutError, HTTPException, ConnectionResetError) as exc:
            # The request was sent; Twilio may have created the message.
            raise OutcomeUnknown(f"no answer from Twilio: {exc}") from exc
        except URLError as exc:
            # Name resolution, connection refused: the request never reached Twilio.
            raise TransientError(f"cannot reach Twilio: {exc.reason}") from exc

    def request(self, fields: dict[str, str]) -> Request:
        url = f"{self.api_url}/2010-04-01/Accounts/{quote(self.account_sid)}/Messages.json"
        credentials = f"{self.account_sid}:{self.auth_token}".encode()
        return Request(
            url,
            data=urlencode(fields).encode(),
            method="POST",
            headers={
                "Authorization": "Basic " + base64.b64encode(credentials).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )

    @staticmethod
    def error(exc: HTTPError) -> TransientError | PermanentError:
        try:
            payload = json.load(exc)
        except ValueError:
            payload = {}
        code = payload.get("code", "?")
        text = f"Twilio {exc.code} (error {code}): {payload.get('message', exc.reason)}"
        if exc.code in RETRYABLE_STATUS:
            return TransientError(text)
        # 400 invalid or unsubscribed number, 401/403 credentials, 404 account: a person
        # has to fix something before it can work.
        return PermanentError(text)
