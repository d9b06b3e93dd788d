"""Outgoing mail: an SMTP backend, or the ``email_outbox`` table when none is set.

With no ``STREAMD_SMTP_HOST`` every message is stored in ``email_outbox``, so email verification
and password reset work on a laptop (and in tests) without a mail server; the operator prints
one with ``streamd mail show``. The log says that a mail was queued, never what it says: its
links are secrets (a reset link is the account).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import asyncpg

from config.settings import Settings
from db import outbox
from db.errors import DB_ERRORS_BUT_TIMEOUT

log = logging.getLogger(__name__)
SMTP_TIMEOUT_S = 15.0


class MailError(Exception):
    """The message could not be handed to the mail server."""


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str
    kind: str  # what it is for: verify_email, reset_password, registration_attempt


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...


class OutboxMailer:
    """Development backend: the message goes to ``email_outbox``; the log only says so."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def send(self, mail: Mail) -> None:
        try:
            mail_id = await outbox.add(
                self._pool, to_address=mail.to, subject=mail.subject, body=mail.body,
                kind=mail.kind,
            )  # fmt: skip
        except DB_ERRORS_BUT_TIMEOUT as exc:  # a timeout propagates, as it always has
            raise MailError(f"could not store the message: {exc}") from exc
        log.info("mail to %s (%s) queued in email_outbox id %d (no SMTP configured; "
                 "`streamd mail show --to ADDRESS` prints it)", mail.to, mail.kind,
                 mail_id)  # fmt: skip


class SmtpMailer:
    """smtplib in a worker thread: SMTPS (``tls``), STARTTLS (``starttls``) or plain (``none``)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.sender = settings.mail_from()

    async def send(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].strip(">"))
        message.set_content(mail.body)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail to %s (%s) failed: %s", mail.to, mail.kind, exc)
            raise MailError(f"the mail server refused or was unreachable: {exc}") from exc
        log.info("mail sent to %s: %s", mail.to, mail.subject)

    def _deliver(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username is not None and self.password is not None:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


def create_mailer(settings: Settings, pool: asyncpg.Pool) -> Mailer:
    if settings.smtp_host is None:
        return OutboxMailer(pool)
    return SmtpMailer(settings)
