"""Stream-health samples pushed over the chat WebSocket: to the live's owner and admins only.

The samples come as the packager process sends them: stored and NOTIFYed on ``live_health``
by db.live_health.record, heard on the hub's one LISTEN connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from db import live_health
from tests.chat.chat_helpers import Chat, ChatServer

SAMPLE = {"bitrate_kbps": 2500.5, "video_kbps": 2372.5, "audio_kbps": 128.0, "fps": 30.0,
          "keyframe_interval_s": 2.0, "audio": True, "video_codec": "h264", "width": 1280,
          "height": 720, "rungs": ["480p"], "rungs_shed": []}  # fmt: skip


async def events_until_message(chat: Chat) -> list[dict[str, Any]]:
    """Every event up to and including the next chat message."""
    seen = []
    while True:
        seen.append(await chat.next())
        if seen[-1]["type"] == "message":
            return seen


async def test_the_owner_and_admins_get_health_viewers_do_not(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    admin = await server.make_user("admin")
    viewer = await server.make_user()
    moderator = await server.make_user()
    live = await server.make_live(owner)
    async with server.http() as client:
        r = await client.put(f"/api/lives/{live}/chat/moderators/{moderator.id}",
                             headers=owner.auth)  # fmt: skip
        assert r.status_code == 204, r.text
    await server.pool.execute("UPDATE lives SET viewer_count = 4 WHERE id = $1", live)
    managers = [await server.connect(live, owner), await server.connect(live, admin)]
    others = [await server.connect(live, viewer), await server.connect(live, moderator),
              await server.connect(live)]  # fmt: skip
    await asyncio.wait_for(server.hub.connected.wait(), 10)

    assert await live_health.record(server.pool, [live], [json.dumps(SAMPLE)]) == 1
    for chat in managers:
        event = await chat.next_of("health")
        assert set(event) == {"type", "sample"}
        sample = dict(event["sample"])
        assert isinstance(sample.pop("at"), str)
        assert sample == {**SAMPLE, "viewer_count": 4}
    # A message sent after the sample reaches everyone after it: the others never got it.
    await managers[0].say("after the sample")
    for chat in others:
        seen = await events_until_message(chat)
        assert "health" not in [e["type"] for e in seen], seen
    # Another live's sample reaches nobody here.
    other_live = await server.make_live(owner)
    await live_health.record(server.pool, [other_live], [json.dumps(SAMPLE)])
    await managers[0].say("second")
    seen = await events_until_message(managers[0])
    assert "health" not in [e["type"] for e in seen], seen


async def test_a_malformed_health_notification_is_counted_and_ignored(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    chat = await server.connect(live, owner)
    await asyncio.wait_for(server.hub.connected.wait(), 10)
    before = server.hub.stats["bad_notifications"]
    for payload in ("nonsense", "[]", json.dumps({"live_id": live, "sample": [1]}),
                    json.dumps({"sample": {}})):  # fmt: skip
        await server.pool.execute("SELECT pg_notify($1, $2)", live_health.CHANNEL, payload)
    await live_health.record(server.pool, [live], [json.dumps(SAMPLE)])
    event = await chat.next_of("health")  # the hub goes on
    assert event["sample"]["fps"] == 30.0
    assert server.hub.stats["bad_notifications"] == before + 4
