"""Fixtures of the chat tests: ``make_server(**settings)`` serves the app on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from chat_helpers import ChatServer, MakeServer

from config.settings import Settings
from streamd.server import WEBSOCKET_OPTIONS
from tests.helpers import free_port
from web.app import create_app


class _Server(uvicorn.Server):
    """uvicorn inside the test's event loop: the test runner keeps its signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def make_server(database_url: str) -> AsyncIterator[MakeServer]:
    servers: list[ChatServer] = []

    async def build(**overrides: Any) -> ChatServer:
        settings = Settings(**{"jwt_secret": "s" * 40, "chat_report_interval": 0.5, **overrides})
        app = create_app(settings, database_url)
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, lifespan="on", **WEBSOCKET_OPTIONS
        )  # as `streamd serve` runs
        server = _Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
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
