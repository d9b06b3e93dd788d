"""The chat WebSocket end to end: uvicorn on loopback, real PostgreSQL, websockets clients."""

from __future__ import annotations

import asyncio
import logging

import pytest

from db import chat as chat_db
from tests.chat.chat_helpers import ChatServer, MakeServer, open_chat


async def test_a_message_reaches_everyone_in_the_room(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    alice = await server.make_user()
    live = await server.make_live(owner)
    reader = await server.connect(live)
    talker = await server.connect(live, alice)
    assert reader.welcome["type"] == "welcome"
    assert reader.welcome["messages"] == []
    assert reader.welcome["you"] is None
    assert talker.welcome["you"] == {"id": alice.id, "username": alice.username}

    await talker.say("  hello <b>world</b>\u202e  ")
    for chat in (reader, talker):
        event = await chat.next_of("message")
        assert event["text"] == "hello <b>world</b>"  # stored as text, never rendered by us
        assert event["user"] == {"id": alice.id, "username": alice.username}
        assert isinstance(event["id"], int) and event["created_at"]

    late = await server.connect(live)
    assert [m["text"] for m in late.welcome["messages"]] == ["hello <b>world</b>"]
    rows = await server.pool.fetch("SELECT content FROM chat_messages WHERE live_id = $1", live)
    assert [r["content"] for r in rows] == ["hello <b>world</b>"]


async def test_anonymous_readers_cannot_post(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    reader = await server.connect(live)
    await reader.say("hi")
    error = await reader.next_of("error")
    assert error["code"] == "read_only"
    assert await server.pool.fetchval("SELECT count(*) FROM chat_messages") == 0


async def test_a_ticket_is_single_use(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    ticket = await server.ticket(owner, live)
    first = await open_chat(server.base_url, live, ticket)
    assert first.welcome["you"]["id"] == owner.id
    second = await open_chat(server.base_url, live, ticket)
    assert second.welcome == {"type": "error", "code": "invalid_ticket",
                              "message": second.welcome["message"]}  # fmt: skip
    await second.ws.wait_closed()
    assert second.ws.close_code == 1008


async def test_an_expired_ticket_or_another_lives_ticket_is_refused(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    other = await server.make_live(owner)
    ticket = await server.ticket(owner, live)
    await server.pool.execute("UPDATE chat_tickets SET expires_at = now() - interval '1 s'")
    refused = await open_chat(server.base_url, live, ticket)
    assert refused.welcome["code"] == "invalid_ticket"
    wrong_live = await open_chat(server.base_url, other, await server.ticket(owner, live))
    assert wrong_live.welcome["code"] == "invalid_ticket"
    async with server.http() as client:
        r = await client.post(f"/api/lives/{live}/chat/ticket")
        assert r.status_code == 401
        r = await client.post("/api/lives/999999/chat/ticket", headers=owner.auth)
        assert r.status_code == 404


async def test_unknown_live_and_bad_tickets_are_refused(server: ChatServer) -> None:
    missing = await open_chat(server.base_url, 999_999)
    assert missing.welcome["code"] == "not_found"
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    junk = await open_chat(server.base_url, live, "x" * 500)
    assert junk.welcome["code"] == "invalid_ticket"


async def test_bad_events_get_precise_errors_and_the_connection_stays(
    server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    chat = await server.connect(live, owner)
    caplog.set_level(logging.INFO, logger="web.chat")
    cases = [
        ("not json", "bad_event"),
        ('{"type": "dance"}', "bad_event"),
        ('{"type": "message", "text": 5}', "bad_event"),
        ('{"type": "delete", "message_id": "1"}', "bad_event"),
        ('{"type": "mute", "user_id": 1, "duration": -5}', "bad_event"),
        ("[" * 5000, "bad_event"),
    ]
    for raw, code in cases:
        await chat.ws.send(raw)
        assert (await chat.next_of("error"))["code"] == code
    await chat.ws.send(b"\x00binary")
    assert (await chat.next_of("error"))["code"] == "bad_event"
    assert "sent a bad event" in caplog.text
    await chat.say("still here")
    assert (await chat.next_of("message"))["text"] == "still here"


async def test_length_cap_and_clean_up(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    chat = await server.connect(live, owner)
    await chat.say("x" * 501)
    assert (await chat.next_of("error"))["code"] == "too_long"
    await chat.say("\x00\x07\u200b ")
    assert (await chat.next_of("error"))["code"] == "empty"
    await chat.say("e\u0301" * 500)  # 1000 code points, 500 after NFC
    event = await chat.next_of("message")
    assert event["text"] == "\u00e9" * 500


async def test_rate_limit_answers_an_error_not_a_disconnect(make_server: MakeServer) -> None:
    server = await make_server(chat_rate_limit=3, chat_rate_window=60)
    owner = await server.make_user("creator")
    viewer = await server.make_user()
    live = await server.make_live(owner)
    chat = await server.connect(live, viewer)
    for n in range(3):
        await chat.say(f"m{n}")
        assert (await chat.next_of("message"))["text"] == f"m{n}"
    await chat.say("one too many")
    error = await chat.next_of("error")
    assert error["code"] == "rate_limited" and error["retry_after"] > 0
    # The owner (a moderator of its room) is not limited.
    boss = await server.connect(live, owner)
    for n in range(5):
        await boss.say(f"b{n}")
        assert (await boss.next_of("message"))["text"] == f"b{n}"
    assert not chat.ws.close_code


async def test_slow_mode_set_by_the_owner(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    viewer = await server.make_user()
    live = await server.make_live(owner)
    boss = await server.connect(live, owner)
    chat = await server.connect(live, viewer)
    await chat.send(type="slow_mode", seconds=60)
    assert (await chat.next_of("error"))["code"] == "forbidden"
    await boss.send(type="slow_mode", seconds=60)
    notice = await chat.next_of("system")
    assert notice["code"] == "slow_mode" and notice["seconds"] == 60
    await chat.say("first")
    assert (await chat.next_of("message"))["text"] == "first"
    await chat.say("second")
    assert (await chat.next_of("error"))["code"] == "slow_mode"
    await boss.send(type="slow_mode", enabled=False)
    assert (await chat.next_of("system"))["seconds"] == 0
    await chat.say("third")
    assert (await chat.next_of("message"))["text"] == "third"
    log = await chat_db.moderation_log(server.pool, live)
    assert [(r["action"], r["duration_s"]) for r in log] == [("slow_mode", 60), ("slow_mode", 0)]


async def test_chat_disabled_on_the_live(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    chat = await server.connect(live, owner)
    async with server.http() as client:
        r = await client.patch(f"/api/lives/{live}", json={"chat_enabled": False},
                               headers=owner.auth)  # fmt: skip
        assert r.status_code == 200, r.text
    assert (await chat.next_of("system"))["code"] == "chat_disabled"
    await chat.say("anyone?")
    assert (await chat.next_of("error"))["code"] == "chat_disabled"
    late = await server.connect(live)
    assert late.welcome["chat_enabled"] is False


async def test_mute_ban_and_delete_by_a_named_moderator(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    mod = await server.make_user()
    troll = await server.make_user()
    live = await server.make_live(owner)
    async with server.http() as client:
        r = await client.put(f"/api/lives/{live}/chat/moderators/{mod.id}", headers=troll.auth)
        assert r.status_code == 403
        r = await client.put(f"/api/lives/{live}/chat/moderators/{mod.id}", headers=owner.auth)
        assert r.status_code == 204, r.text
    watcher = await server.connect(live)
    moderator = await server.connect(live, mod)
    assert moderator.welcome["can_moderate"] is True
    bad = await server.connect(live, troll)
    assert bad.welcome["can_moderate"] is False

    await bad.say("spam")
    spam = await watcher.next_of("message")
    await bad.send(type="delete", message_id=spam["id"])
    assert (await bad.next_of("error"))["code"] == "forbidden"
    await moderator.send(type="delete", message_id=spam["id"])
    assert (await watcher.next_of("message_deleted"))["id"] == spam["id"]
    assert [m["id"] for m in (await server.connect(live)).welcome["messages"]] == []

    await moderator.send(type="mute", user_id=troll.id, duration=600)
    notice = await bad.next_of("system")
    assert (notice["code"], notice["user_id"]) == ("muted", troll.id)
    await bad.say("more spam")
    assert (await bad.next_of("error"))["code"] == "muted"

    await moderator.send(type="ban", user_id=troll.id, duration=600)
    assert (await bad.next_of("error"))["code"] == "banned"
    await bad.ws.wait_closed()
    assert bad.ws.close_code == 1008
    again = await server.connect(live, troll)
    assert again.welcome["code"] == "banned"

    await moderator.send(type="ban", user_id=owner.id, duration=600)
    assert (await moderator.next_of("error"))["code"] == "forbidden"

    log = await chat_db.moderation_log(server.pool, live)
    assert [r["action"] for r in log] == ["add_moderator", "delete", "mute", "ban"]
    async with server.http() as client:
        r = await client.get(f"/api/lives/{live}/chat/moderation", headers=owner.auth)
        assert [e["action"] for e in r.json()["items"]] == ["add_moderator", "delete", "mute",
                                                             "ban"]  # fmt: skip


async def test_heartbeats_are_validated_and_counted(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    async with server.http() as client:
        for body in ({"player_id": "short"}, {"player_id": "bad id with spaces"},
                     {"player_id": 12345678}, {"player_id": "x" * 65}):  # fmt: skip
            r = await client.post(f"/api/lives/{live}/heartbeat", json=body)
            assert r.status_code == 422, body
            assert r.json()["error"]["code"] == "validation_error"
        r = await client.post("/api/lives/999999/heartbeat", json={})
        assert r.status_code == 404
        # The first heartbeat gets a player id; the player counts from the next one.
        r = await client.post(f"/api/lives/{live}/heartbeat", json={})
        assert r.status_code == 200
        player = {"player_id": r.json()["player_id"]}
        r = await client.post(f"/api/lives/{live}/heartbeat", json=player)
        assert r.status_code == 200 and r.json()["player_id"] == player["player_id"]
    assert server.hub.local_counts() == {live: 1}
    await server.hub.report_once()
    assert server.hub.totals == {live: 1}


async def test_moderator_endpoints(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    other = await server.make_user()
    admin = await server.make_user("admin")
    live = await server.make_live(owner)
    base = f"/api/lives/{live}/chat/moderators"
    async with server.http() as client:
        assert (await client.put(f"{base}/999999", headers=owner.auth)).status_code == 404
        assert (await client.delete(f"{base}/{other.id}", headers=owner.auth)).status_code == 404
        assert (await client.put(f"{base}/{other.id}", headers=admin.auth)).status_code == 204
        assert (await client.put(f"{base}/{other.id}", headers=owner.auth)).status_code == 204
        assert (await client.delete(f"{base}/{other.id}", headers=other.auth)).status_code == 403
        assert (await client.delete(f"{base}/{other.id}", headers=owner.auth)).status_code == 204
        r = await client.get(f"/api/lives/{live}/chat/moderation", headers=other.auth)
        assert r.status_code == 403
        r = await client.get(f"/api/lives/{live}/chat/moderation", headers=admin.auth)
        assert [e["action"] for e in r.json()["items"]] == ["add_moderator", "remove_moderator"]


async def test_the_hub_is_on_metrics(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    chat = await server.connect(live, owner)
    try:
        await asyncio.wait_for(server.hub.connected.wait(), 10)
        async with server.http() as client:
            text = (await client.get("/metrics")).text
        assert "streamd_chat_lives 1.0" in text
        assert "streamd_chat_viewers 1.0" in text
        assert "streamd_chat_listen_connected 1.0" in text
        assert "streamd_chat_slow_disconnects_total 0.0" in text
    finally:
        await chat.close()


async def test_deletions_missed_while_listen_was_down_are_announced_on_reconnect(
    server: ChatServer,
) -> None:
    """The LISTEN connection is killed by PostgreSQL (pg_terminate_backend). A deletion whose
    NOTIFY the hub never got (made here by an UPDATE without one, which is what a NOTIFY sent
    during the outage amounts to) reaches the clients as a tombstone once the hub is back; a
    message deleted and announced before is not announced again."""
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    reader = await server.connect(live)
    ids = [int(r["id"]) for r in await chat_db.insert_messages(
        server.pool, [live] * 3, [owner.id] * 3, ["one", "two", "three"])]  # fmt: skip
    for _ in ids:
        await reader.next_of("message")
    assert await chat_db.delete_message(server.pool, live_id=live, message_id=ids[0],
                                        actor_id=owner.id) is not None  # fmt: skip
    assert (await reader.next_of("message_deleted"))["id"] == ids[0]

    await server.pool.execute("UPDATE chat_messages SET deleted_at = now() WHERE id = $1", ids[1])
    reconnects = server.hub.stats["reconnects"]
    killed = await server.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'streamd-chat' AND datname = current_database()")  # fmt: skip
    assert killed == 1
    event = await reader.next_of("message_deleted", timeout=30)
    assert event["id"] == ids[1]
    assert server.hub.stats["reconnects"] == reconnects + 1
    await chat_db.insert_messages(server.pool, [live], [owner.id], ["after"])
    # No second tombstone for the first message came in between.
    between = []
    while (event := await reader.next())["type"] != "message":
        between.append(event)
    assert event["text"] == "after"
    assert [e for e in between if e["type"] == "message_deleted"] == []
