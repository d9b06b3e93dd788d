"""What a serving process opens once and shares: its database pools and its chat hub.

``streamd serve`` opens them here and hands them to the web app, the ingest and the packager;
``web.app.create_app`` takes them as given and never opens its own. Tests and benchmarks that
build the app open them through these same functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from chat.hub import Hub, HubConfig
from config.settings import Settings
from db.pools import Database, open_database


@contextlib.asynccontextmanager
async def database_pools(settings: Settings, url: str) -> AsyncIterator[Database]:
    """The primary pool on ``url`` (and a replica's when configured), closed at the end."""
    db = await open_database(url, settings)
    try:
        yield db
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def chat_hub(
    settings: Settings, db: Database, listen: Mapping[str, Callable[[str], object]] | None = None
) -> AsyncIterator[Hub]:
    """The chat hub, started: one LISTEN connection to ``db``'s primary, outside the pool,
    which ``listen``'s channels share (channel -> callback for its payloads); closed at the end."""
    hub = Hub(db.url, db.primary, HubConfig.from_settings(settings))
    for channel, callback in (listen or {}).items():
        hub.listen(channel, callback)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()
