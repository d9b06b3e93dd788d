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

from config.settings import Settings
from db import lives
from tests.chat.chat_helpers import make_user
from tests.ingest.two_servers import SECRET, publish, serve, stop_publishers, wait_status
from web.tokens import load_key_set


async def test_demotion_on_one_process_cuts_the_publisher_on_another(
    tmp_path: Path, database_url: str
) -> None:
    holder = serve(tmp_path, "holder", database_url)
    api = serve(tmp_path, "api", database_url)
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
        publishers.append(publish(port, live["stream_key"], 120))
        assert await wait_status(conn, live["id"], "live") == "live"

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
            assert await wait_status(conn, live["id"], "ended") == "ended"

            # The same key again, on the process that held it: refused at publish time.
            publishers.append(publish(port, live["stream_key"], 20))
            _, stderr = await asyncio.to_thread(publishers[1].communicate, None, 30)
            assert publishers[1].returncode != 0, stderr
            assert await conn.fetchval("SELECT status FROM lives WHERE id = $1",
                                       live["id"]) == "ended"  # fmt: skip
            # A demotion is not a deactivation: the account is still signed in.
            r = await client.get("/api/users/me", headers=owner.auth)
            assert r.status_code == 200 and r.json()["role"] == "viewer"
    finally:
        stop_publishers(publishers)
        await conn.close()
        code, _, err = holder.stop()
        api.stop()
    assert code == 0, err
    assert f"live {live['id']}: stopping publisher" in err
    assert "account may no longer stream" in err
    assert "(owner_not_creator)" in err
