"""Chat post path: messages persisted *and* NOTIFYed per second, against plain INSERTs of the
same rows, 8 concurrent posters, in the same run and the same embedded PostgreSQL.

- ``insert``: each poster runs ``INSERT INTO chat_messages ... VALUES ($1, $2, $3)`` on a pool
  of 8 connections, one message at a time (autocommit): the baseline.
- ``naive-notify``: the same INSERT and a ``pg_notify`` of the message in one statement, per
  message: what a direct implementation does (every commit takes PostgreSQL's global NOTIFY
  queue lock).
- ``streamd``: each poster awaits ``chat.writer.MessageWriter.post`` (as a WebSocket client's
  message does): the writer INSERTs whatever has queued and NOTIFYs it in one statement,
  packing messages into payloads under 8000 bytes.

A LISTEN connection counts the messages announced, so "notified" is checked, not assumed.
Rounds alternate the three; medians and ratios to ``insert`` are reported.

    flock /tmp/streamd-bench.lock .venv/bin/python bench/chat_post.py --rounds 3 --seconds 8 \
        > bench/results/chat_post.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from _util import log, machine_cpu_seconds, median

from chat.writer import MessageWriter
from db import chat as chat_db
from db import lives, users
from db.embedded import EmbeddedPostgres
from db.migrate import migrate

POSTERS = 8
SYSTEMS = ("insert", "naive-notify", "streamd")
TEXT = "a chat message of a typical length, with a few words and an emoji \U0001f600"


async def seed(url: str) -> tuple[int, list[int]]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        ids = []
        for i in range(POSTERS):
            row = await users.create(conn, username=f"poster{i}", email=f"p{i}@example.com",
                                     password_hash="unused", role="viewer")  # fmt: skip
            ids.append(int(row["id"]))
        live = await lives.create(conn, user_id=ids[0], title="post path")
        return int(live["id"]), ids
    finally:
        await conn.close()


async def run_one(url: str, system: str, live_id: int, user_ids: list[int], seconds: float
                  ) -> dict[str, Any]:  # fmt: skip
    pool = await asyncpg.create_pool(url, min_size=POSTERS, max_size=POSTERS + 2)
    assert pool is not None
    listener = await asyncpg.connect(url)
    announced = [0, 0]  # messages, notifications

    def on_notify(_c: object, _pid: int, _channel: str, payload: object) -> None:
        announced[0] += len(json.loads(str(payload)))
        announced[1] += 1

    await listener.add_listener(chat_db.CHANNEL, on_notify)
    writer = MessageWriter(pool) if system == "streamd" else None
    post: Callable[[int], Awaitable[Any]]
    if system == "insert":

        async def post(user_id: int) -> Any:
            return await pool.execute(
                "INSERT INTO chat_messages (live_id, user_id, content) VALUES ($1, $2, $3)",
                live_id, user_id, TEXT,
            )  # fmt: skip

    elif system == "naive-notify":

        async def post(user_id: int) -> Any:
            return await pool.execute(
                """WITH m AS (INSERT INTO chat_messages (live_id, user_id, content)
                              VALUES ($1, $2, $3) RETURNING id, live_id, user_id, content)
                   SELECT pg_notify('chat', json_build_array(json_build_object(
                       't', 'msg', 'id', id, 'live_id', live_id, 'user_id', user_id,
                       'text', content))::text) FROM m""",
                live_id, user_id, TEXT,
            )  # fmt: skip

    else:
        assert writer is not None

        async def post(user_id: int) -> Any:
            return await writer.post(live_id, user_id, TEXT)

    counts = [0] * POSTERS
    stop = False

    async def poster(i: int) -> None:
        while not stop:
            await post(user_ids[i])
            counts[i] += 1

    try:
        tasks = [asyncio.create_task(poster(i)) for i in range(POSTERS)]
        await asyncio.sleep(1.0)  # warm-up
        before = (sum(counts), time.monotonic(), machine_cpu_seconds()[0])
        await asyncio.sleep(seconds)
        after = (sum(counts), time.monotonic(), machine_cpu_seconds()[0])
        stop = True
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.5)  # the last notifications
        total = sum(counts)
        rate = (after[0] - before[0]) / (after[1] - before[1])
        return {
            "system": system, "messages_per_s": round(rate, 1), "posted": total,
            "announced": announced[0], "notifications": announced[1],
            "messages_per_notification": round(announced[0] / announced[1], 2)
            if announced[1] else None,
            "machine_busy_cores": round((after[2] - before[2]) / (after[1] - before[1]), 2),
        }  # fmt: skip
    finally:
        if writer is not None:
            await writer.close()
        await listener.close()
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="streamd-chat-post-"))
    pg = EmbeddedPostgres(workdir / "pg")
    started = time.time()
    loadavg_at_start = Path("/proc/loadavg").read_text().split()[:3]
    rounds: list[dict[str, Any]] = []
    try:
        url = pg.acquire()
        live_id, user_ids = asyncio.run(seed(url))
        for r in range(args.rounds):
            for system in SYSTEMS:
                result = asyncio.run(run_one(url, system, live_id, user_ids, args.seconds))
                log(f"round {r + 1} {system}: {result['messages_per_s']} msg/s, "
                    f"{result['messages_per_notification']} per NOTIFY")  # fmt: skip
                rounds.append({"round": r + 1, **result})
    finally:
        pg.release()
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {s: median(x["messages_per_s"] for x in rounds if x["system"] == s)
               for s in SYSTEMS}  # fmt: skip
    base = medians["insert"]
    document = {
        "benchmark": "chat_post",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": vars(args) | {"posters": POSTERS, "text_chars": len(TEXT)},
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "loadavg_at_start": loadavg_at_start,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        "medians_messages_per_s": medians,
        "ratio_streamd_vs_insert": round(medians["streamd"] / base, 3) if base else None,
        "ratio_naive_notify_vs_insert": round(medians["naive-notify"] / base, 3) if base else None,
        "target_ratio": 0.8,
        "every_message_announced": all(
            x["announced"] >= x["posted"] for x in rounds if x["system"] != "insert"
        ),
        "rounds": rounds,
    }
    document["meets_target"] = (document["ratio_streamd_vs_insert"] or 0) >= 0.8
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
