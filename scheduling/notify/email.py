"""Email through Django's email backend: SMTP (or anything else) by EMAIL_BACKEND."""

from __future__ import annotations

import smtplib
import socket

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import make_msgid

from scheduling.notify import Message, OutcomeUnknown, PermanentError, TransientError


class EmailBackend:
    # SMTP has no idempotency key. The Message-ID is derived from the key, so a mail client
    # shows a repeat as the same message, but a server delivers it twice.
    dedupes_by_key = False

    def send(self, message: Message) -> str:
        domain = settings.ALLOWED_HOSTS[0] if settings.ALLOWED_HOSTS else "localhost"
        message_id = make_msgid(idstring=message.key.replace(":", "."), domain=domain)
        email = EmailMessage(
            subject=message.subject,
            body=message.body,
            to=[message.to],
            headers={"Message-ID": message_id},
        )
        try:
            get_connection(fail_silently=False).send_messages([email])
        except (smtplib.SMTPConnectError, ConnectionRefusedError, socket.gaierror) as exc:
            # Before SMTPResponseException, of which SMTPConnectError is a kind.
            raise TransientError(f"cannot reach the mail server: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(400 <= code < 500 for code in codes):
                raise TransientError(f"recipient refused for now ({codes[0]})") from exc
            raise PermanentError(f"recipient refused ({codes[0] if codes else '?'})") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientError(f"SMTP {exc.smtp_code}") from exc
            raise PermanentError(f"SMTP {exc.smtp_code}") from exc
        except (smtplib.SMTPServerDisconnected, TimeoutError) as exc:
            # Cut off mid-conversation: the server may have queued the message already.
            raise OutcomeUnknown(f"mail server connection lost: {exc}") from exc
        return message_id
