"""A server killed with SIGKILL mid-live: on restart its recording becomes a playable VOD."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import m3u8
import pytest

from db import lives, users, videos
from packager.recording import Finalised, recover_recordings
from packager.storage.base import Storage
from packager.storage.local import LocalStorage
from tests.helpers import REPO
from tests.packager.hls_harness import ffmpeg_publish, player_errors
from tests.packager.hls_helpers import packager_options

pytestmark = pytest.mark.slow
SERVER = Path(__file__).with_name("crash_server.py")


async def journaled(pool: asyncpg.Pool) -> int:
    count = await pool.fetchval(
        "SELECT count(*) FROM live_recording_segments WHERE rendition = 'source'"
    )
    return int(count)


async def recover(pool: asyncpg.Pool, storage: Storage, node: str) -> list[Finalised]:
    """What the restarted server's packager does at start-up (default settings, as the
    crashed server ran)."""
    options = packager_options()
    return await recover_recordings(
        pool, storage, node=node, window=options.window,
        minimum_target=options.target_duration_tag,
    )  # fmt: skip


async def test_sigkill_mid_live_then_recovery(database_url: str, tmp_path: Path) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    try:
        owner = await users.create(
            pool, username="streamer", email="s@example.com", password_hash="x", role="creator"
        )
        live = await lives.create(pool, user_id=owner["id"], title="crashy")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        server = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), database_url, str(tmp_path), "node-a",
            stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO,
        )  # fmt: skip
        assert server.stdout is not None
        port = int(await asyncio.wait_for(server.stdout.readline(), 60))
        url = f"rtmp://127.0.0.1:{port}/live/{live['stream_key']}"
        publisher = asyncio.create_task(ffmpeg_publish(url, seconds=30))
        for _ in range(600):
            if await journaled(pool) >= 3:
                break
            await asyncio.sleep(0.05)
        server.kill()  # SIGKILL: no clean-up of any kind
        await server.wait()
        await asyncio.wait_for(publisher, 30)  # it fails: its server is gone
        kept = await journaled(pool)
        assert kept >= 3

        storage = LocalStorage(tmp_path)
        # Another node's recordings are left alone while they may still be running...
        assert await recover(pool, storage, "node-b") == []
        # ...and the restarted node finalises its own.
        (result,) = await recover(pool, storage, "node-a")
        assert result.video_id is not None
        video = await videos.get(pool, result.video_id)
        assert video is not None and video["status"] == "ready"
        assert video["user_id"] == owner["id"] and video["title"] == "crashy"
        assert video["duration"] == pytest.approx(2 * kept, abs=0.2)
        master = tmp_path / video["hls_key"]
        vod = m3u8.load(str(master.parent / "source" / "vod.m3u8"))
        assert vod.is_endlist and vod.playlist_type == "vod"
        assert [s.uri for s in vod.segments] == [f"seg_{n}.m4s" for n in range(kept)]
        assert await player_errors(str(master)) == ""
        # The live playlist a player might still hold now ends too.
        live_playlist = m3u8.load(str(master.parent / "source" / "live.m3u8"))
        assert live_playlist.is_endlist
        assert await recover(pool, storage, "node-a") == []  # done once
    finally:
        await pool.close()
