"""Mail: the SMTP backend against a real SMTP server (aiosmtpd) on loopback, and the outbox."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from db import outbox
from tests.helpers import free_port
from tests.web.api_helpers import Api, MakeApi
from web.mail import OutboxMailer, SmtpMailer

GOOD = "a quiet harbour at dawn"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SmtpServer, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any
                   ) -> AuthResult:  # fmt: skip
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=_authenticator, auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_register_sends_the_verification_mail_over_smtp(
    make_api: MakeApi, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    api = await make_api(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                         smtp_username="mailer", smtp_password="s3cret",
                         public_url="https://live.example.com")  # fmt: skip
    assert isinstance(api.app.state.mailer, SmtpMailer)
    r = await api.client.post("/api/auth/register",
                              json={"username": "sam", "email": "sam@example.com",
                                    "password": GOOD})  # fmt: skip
    assert r.status_code == 201
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.mail_from == "noreply@live.example.com"
    assert envelope.rcpt_tos == ["sam@example.com"]
    assert isinstance(envelope.content, bytes)
    text = envelope.content.decode()
    assert "Subject: Confirm your email address for streamd" in text
    assert "https://live.example.com/verify-email?token=" in text
    # Nothing went to the outbox: with SMTP configured, the tokens are not stored in clear.
    assert await outbox.latest_for(api.pool, "sam@example.com") is None


async def test_smtp_failures_do_not_break_registration(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on this port: the connection is refused.
    api = await make_api(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none")
    with caplog.at_level(logging.WARNING):
        r = await api.client.post("/api/auth/register",
                                  json={"username": "tim", "email": "tim@example.com",
                                        "password": GOOD})  # fmt: skip
    assert r.status_code == 201
    assert "verification mail failed" in caplog.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = await api.client.post("/api/auth/verify-email/resend", headers=headers)
    assert r.status_code == 503 and r.headers["retry-after"] == "60"
    assert r.json()["error"]["code"] == "mail_unavailable"


async def test_outbox_is_the_default_and_logs_no_secret(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(api.app.state.mailer, OutboxMailer)
    with caplog.at_level(logging.DEBUG):
        r = await api.client.post("/api/auth/register",
                                  json={"username": "nina", "email": "nina@example.com",
                                        "password": GOOD})  # fmt: skip
        assert r.status_code == 201
        user = await api.make_user()
        r = await api.client.post("/api/auth/password-reset", json={"email": user.email})
        assert r.status_code == 202
    for to, kind in (("nina@example.com", "verify_email"), (user.email, "reset_password")):
        mail = await api.last_mail(to, kind)
        token = re.search(r"token=([A-Za-z0-9_-]{43})", mail["body"])
        assert token is not None, mail["body"]
        # Whoever reads the log learns that a mail was queued, never its secret.
        assert token.group(1) not in caplog.text
        assert f"mail to {to} ({kind}) queued in email_outbox id {mail['id']}" in caplog.text
    assert "Open this link" not in caplog.text
