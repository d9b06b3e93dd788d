"""Chat across real ``streamd serve`` processes sharing one PostgreSQL, and a hub that outlives
a PostgreSQL restart."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import httpx

from config.settings import Settings
from db import chat as chat_db
from db import lives
from db.embedded import EmbeddedPostgres
from tests.chat.chat_helpers import Chat, User, make_user, open_chat
from tests.helpers import ServeProcess, cli_env
from web.tokens import load_key_set

SECRET = "k" * 40
INTERVAL = 1.0  # STREAMD_CHAT_REPORT_INTERVAL of the processes


def _serve(tmp_path: Path, name: str, url: str) -> ServeProcess:
    return ServeProcess(cli_env(
        tmp_path / name, DATABASE_URL=url, STREAMD_JWT_SECRET=SECRET,
        STREAMD_CHAT_REPORT_INTERVAL=str(INTERVAL), STREAMD_HLS_LADDER="none",
    ))  # fmt: skip


async def _ticket(base_url: str, user: User, live_id: int) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        r = await client.post(f"/api/lives/{live_id}/chat/ticket", headers=user.auth)
    assert r.status_code == 200, r.text
    ticket: str = r.json()["ticket"]
    return ticket


async def _count(chat: Chat, wanted: int, timeout: float) -> float:
    """Read until a viewer_count event says ``wanted``; the seconds it took."""
    started = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - started)
        event = await chat.next_of("viewer_count", timeout=max(left, 0.01))
        if event["count"] == wanted:
            return time.monotonic() - started


async def test_two_processes_share_messages_and_viewer_counts(
    tmp_path: Path, database_url: str
) -> None:
    a = _serve(tmp_path, "a", database_url)
    b = _serve(tmp_path, "b", database_url)
    conn = await asyncpg.connect(database_url)
    try:
        a.wait_healthy()
        b.wait_healthy()
        keys = load_key_set(Settings(jwt_secret=SECRET))
        owner = await make_user(conn, keys, "creator")
        viewer = await make_user(conn, keys)
        live = int((await lives.create(conn, user_id=owner.id, title="two"))["id"])

        on_a = await open_chat(a.base_url, live, await _ticket(a.base_url, owner, live))
        on_b = await open_chat(b.base_url, live, await _ticket(b.base_url, viewer, live))
        readers_b = [await open_chat(b.base_url, live) for _ in range(2)]

        await on_a.say("from a")
        for chat in (on_a, on_b, *readers_b):
            assert (await chat.next_of("message"))["text"] == "from a"
        await on_b.say("from b")
        assert (await on_a.next_of("message"))["text"] == "from b"

        # 1 client on A + 3 on B, plus an HLS player heartbeating to A with the id B issued
        # it (the processes of a deployment accept each other's player ids).
        await _count(on_a, 4, timeout=10 * INTERVAL)
        async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as client:
            r = await client.post(f"/api/lives/{live}/heartbeat", json={})
            assert r.status_code == 200, r.text
        player = {"player_id": r.json()["player_id"]}
        async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as client:
            r = await client.post(f"/api/lives/{live}/heartbeat", json=player)
            assert r.status_code == 200, r.text
            assert r.json() == {**player, "viewer_count": 4, "interval": 15}
        await _count(on_a, 5, timeout=10 * INTERVAL)
        assert (await _count(readers_b[0], 5, timeout=10 * INTERVAL)) >= 0
        row = await conn.fetchrow("SELECT viewer_count, peak_viewer_count FROM lives WHERE id = $1",
                                  live)  # fmt: skip
        assert (row["viewer_count"], row["peak_viewer_count"]) == (5, 5)

        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        # B's report stops counting two intervals after it was written; A's next report sees
        # it: at most three intervals after the kill (plus scheduling slack on a busy machine).
        took = await _count(on_a, 2, timeout=3 * INTERVAL + 5)
        print(f"viewers of the killed process left the count after {took:.2f} s")
        row = await conn.fetchrow("SELECT viewer_count, peak_viewer_count FROM lives WHERE id = $1",
                                  live)  # fmt: skip
        assert (row["viewer_count"], row["peak_viewer_count"]) == (2, 5)
        assert a.proc.poll() is None
    finally:
        await conn.close()
        code, _, err = a.stop()
        b.stop()
    assert code == 0, err


async def test_the_hub_survives_a_postgresql_restart_and_delivers_exactly_once(
    tmp_path: Path,
) -> None:
    external = EmbeddedPostgres(tmp_path / "external-pg")
    url = external.acquire()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = _serve(tmp_path, "var", url)
    try:
        server.wait_healthy()
        conn = await asyncpg.connect(url)
        keys = load_key_set(Settings(jwt_secret=SECRET))
        owner = await make_user(conn, keys, "creator")
        live = int((await lives.create(conn, user_id=owner.id, title="restart"))["id"])
        reader = await open_chat(server.base_url, live)
        await chat_db.insert_messages(conn, [live], [owner.id], ["before"])
        assert (await reader.next_of("message"))["text"] == "before"
        await conn.close()

        external.stop()
        await asyncio.sleep(2 * INTERVAL)  # the hub notices and starts retrying
        external.start(port)
        conn = await asyncpg.connect(url)
        # Committed while the hub is (probably) still reconnecting: caught up from the table.
        await chat_db.insert_messages(conn, [live], [owner.id], ["during"])
        for _ in range(300):
            if httpx.get(server.base_url + "/ready", timeout=10).status_code == 200:
                break
            await asyncio.sleep(0.1)
        # After recovery: through NOTIFY again.
        await chat_db.insert_messages(conn, [live], [owner.id], ["after"])
        await chat_db.insert_messages(conn, [live], [owner.id], ["last"])
        texts = []
        while not texts or texts[-1] != "last":
            texts.append((await reader.next_of("message", timeout=30))["text"])
        assert texts == ["during", "after", "last"]  # each once, in order

        # The hub LISTENs again: a new client gets new messages live.
        again = await open_chat(server.base_url, live)
        await chat_db.insert_messages(conn, [live], [owner.id], ["fresh"])
        assert (await again.next_of("message", timeout=30))["text"] == "fresh"
        assert (await reader.next_of("message", timeout=30))["text"] == "fresh"
        await conn.close()
        assert server.proc.poll() is None
    finally:
        code, _, err = server.stop()
        external.release()
    assert code == 0, err
    assert "chat: LISTEN connection lost" in err
