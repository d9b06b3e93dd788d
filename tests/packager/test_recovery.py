"""Periodic recovery of recordings that another node left unfinished, on a real PostgreSQL.

A dead node is simulated by what it leaves behind: a `live_recordings` row with journaled
segments that nobody has written to for a while (its `updated_at` moved back with SQL). The
VOD playlists are written to a real LocalStorage; segment files are not needed (finalising
reads only the journal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import m3u8
import pytest

from db import live_media, lives, users
from packager.packager import RECOVERY_STALE_MARGIN_S, Packager, _Live
from packager.pipeline import LivePipeline
from packager.storage.local import LocalStorage
from tests.packager.hls_helpers import packager_options

RECONNECT_WINDOW_S = 30.0


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=6) as pool:
        yield pool


async def left_behind(pool: asyncpg.Pool, node: str, *, idle_s: float, segments: int = 3) -> int:
    """A recording as a node writes it while live, last written to `idle_s` seconds ago."""
    owner = await users.create(
        pool, username="u" + node.replace("-", ""), email=f"{node}@example.com",
        password_hash="x", role="creator",
    )  # fmt: skip
    live = await lives.create(pool, user_id=owner["id"], title=f"live on {node}")
    prefix = f"hls/{live['id']}/b1"
    recording_id = await live_media.create_recording(
        pool, live_id=live["id"], node=node, prefix=prefix, poster_key=None
    )
    now = datetime.now(UTC)
    await live_media.add_segments(
        pool, recording_id,
        [("source", i, f"seg_{i}.m4s", "init.mp4", 2.0, False, now, 100_000)
         for i in range(segments)],
    )  # fmt: skip
    await live_media.set_renditions(
        pool, recording_id,
        {"source": {"codecs": "avc1.64001f,mp4a.40.2", "resolution": [640, 360],
                    "frame_rate": 30.0}},
    )  # fmt: skip
    await pool.execute(
        "UPDATE live_recordings SET updated_at = now() - make_interval(secs => $2) WHERE id = $1",
        recording_id,
        idle_s,
    )
    return recording_id


def packager(pool: asyncpg.Pool, root: Path, node: str, interval: float = 0.0) -> Packager:
    options = packager_options(
        hls_reconnect_window=RECONNECT_WINDOW_S, hls_recovery_interval=interval
    )
    return Packager(options, LocalStorage(root), pool, node=node)


async def video_ids(pool: asyncpg.Pool) -> dict[int, int | None]:
    rows = await pool.fetch(
        "SELECT id, video_id FROM live_recordings WHERE finished_at IS NOT NULL"
    )
    return {r["id"]: r["video_id"] for r in rows}


async def test_stale_recordings_of_other_nodes_are_finalised_once_by_racing_processes(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Two processes (two pools, two Packagers) run the pass at the same moment: every stale
    recording becomes exactly one video; a recording written to recently (its node is alive,
    or waiting for its publisher within the reconnect window) is left alone."""
    stale = RECONNECT_WINDOW_S + RECOVERY_STALE_MARGIN_S + 5
    dead = [await left_behind(pool, f"dead{i}", idle_s=stale) for i in range(3)]
    waiting = await left_behind(pool, "alive", idle_s=RECONNECT_WINDOW_S)
    async with asyncpg.create_pool(database_url, min_size=1, max_size=6) as other_pool:
        a = packager(pool, tmp_path, "node-a")
        b = packager(other_pool, tmp_path, "node-b")
        done_a, done_b = await asyncio.gather(a.recover_stale(), b.recover_stale())
    recovered = [f.recording_id for f in done_a + done_b]
    assert sorted(recovered) == dead, "each stale recording once, by one of the two"
    finished = await video_ids(pool)
    assert set(finished) == set(dead) and waiting not in finished
    assert await pool.fetchval("SELECT count(*) FROM videos") == len(dead)
    for recording_id in dead:
        prefix = await pool.fetchval(
            "SELECT prefix FROM live_recordings WHERE id = $1", recording_id
        )
        vod = m3u8.loads((tmp_path / prefix / "source" / "vod.m3u8").read_text())
        assert [s.uri for s in vod.segments] == ["seg_0.m4s", "seg_1.m4s", "seg_2.m4s"]
        assert vod.is_endlist and vod.playlist_type == "vod"
        live = m3u8.loads((tmp_path / prefix / "source" / "live.m3u8").read_text())
        assert live.is_endlist  # players of the dead node's live playlist see the end
        video = await pool.fetchrow(
            "SELECT status, duration FROM videos WHERE id = $1", finished[recording_id]
        )
        assert video["status"] == "ready" and video["duration"] == pytest.approx(6.0)
    # A second pass finds nothing left to do.
    assert await packager(pool, tmp_path, "node-a").recover_stale() == []


async def test_a_recording_written_to_after_it_was_listed_is_left_alone(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The check under the row lock: a node that was only slow (it journals a segment between
    the listing and the lock) keeps its recording."""
    stale = RECONNECT_WINDOW_S + RECOVERY_STALE_MARGIN_S + 5
    recording_id = await left_behind(pool, "slow", idle_s=stale)
    listed = await live_media.unfinished_recordings(pool, node="", stale_after_s=stale - 5)
    assert [r["id"] for r in listed] == [recording_id]
    original = live_media.unfinished_recordings

    async def listed_then_written(*args: object, **kwargs: object) -> list[asyncpg.Record]:
        rows = await original(*args, **kwargs)  # type: ignore[arg-type]
        await live_media.add_segments(
            pool, recording_id, [("source", 9, "seg_9.m4s", "init.mp4", 2.0, False,
                                  datetime.now(UTC), 1)],
        )  # fmt: skip
        return rows

    mp = pytest.MonkeyPatch()
    mp.setattr(live_media, "unfinished_recordings", listed_then_written)
    try:
        assert await packager(pool, tmp_path, "node-a").recover_stale() == []
    finally:
        mp.undo()
    assert await video_ids(pool) == {}


async def test_the_periodic_pass_runs_after_start_up_and_skips_this_process(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`recover()` at start-up, then every `recovery_interval`: a recording that goes stale
    later is finalised without a restart; `close()` stops the task."""
    p = packager(pool, tmp_path, "node-a", interval=0.1)
    assert await p.recover() == []
    assert p._recovery is not None and not p._recovery.done()
    stale = RECONNECT_WINDOW_S + RECOVERY_STALE_MARGIN_S + 5
    with caplog.at_level(logging.INFO, logger="packager.recording"):
        recording_id = await left_behind(pool, "dead", idle_s=stale)
        for _ in range(200):
            if recording_id in await video_ids(pool):
                break
            await asyncio.sleep(0.05)
    assert (await video_ids(pool))[recording_id] is not None
    assert "recovered the recording of live" in caplog.text
    task = p._recovery
    await p.close()
    assert task.done()


async def test_recordings_of_this_process_are_skipped(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Even when stale (a database outage kept its journal from writing), a recording whose
    broadcast still runs in this process is not finalised behind its back."""
    stale = RECONNECT_WINDOW_S + RECOVERY_STALE_MARGIN_S + 5
    mine = await left_behind(pool, "node-a", idle_s=stale)
    other = await left_behind(pool, "dead", idle_s=stale)
    p = packager(pool, tmp_path, "node-a")
    live_id = await pool.fetchval("SELECT live_id FROM live_recordings WHERE id = $1", mine)
    pipeline = LivePipeline(live_id, "b1", p.options, p.storage, p.metrics)
    p.lives[live_id] = _Live(pipeline, recording_id=mine)  # as _start_broadcast leaves it
    try:
        assert [f.recording_id for f in await p.recover_stale()] == [other]
    finally:
        del p.lives[live_id]
        await pipeline.finish()
    assert set(await video_ids(pool)) == {other}
