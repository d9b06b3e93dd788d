"""The web app for in-process tests, with what ``streamd serve`` gives it: the pools and the
chat hub opened by ``streamd.resources`` (the app opens neither), closed at the end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from config.settings import Settings
from streamd.resources import chat_hub, database_pools
from web.app import create_app


@contextlib.asynccontextmanager
async def web_app(
    settings: Settings, database_url: str, **options: Any
) -> AsyncIterator[Starlette]:
    """``create_app(settings, pools, hub, **options)``; its lifespan is the caller's to run."""
    async with database_pools(settings, database_url) as db, chat_hub(settings, db) as hub:
        yield create_app(settings, db, hub, **options)
