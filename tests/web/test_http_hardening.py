"""HTTP hardening (issue #14): forwarded headers, content types, security headers.

The forwarded-header tests serve the real app with the uvicorn config ``streamd serve`` builds
(streamd.server.http_config) on a loopback port, so what is checked is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from config.settings import Settings
from streamd.server import http_config
from tests.helpers import free_port
from web.app import create_app


class _InLoopServer(uvicorn.Server):
    """uvicorn inside the test's event loop: the test runner keeps its signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(database_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app on loopback under streamd's own uvicorn config; a client for it."""
    settings = Settings(**{"jwt_secret": "s" * 40, "http_host": "127.0.0.1",
                           "http_port": free_port(), **overrides})  # fmt: skip
    server = _InLoopServer(http_config(settings, create_app(settings, database_url)))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def _failed_logins_from_spoofed_addresses(client: httpx.AsyncClient, n: int) -> list[int]:
    """``n`` failed logins, each for another account and with another X-Forwarded-For."""
    statuses = []
    for i in range(n):
        r = await client.post(
            "/api/auth/login",
            json={"username": f"nobody{i}", "password": "wrong password"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
        )
        statuses.append(r.status_code)
    return statuses


def _access_clients(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {r.client for r in caplog.records if r.name == "streamd.access"}  # type: ignore[attr-defined]


async def test_forwarded_for_is_ignored_by_default(
    database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn's own variable must not widen the trust: the setting is the only source.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    caplog.set_level(logging.INFO, logger="streamd.access")
    async with serving(database_url, login_max_failures_per_ip=3) as client:
        statuses = await _failed_logins_from_spoofed_addresses(client, 5)
    # The address the throttle sees is the peer's, whatever the header says.
    assert statuses == [401, 401, 401, 429, 429]
    assert _access_clients(caplog) == {"127.0.0.1"}


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamd.access")
    async with serving(database_url, login_max_failures_per_ip=3,
                       trusted_proxies=("127.0.0.1",)) as client:  # fmt: skip
        statuses = await _failed_logins_from_spoofed_addresses(client, 5)
        await client.get("/health")  # no header: the proxy itself
    assert statuses == [401] * 5
    assert _access_clients(caplog) == {f"203.0.113.{i}" for i in range(1, 6)} | {"127.0.0.1"}
