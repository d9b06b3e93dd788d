"""asyncpg pools: the primary, and a read pool that is a replica's when one is configured."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from config.settings import Settings

log = logging.getLogger(__name__)

# A query that hangs must not pin a pool connection forever; the API's slowest legitimate query
# is far below this.
COMMAND_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Database:
    """The pools a process uses. ``read`` is ``primary`` itself when no replica is configured."""

    primary: asyncpg.Pool
    read: asyncpg.Pool
    url: str

    @property
    def has_replica(self) -> bool:
        return self.read is not self.primary

    async def close(self) -> None:
        if self.has_replica:
            await self.read.close()
        await self.primary.close()


async def _create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        command_timeout=COMMAND_TIMEOUT_S,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"application_name": "streamd"},
    )
    assert pool is not None  # create_pool returns None only when awaited without init
    return pool


async def open_database(url: str, settings: Settings) -> Database:
    """Open the primary pool (and the replica pool when ``DATABASE_REPLICA_URL`` is set)."""
    primary = await _create_pool(url, settings)
    read = primary
    if settings.database_replica_url:
        try:
            read = await _create_pool(settings.database_replica_url, settings)
        except BaseException:
            await primary.close()
            raise
        log.info("read queries go to the replica pool")
    return Database(primary=primary, read=read, url=url)
