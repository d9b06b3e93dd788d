"""Fixtures of the chat tests: ``make_server(**settings)`` serves the app on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_helpers import ChatServer, MakeServer, start_uvicorn

from config.settings import Settings
from web.app import create_app


@pytest.fixture
async def make_server(database_url: str) -> AsyncIterator[MakeServer]:
    servers: list[ChatServer] = []

    async def build(**overrides: Any) -> ChatServer:
        settings = Settings(**{"jwt_secret": "s" * 40, "chat_report_interval": 0.5, **overrides})
        app = create_app(settings, database_url)
        server, task, port = await start_uvicorn(app)  # as `streamd serve` runs
        chat = ChatServer(app, server, task, port)
        servers.append(chat)
        return chat

    yield build
    for chat in servers:
        chat.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(chat.task, 30)


@pytest.fixture
async def server(make_server: MakeServer) -> ChatServer:
    return await make_server()
