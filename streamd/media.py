"""Wiring of the media path: publish sessions -> packager (source + ladder + poster) -> storage."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import asyncpg
from prometheus_client import CollectorRegistry

from config.settings import Settings
from db import lives
from packager.ladder.ladder import Ladder
from packager.ladder.metrics import LadderMetrics
from packager.ladder.thumbnails import Thumbnailer
from packager.metrics import PackagerMetrics
from packager.options import PackagerOptions
from packager.packager import Packager
from packager.pipeline import OutputCallback
from packager.storage.base import Storage, put_object
from packager.storage.local import LocalStorage
from packager.storage.s3 import S3Metrics, S3Options, S3Storage
from packager.types import PosterWriter


def build_storage(settings: Settings, registry: CollectorRegistry) -> Storage:
    """Local disk, or S3 (credentials from the standard AWS chain, never from settings)."""
    if settings.storage != "s3":
        # Behind a CDN whose origin is streamd itself, stored URLs (posters, VODs) name the CDN.
        return LocalStorage(settings.media_dir, base_url=settings.cdn_base_url or "")
    assert settings.s3_bucket is not None  # config/ checked it
    return S3Storage(
        S3Options(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
            public_base_url=settings.cdn_base_url or "",
        ),
        metrics=S3Metrics(registry),
    )


def build_packager(
    settings: Settings,
    pool: asyncpg.Pool,
    registry: CollectorRegistry,
    storage: Storage | None = None,
) -> Packager:
    options = PackagerOptions.from_settings(settings)
    loop = asyncio.get_running_loop()
    ladder_metrics = LadderMetrics(registry)  # once: metrics register in the registry

    def thumbnailer_factory(
        storage: Storage, key: str, on_written: Callable[[], None]
    ) -> PosterWriter:
        async def write(jpeg: bytes) -> None:
            await put_object(storage, key, jpeg)
            on_written()

        return Thumbnailer(write, loop, interval_s=options.thumbnail_interval)

    def ladder_factory(on_output: OutputCallback, thumbnailer: PosterWriter | None) -> Ladder:
        return Ladder(
            options.ladder,
            options.x264_preset,
            on_output=on_output,
            loop=loop,
            metrics=ladder_metrics,
            thumbnailer=thumbnailer,
            policy=options.ladder_policy,
        )

    async def live_ended(live_id: int) -> None:
        await lives.mark_ended(pool, live_id)

    return Packager(
        options,
        storage if storage is not None else LocalStorage(settings.media_dir),
        pool,
        metrics=PackagerMetrics(registry),
        ladder_factory=ladder_factory if options.ladder else None,
        thumbnailer_factory=thumbnailer_factory,
        on_live_ended=live_ended,
        node=f"{socket.gethostname()}:{settings.data_dir.resolve()}",
    )
