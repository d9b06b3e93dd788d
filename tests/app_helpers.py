"""The web app for in-process tests, with what ``streamd serve`` gives it: the pools and the
chat hub opened by ``streamd.resources`` (the app opens neither), closed at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from config.settings import Settings
from streamd.media import build_storage
from streamd.resources import chat_hub, database_pools
from streamd.server import http_config
from web.app import create_app


class InLoopServer(uvicorn.Server):
    """uvicorn inside the test's event loop: the test runner keeps its signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def web_app(
    settings: Settings, database_url: str, **options: Any
) -> AsyncIterator[Starlette]:
    """``create_app(settings, pools, hub, **options)``; its lifespan is the caller's to run.
    Storage (uploads) as ``serve`` builds it, unless ``options`` has one."""
    if "storage" not in options:
        options["storage"] = build_storage(settings, CollectorRegistry())
    async with database_pools(settings, database_url) as db, chat_hub(settings, db) as hub:
        yield create_app(settings, db, hub, **options)


@contextlib.asynccontextmanager
async def served_app(
    settings: Settings, database_url: str, **options: Any
) -> AsyncIterator[tuple[Starlette, str]]:
    """:func:`web_app` on 127.0.0.1:``settings.http_port`` under the uvicorn config ``streamd
    serve`` builds (``streamd.server.http_config``): (the app, its base URL) once it listens."""
    async with web_app(settings, database_url, **options) as app:
        server = InLoopServer(http_config(settings, app))
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(1000):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            assert server.started, "uvicorn did not start"
            yield app, f"http://127.0.0.1:{settings.http_port}"
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
