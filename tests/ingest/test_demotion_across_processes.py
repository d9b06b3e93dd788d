"""A creator demoted to viewer on one ``streamd serve`` loses the RTMP publish another holds,
and cannot publish again: the role is checked when a publish starts and cut when it changes.

The API process NOTIFYs ``live_control`` (as for a stop or a deactivation); the process holding
the publisher hears it on the chat hub's LISTEN connection and cuts it; its gate then refuses
the key of an account that may not stream."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import imageio_ffmpeg

from config.settings import Settings
from db import lives
from tests.chat.chat_helpers import make_user
from tests.helpers import ServeProcess, cli_env
from web.tokens import load_key_set

SECRET = "s" * 40


def _serve(tmp_path: Path, name: str, url: str) -> ServeProcess:
    return ServeProcess(cli_env(
        tmp_path / name, DATABASE_URL=url, STREAMD_JWT_SECRET=SECRET, STREAMD_HLS_LADDER="none",
    ))  # fmt: skip


def _publish(port: str, key: str, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
         "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
         "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


async def _wait_status(conn: asyncpg.Connection, live_id: int, want: str) -> str:
    for _ in range(200):
        status = str(await conn.fetchval("SELECT status FROM lives WHERE id = $1", live_id))
        if status == want:
            break
        await asyncio.sleep(0.1)
    return status


async def test_demotion_on_one_process_cuts_the_publisher_on_another(
    tmp_path: Path, database_url: str
) -> None:
    holder = _serve(tmp_path, "holder", database_url)
    api = _serve(tmp_path, "api", database_url)
    conn = await asyncpg.connect(database_url)
    publishers: list[subprocess.Popen[str]] = []
    try:
        holder.wait_healthy()
        api.wait_healthy()
        keys = load_key_set(Settings(jwt_secret=SECRET))
        owner = await make_user(conn, keys, "creator")
        admin = await make_user(conn, keys, "admin")
        live = await lives.create(conn, user_id=owner.id, title="demote me")
        port = holder.env["STREAMD_RTMP_PORT"]
        publishers.append(_publish(port, live["stream_key"], 120))
        assert await _wait_status(conn, live["id"], "live") == "live"

        async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
            r = await client.patch(f"/api/admin/users/{owner.id}", json={"role": "viewer"},
                                   headers=admin.auth)  # fmt: skip
            assert r.status_code == 200, r.text
            started = time.monotonic()
            _, stderr = await asyncio.to_thread(publishers[0].communicate, None, 30)
            took = time.monotonic() - started
            # The server closed the stream under it, long before its 120 s.
            assert publishers[0].returncode != 0, stderr
            assert took < 20, took
            assert await _wait_status(conn, live["id"], "ended") == "ended"

            # The same key again, on the process that held it: refused at publish time.
            publishers.append(_publish(port, live["stream_key"], 20))
            _, stderr = await asyncio.to_thread(publishers[1].communicate, None, 30)
            assert publishers[1].returncode != 0, stderr
            assert await conn.fetchval("SELECT status FROM lives WHERE id = $1",
                                       live["id"]) == "ended"  # fmt: skip
            # A demotion is not a deactivation: the account is still signed in.
            r = await client.get("/api/users/me", headers=owner.auth)
            assert r.status_code == 200 and r.json()["role"] == "viewer"
    finally:
        for publisher in publishers:
            if publisher.poll() is None:
                publisher.kill()
                publisher.communicate()
        await conn.close()
        code, _, err = holder.stop()
        api.stop()
    assert code == 0, err
    assert f"live {live['id']}: stopping publisher" in err
    assert "account may no longer stream" in err
    assert "(owner_not_creator)" in err
