"""Fixtures of the chat tests: ``make_server(**settings)`` serves the app on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from config.settings import Settings
from tests.app_helpers import web_app
from tests.chat.chat_helpers import ChatServer, MakeServer, start_uvicorn


@pytest.fixture
async def make_server(database_url: str) -> AsyncIterator[MakeServer]:
    async with contextlib.AsyncExitStack() as stack:

        async def build(**overrides: Any) -> ChatServer:
            settings = Settings(
                **{"jwt_secret": "s" * 40, "chat_report_interval": 0.5, **overrides}
            )
            app = await stack.enter_async_context(web_app(settings, database_url))
            server, task, port = await start_uvicorn(app)  # as `streamd serve` runs
            stack.push_async_callback(_stop, server, task)  # before the hub and pools close
            return ChatServer(app, server, task, port)

        yield build


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def server(make_server: MakeServer) -> ChatServer:
    return await make_server()
