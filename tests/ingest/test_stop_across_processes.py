"""``POST /api/lives/{id}/stop`` on one ``streamd serve`` cuts a publisher held by another.

The API process marks the live ended and NOTIFYs ``live_control``; the process holding the
RTMP publisher hears it on the chat hub's LISTEN connection (one per process) and cuts it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx

from config.settings import Settings
from db import lives
from tests.chat.chat_helpers import make_user
from tests.ingest.two_servers import SECRET, publish, serve, stop_publishers, wait_status
from web.tokens import load_key_set


async def test_stop_on_one_process_cuts_the_publisher_on_another(
    tmp_path: Path, database_url: str
) -> None:
    holder = serve(tmp_path, "holder", database_url)
    api = serve(tmp_path, "api", database_url)
    conn = await asyncpg.connect(database_url)
    publisher: subprocess.Popen[str] | None = None
    try:
        holder.wait_healthy()
        api.wait_healthy()
        owner = await make_user(conn, load_key_set(Settings(jwt_secret=SECRET)), "creator")
        live = await lives.create(conn, user_id=owner.id, title="cut me")
        publisher = publish(holder.env["STREAMD_RTMP_PORT"], live["stream_key"], 120)
        assert await wait_status(conn, live["id"], "live") == "live"

        async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
            r = await client.post(f"/api/lives/{live['id']}/stop", headers=owner.auth)
        assert r.status_code == 200, r.text
        assert r.json()["disconnected"] is False  # not held by the process that answered
        assert r.json()["live"]["status"] == "ended"

        started = time.monotonic()
        _, stderr = await asyncio.to_thread(publisher.communicate, None, 30)
        took = time.monotonic() - started
        # The server closed the stream under it, long before its 120 s.
        assert publisher.returncode != 0, stderr
        assert took < 20, took
    finally:
        if publisher is not None:
            stop_publishers([publisher])
        await conn.close()
        code, _, err = holder.stop()
        api.stop()
    assert code == 0, err
    assert f"live {live['id']}: stopping publisher" in err
    assert "stopped by its owner" in err
