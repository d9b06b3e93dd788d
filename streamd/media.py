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
from packager.types import PosterWriter, Rung


def packager_options(settings: Settings) -> PackagerOptions:
    return PackagerOptions(
        target_duration=settings.hls_target_duration,
        window=settings.hls_window,
        segment_format="ts" if settings.hls_segment_format == "ts" else "cmaf",
        recording=settings.hls_recording,
        reconnect_window=settings.hls_reconnect_window,
        storage_root=settings.data_dir / "media",
        thumbnail_interval=settings.hls_thumbnail_interval,
        ladder=tuple(Rung(*spec) for spec in settings.hls_ladder),
        x264_preset=settings.hls_x264_preset,
        ladder_shedding=settings.hls_ladder_shedding,
        ladder_backlog=settings.hls_ladder_backlog,
        recovery_interval=settings.hls_recovery_interval,
    )


def build_storage(settings: Settings, registry: CollectorRegistry) -> Storage:
    """Local disk, or S3 (credentials from the standard AWS chain, never from settings)."""
    if settings.storage != "s3":
        # Behind a CDN whose origin is streamd itself, stored URLs (posters, VODs) name the CDN.
        return LocalStorage(settings.data_dir / "media", base_url=settings.cdn_base_url or "")
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
    options = packager_options(settings)
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
        storage if storage is not None else LocalStorage(options.storage_root),
        pool,
        metrics=PackagerMetrics(registry),
        ladder_factory=ladder_factory if options.ladder else None,
        thumbnailer_factory=thumbnailer_factory,
        on_live_ended=live_ended,
        node=f"{socket.gethostname()}:{settings.data_dir.resolve()}",
    )
