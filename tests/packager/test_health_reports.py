"""The Packager's stream-health reports: sampled per live on air, stored with the live's viewer
count, NOTIFYed on ``live_health``; a database error is logged and the next tick goes on."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from db import live_health, lives, users
from media.types import MediaPacket, VideoConfig
from packager.metrics import PackagerMetrics
from packager.packager import Packager
from packager.pipeline import LivePipeline, OutputCallback
from packager.storage.local import LocalStorage
from packager.types import PosterWriter, RenditionItem, RungPaused
from tests.packager.hls_helpers import AUDIO, VIDEO, packager_options, synthetic


class Feed:
    """A publish session's feed that the test fills; it ends only when unsubscribed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[RenditionItem | None] = asyncio.Queue()
        self.dropped = 0

    async def __aiter__(self) -> AsyncIterator[RenditionItem]:
        while (item := await self.queue.get()) is not None:
            yield item

    def unsubscribe(self) -> None:
        self.queue.put_nowait(None)


class Source:
    def __init__(self, live_id: int) -> None:
        self.live_id = live_id
        self.feed = Feed()

    def subscribe(self, name: str, maxsize: int) -> Feed:
        return self.feed


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def make_live(pool: asyncpg.Pool) -> int:
    owner = await users.create(pool, username="streamer", email="s@example.com",
                               password_hash="x", role="creator")  # fmt: skip
    live = await lives.create(pool, user_id=owner["id"], title="health")
    return int(live["id"])


async def publish(packager: Packager, live_id: int, seconds: float) -> Source:
    source = Source(live_id)
    packager.on_session(source)
    for item in [VIDEO, AUDIO, *synthetic(seconds, gop_ms=1000, fps=30)]:
        source.feed.queue.put_nowait(item)
    for _ in range(200):  # until the pipeline has taken it all
        if source.feed.queue.empty():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return source


async def test_a_report_stores_and_notifies_each_live_on_air(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    live_id = await make_live(pool)
    await pool.execute("UPDATE lives SET viewer_count = 7 WHERE id = $1", live_id)
    options = packager_options(hls_ladder=(), hls_recording=False)
    packager = Packager(options, LocalStorage(tmp_path), pool)
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(live_health.CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    try:
        await publish(packager, live_id, 3)
        assert await packager.report_health() == 1
        payload = json.loads(await asyncio.wait_for(heard.get(), 10))
        assert payload["live_id"] == live_id
        sample = payload["sample"]
        assert sample["viewer_count"] == 7
        assert sample["fps"] == pytest.approx(30, abs=0.1)
        assert sample["keyframe_interval_s"] == 1.0
        assert sample["audio"] is True and sample["bitrate_kbps"] > 0
        assert (sample["video_codec"], sample["width"], sample["height"]) == ("h264", 640, 360)
        rows = await live_health.recent(pool, live_id)
        assert len(rows) == 1
        stored = json.loads(rows[0]["sample"])
        assert stored == {k: v for k, v in sample.items() if k != "at"}
        # A second report: nothing came in since the first.
        assert await packager.report_health() == 1
        quiet = json.loads((await live_health.recent(pool, live_id))[-1]["sample"])
        assert quiet["bitrate_kbps"] == 0 and quiet["audio"] is False
    finally:
        await packager.close()
        await listener.close()
    assert [r["sample"] for r in await live_health.recent(pool, live_id)]  # kept 10 minutes


async def test_old_samples_go(pool: asyncpg.Pool) -> None:
    live_id = await make_live(pool)
    for minutes in (30, 11, 9):
        await pool.execute(
            """INSERT INTO live_health_samples (live_id, at, sample)
               VALUES ($1, now() - make_interval(mins => $2), '{}')""",
            live_id, minutes,
        )  # fmt: skip
    assert len(await live_health.recent(pool, live_id)) == 1  # only the last 10 minutes
    # A new sample deletes its live's samples past 10 minutes, in the same statement.
    assert await live_health.record(pool, [live_id, live_id + 99], ['{"fps": 1}', "{}"]) == 1
    count = await pool.fetchval("SELECT count(*) FROM live_health_samples")
    assert count == 2
    await pool.execute(
        """INSERT INTO live_health_samples (live_id, at, sample)
           VALUES ($1, now() - interval '1 hour', '{}')""",
        live_id,
    )
    assert await live_health.delete_old(pool) == 1  # the housekeeping sweep
    # Samples go with their live.
    await pool.execute("DELETE FROM lives WHERE id = $1", live_id)
    assert await pool.fetchval("SELECT count(*) FROM live_health_samples") == 0


async def test_the_reports_go_on_after_a_database_error(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live_id = await make_live(pool)
    options = dataclasses.replace(
        packager_options(hls_ladder=(), hls_recording=False), health_interval=0.1
    )
    packager = Packager(options, LocalStorage(tmp_path), pool)
    try:
        await pool.execute("ALTER TABLE live_health_samples RENAME TO gone")
        with caplog.at_level(logging.WARNING, logger="packager.packager"):
            source = await publish(packager, live_id, 2)
            await asyncio.sleep(0.5)  # a few ticks fail
        assert "stream health not stored" in caplog.text
        await pool.execute("ALTER TABLE gone RENAME TO live_health_samples")
        for _ in range(100):
            if await live_health.recent(pool, live_id):
                break
            await asyncio.sleep(0.05)
        assert await live_health.recent(pool, live_id)  # the periodic task went on
        # The pipeline was never disturbed: it still takes packets.
        for item in synthetic(1, gop_ms=1000, start_ms=2000):
            source.feed.queue.put_nowait(item)
        await asyncio.sleep(0.3)
        assert packager.lives[live_id].finishing is None
        rows = await live_health.recent(pool, live_id)
        assert any(json.loads(r["sample"])["bitrate_kbps"] > 0 for r in rows)
    finally:
        await packager.close()
    assert packager._health is not None and packager._health.done()


async def test_without_a_database_nothing_is_reported(tmp_path: Path) -> None:
    packager = Packager(packager_options(hls_ladder=()), LocalStorage(tmp_path), None)
    try:
        await publish(packager, 1, 1)
        assert await packager.report_health() == 0
        assert packager._health is None
    finally:
        await packager.close()


class CapturingLadder:
    """A ladder that emits only what the test tells it to (through the pipeline's callback)."""

    def __init__(self, on_output: OutputCallback, thumbnailer: PosterWriter | None) -> None:
        self.on_output = on_output
        made.append(self)

    def start(self, source_video: VideoConfig) -> None: ...

    def push(self, packet: MediaPacket) -> None: ...

    def end(self) -> None: ...

    async def wait_closed(self) -> None: ...


made: list[CapturingLadder] = []


async def test_the_pipeline_reports_its_ladder(tmp_path: Path) -> None:
    options = packager_options(hls_recording=False)  # the default ladder: 720p, 480p, 360p
    pipeline = LivePipeline(1, "b1", options, LocalStorage(tmp_path), PackagerMetrics(
        CollectorRegistry()), ladder_factory=CapturingLadder)  # fmt: skip
    made.clear()
    pipeline.feed(dataclasses.replace(VIDEO, width=1920, height=1080))
    (ladder,) = made
    rung = dataclasses.replace(VIDEO, width=854, height=480)
    for name in ("480p", "360p"):
        ladder.on_output(name, rung)
        ladder.on_output(name, MediaPacket("video", 0, 0, True, b"x"))
    ladder.on_output("480p", RungPaused())
    sample = pipeline.health.sample(time.monotonic())
    assert (sample["rungs"], sample["rungs_shed"]) == (["360p"], ["480p"])
    assert (sample["width"], sample["height"]) == (1920, 1080)
    ladder.on_output("480p", MediaPacket("video", 2000, 2000, True, b"x"))  # restored
    sample = pipeline.health.sample(time.monotonic())
    assert (sample["rungs"], sample["rungs_shed"]) == (["480p", "360p"], [])
    # A new session with a new config: a new ladder; late output of the old one is not counted.
    pipeline.end_session()
    pipeline.feed(dataclasses.replace(VIDEO, width=640, height=360))
    ladder.on_output("480p", MediaPacket("video", 2033, 2033, False, b"x"))
    made[-1].on_output("360p", rung)
    sample = pipeline.health.sample(time.monotonic())
    assert (sample["rungs"], sample["rungs_shed"]) == (["360p"], [])
    await pipeline.finish()
