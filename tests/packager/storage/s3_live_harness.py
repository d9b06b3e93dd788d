"""A live into S3: real ffmpeg publisher -> RtmpServer -> Packager (as ``streamd serve`` builds
it, real ladder included) -> S3Storage -> moto's S3 server, with the fault proxy in between.

Like tests/packager/hls_harness.py, the gate's ``release`` is told not to end the live (the
packager ends it once its reconnect window has passed).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import m3u8
from prometheus_client import CollectorRegistry

from config.settings import Settings
from db import lives, users
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import RtmpLimits, RtmpServer
from packager.packager import Packager
from packager.storage.base import Storage
from streamd.media import build_packager, build_storage
from tests.s3_fixtures import BucketView, FaultProxy

SMALL_LADDER = (("180p", 320, 180, 30, 300_000),)


@dataclass
class LiveS3:
    server: RtmpServer
    packager: Packager
    storage: Storage
    pool: asyncpg.Pool
    view: BucketView
    proxy: FaultProxy
    live_id: int
    stream_key: str
    prefix: str  # "streamd/hls/{live}" inside the bucket

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.server.ports()[0]}/live/{self.stream_key}"

    def counter(self, name: str) -> float:
        value: Any = getattr(self.packager.metrics, name)._value.get()
        return float(value)

    async def playlist(self, key: str) -> m3u8.M3U8:
        return m3u8.loads((await self.view.read(key)).decode())

    async def broadcast(self) -> str:
        """The bucket prefix of the (one) broadcast: ``streamd/hls/{live}/b...``."""
        names = {re.sub(r"/[^/]+$", "", k.removeprefix(self.prefix + "/")).split("/")[0]
                 for k in await self.view.keys(self.prefix + "/b")}  # fmt: skip
        (name,) = names
        return f"{self.prefix}/{name}"

    async def wait_ended(self, timeout: float = 60) -> None:
        for _ in range(int(timeout * 20)):
            if self.live_id not in self.packager.lives and not self.server.sessions:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the broadcast did not end")


@contextlib.asynccontextmanager
async def live_into_s3(
    database_url: str,
    data_dir: Path,
    proxy: FaultProxy,
    view: BucketView,
    *,
    storage: Storage | None = None,
    **settings: Any,
) -> AsyncIterator[LiveS3]:
    """``storage``: a storage of the test's own; by default ``build_storage`` makes it from
    the settings, pointed at the proxy."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    owner = await users.create(
        pool, username="streamer", email="s@example.com", password_hash="x", role="creator"
    )
    row = await lives.create(pool, user_id=owner["id"], title="live into S3")
    gate = PublishGate(pool, database_url, "live")
    release = gate.release

    async def release_without_ending(live_id: int, *, ended: bool = True) -> None:
        await release(live_id, ended=False)

    gate.release = release_without_ending  # type: ignore[method-assign]
    await gate.open()
    config = Settings(**{
        "data_dir": data_dir, "hls_reconnect_window": 0.0, "hls_ladder": SMALL_LADDER,
        "storage": "s3", "s3_bucket": view.bucket, "s3_prefix": "streamd",
        "s3_region": "us-east-1", "s3_endpoint_url": proxy.url, **settings,
    })  # fmt: skip
    registry = CollectorRegistry()
    storage = storage if storage is not None else build_storage(config, registry)
    packager = build_packager(config, pool, registry, storage)
    server = RtmpServer(
        gate, IngestMetrics(registry), RtmpLimits(idle_timeout=10),
        on_session=packager.on_session,
    )  # fmt: skip
    await server.listen("127.0.0.1", 0)
    try:
        yield LiveS3(
            server, packager, storage, pool, view, proxy, row["id"], row["stream_key"],
            f"streamd/hls/{row['id']}",
        )  # fmt: skip
    finally:
        await server.close()
        await packager.close()
        await gate.close()
        await pool.close()
        close = getattr(storage, "close", None)
        if close is not None:
            close()
