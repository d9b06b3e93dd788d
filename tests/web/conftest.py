"""Fixtures of the API tests: ``make_api(**settings)`` and ``api`` (default settings).

Passwords are hashed with argon2id at a low cost here (the production cost is ~0.3 s of CPU per
hash on purpose; the suite hashes and verifies hundreds of times). test_api_passwords.py checks
the production parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette

from config.settings import Settings
from tests.app_helpers import web_app
from tests.web.api_helpers import Api, MakeApi
from web import accounts

CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "_hasher", CHEAP_HASHER)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", CHEAP_HASHER.hash("dummy password"))


@pytest.fixture
async def make_api(database_url: str) -> AsyncIterator[MakeApi]:
    """Build an app with these settings (``Settings`` keyword arguments); closed at the end."""
    built: list[tuple[contextlib.AsyncExitStack, Starlette]] = []

    async def build(**overrides: Any) -> Api:
        stopped: list[tuple[int, str]] = []

        def stop_live(live_id: int, reason: str) -> bool:
            stopped.append((live_id, reason))
            return True

        settings = Settings(**{"jwt_secret": "s" * 40, **overrides})
        stack = contextlib.AsyncExitStack()
        try:
            app = await stack.enter_async_context(
                web_app(settings, database_url, stop_live=stop_live)
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
        except BaseException:
            await stack.aclose()
            raise
        built.append((stack, app))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        stack.push_async_callback(client.aclose)
        return Api(app, client, app.state.db.primary, stopped)

    yield build
    for stack, app in reversed(built):
        try:
            # A failed test may leave a connection checked out: do not wait on it forever.
            await asyncio.wait_for(stack.aclose(), 60)
        except TimeoutError:
            app.state.db.primary.terminate()
            raise


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()
