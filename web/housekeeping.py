"""Deleting what the accounts API leaves behind: ended sessions, used or expired tokens, old
login and registration counters and old outbox mail; also stream-health samples past their 10
minutes (those of lives no longer on air, which no new sample sweeps), and video uploads
abandoned past their expiry (parts freed). A background task of the app; failures are logged
only."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from config.settings import Settings
from db import auth, live_health, outbox, throttle
from db.errors import DB_ERRORS
from packager.storage.base import Storage
from packager.storage.s3 import StorageUploadError
from web.uploads import expire_uploads

log = logging.getLogger(__name__)
OUTBOX_KEEP_S = 7 * 86400.0


async def clean_once(pool: asyncpg.Pool, settings: Settings) -> int:
    deleted = await auth.delete_expired(pool, grace_s=settings.refresh_reuse_grace)
    # One sweep for every counter: the longest window, so no live window loses its count
    # (password guesses through a session count for as long as a session can live).
    window = max(settings.login_window, settings.register_window, settings.refresh_token_ttl)
    deleted += await throttle.delete_expired(pool, window_s=window)
    deleted += await outbox.delete_older_than(pool, OUTBOX_KEEP_S)
    deleted += await live_health.delete_old(pool)
    return deleted


async def run(pool: asyncpg.Pool, settings: Settings, storage: Storage | None = None) -> None:
    while True:
        try:
            if deleted := await clean_once(pool, settings):
                log.info("accounts housekeeping deleted %d rows", deleted)
            if storage is not None and (expired := await expire_uploads(pool, storage)):
                log.info("housekeeping: %d abandoned uploads expired and freed", expired)
        except (*DB_ERRORS, StorageUploadError, OSError) as exc:
            log.warning("housekeeping failed, will retry: %s", exc)
        await asyncio.sleep(settings.cache_cleanup_interval)
