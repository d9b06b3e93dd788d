"""Who may call the chat endpoints under /api/lives/{id}: the authorization matrix of chat
(tests/web/test_api_authz.py covers the other live endpoints)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chat.room import Room
from db import chat as chat_db
from tests.chat.chat_helpers import Chat, ChatServer
from web.app import ENDPOINTS

CHAT_PATHS = {
    ("POST", "/api/lives/{live_id:int}/chat/ticket"),
    ("POST", "/api/lives/{live_id:int}/heartbeat"),
    ("PUT", "/api/lives/{live_id:int}/chat/moderators/{user_id:int}"),
    ("DELETE", "/api/lives/{live_id:int}/chat/moderators/{user_id:int}"),
    ("GET", "/api/lives/{live_id:int}/chat/moderation"),
    ("DELETE", "/api/lives/{live_id:int}/chat/sanctions/{user_id:int}"),
}


def test_every_chat_endpoint_is_in_this_matrix() -> None:
    chat = {(e.method, e.path) for e in ENDPOINTS if e.tag == "chat"}
    assert chat == CHAT_PATHS


async def test_owner_endpoints_refuse_everyone_but_the_owner_and_admins(
    server: ChatServer,
) -> None:
    owner = await server.make_user("creator")
    stranger = await server.make_user("creator")
    viewer = await server.make_user()
    admin = await server.make_user("admin")
    target = await server.make_user()
    live = await server.make_live(owner)
    calls = [
        ("PUT", f"/api/lives/{{}}/chat/moderators/{target.id}"),
        ("DELETE", f"/api/lives/{{}}/chat/moderators/{target.id}"),
        ("GET", "/api/lives/{}/chat/moderation"),
    ]
    async with server.http() as client:
        for method, path in calls:
            url = path.format(live)
            for user in (stranger, viewer):
                r = await client.request(method, url, headers=user.auth)
                assert r.status_code == 403, (method, path, r.text)
            assert (await client.request(method, url)).status_code == 401
            r = await client.request(method, path.format(live + 1000), headers=owner.auth)
            assert r.status_code == 404
            r = await client.request(method, path.format(2**63), headers=owner.auth)
            assert r.status_code == 404
            assert (await client.put(f"/api/lives/{live}/chat/moderators/{target.id}",
                                     headers=owner.auth)).status_code == 204  # fmt: skip
            r = await client.request(method, url, headers=owner.auth)
            assert r.status_code in (200, 204), (method, path, r.text)
            await client.put(f"/api/lives/{live}/chat/moderators/{target.id}", headers=admin.auth)
            r = await client.request(method, url, headers=admin.auth)
            assert r.status_code in (200, 204), (method, path, r.text)
    assert await server.pool.fetchval("SELECT count(*) FROM chat_moderators WHERE user_id = $1",
                                      stranger.id) == 0  # fmt: skip


async def test_a_ticket_needs_a_token_and_a_live_heartbeats_need_neither(
    server: ChatServer,
) -> None:
    owner = await server.make_user("creator")
    stranger = await server.make_user()
    live = await server.make_live(owner)
    async with server.http() as client:
        assert (await client.post(f"/api/lives/{live}/chat/ticket")).status_code == 401
        r = await client.post(f"/api/lives/{live}/chat/ticket",
                              headers={"Authorization": "Bearer nonsense"})  # fmt: skip
        assert r.status_code == 401
        # Any signed-in user may chat in any live.
        r = await client.post(f"/api/lives/{live}/chat/ticket", headers=stranger.auth)
        assert r.status_code == 200 and r.json()["expires_in"] == 60
        r = await client.post(f"/api/lives/{2**63}/chat/ticket", headers=stranger.auth)
        assert r.status_code == 404
        r = await client.post(f"/api/lives/{live}/heartbeat", json={"player_id": "anonymous-1"})
        assert r.status_code == 200


async def _answer(chat: Chat) -> dict[str, Any]:
    """What an action brought back to its sender: an ``error``, or the broadcast it caused."""
    while True:
        event = await chat.next()
        if event["type"] in ("error", "system", "message_deleted"):
            return event


async def _post(chat: Chat, reader: Chat, text: str) -> int:
    await chat.say(text)
    while (event := await reader.next_of("message"))["text"] != text:
        pass
    return int(event["id"])


async def test_moderators_act_on_viewers_only(
    server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chat.hub")
    owner = await server.make_user("creator")
    admin = await server.make_user("admin")
    mod, other_mod = await server.make_user(), await server.make_user()
    viewer = await server.make_user()
    live = await server.make_live(owner)
    async with server.http() as client:
        for m in (mod, other_mod):
            r = await client.put(f"/api/lives/{live}/chat/moderators/{m.id}", headers=owner.auth)
            assert r.status_code == 204
    chats = {u.id: await server.connect(live, u) for u in (owner, admin, mod, other_mod, viewer)}
    reader = await server.connect(live)
    said = {u.id: await _post(chats[u.id], reader, f"hi from {u.id}")
            for u in (owner, admin, other_mod, viewer, mod)}  # fmt: skip
    moderator = chats[mod.id]

    # A named moderator: never the owner, an admin or another moderator, by any action.
    for target in (owner, admin, other_mod):
        for kind in ("mute", "ban"):
            await moderator.send(type=kind, user_id=target.id, duration=600)
            answer = await _answer(moderator)
            assert (answer["type"], answer.get("code")) == ("error", "forbidden"), (target, kind)
        await moderator.send(type="delete", message_id=said[target.id])
        answer = await _answer(moderator)
        assert (answer["type"], answer.get("code")) == ("error", "forbidden"), target
    assert f"chat: live {live}: user {mod.id} may not ban user {admin.id}" in caplog.text
    # Nothing happened to them: no sanction, messages still there, still connected.
    assert await server.pool.fetchval("SELECT count(*) FROM chat_sanctions") == 0
    kept = [m["id"] for m in (await server.connect(live)).welcome["messages"]]
    assert kept == [said[u.id] for u in (owner, admin, other_mod, viewer, mod)]
    assert await _post(chats[admin.id], reader, "still here") > 0

    # ...but a viewer, and its own messages.
    await moderator.send(type="delete", message_id=said[mod.id])
    assert (await _answer(moderator))["type"] == "message_deleted"
    await moderator.send(type="delete", message_id=said[viewer.id])
    assert (await _answer(moderator))["type"] == "message_deleted"
    await moderator.send(type="mute", user_id=viewer.id, duration=600)
    assert (await _answer(moderator))["code"] == "muted"

    # The owner acts on moderators and viewers, never on admins; admins on everyone but the
    # owner (its messages excepted) and other admins. (Fresh connections: the first ones hold
    # the broadcasts of the actions above.)
    streamer = await server.connect(live, owner)
    await streamer.send(type="ban", user_id=admin.id, duration=600)
    assert (await _answer(streamer))["code"] == "forbidden"
    await streamer.send(type="delete", message_id=said[admin.id])
    assert (await _answer(streamer))["code"] == "forbidden"
    await streamer.send(type="mute", user_id=other_mod.id, duration=60)
    assert (await _answer(streamer))["code"] == "muted"
    staff = await server.connect(live, admin)
    await staff.send(type="delete", message_id=said[owner.id])
    assert (await _answer(staff))["type"] == "message_deleted"
    await staff.send(type="ban", user_id=mod.id, duration=60)
    assert (await _answer(staff))["code"] == "banned"
    await staff.send(type="ban", user_id=owner.id, duration=60)
    assert (await _answer(staff))["code"] == "forbidden"

    log = [(r["actor_id"], r["action"], r["target_user_id"])
           for r in await chat_db.moderation_log(server.pool, live)]  # fmt: skip
    assert log[2:] == [
        (mod.id, "delete", mod.id),
        (mod.id, "delete", viewer.id),
        (mod.id, "mute", viewer.id),
        (owner.id, "mute", other_mod.id),
        (admin.id, "delete", owner.id),
        (admin.id, "ban", mod.id),
    ]


async def test_the_owner_and_admins_lift_sanctions_through_the_api(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    admin = await server.make_user("admin")
    mod, viewer, bystander = [await server.make_user() for _ in range(3)]
    live = await server.make_live(owner)
    # As a moderator could before moderators were held to viewers: an admin banned.
    await chat_db.add_moderator(server.pool, live_id=live, user_id=mod.id, actor_id=owner.id)
    for user, kind in ((admin, "ban"), (viewer, "mute"), (viewer, "ban"), (bystander, "mute")):
        assert await chat_db.sanction(server.pool, live_id=live, user_id=user.id, kind=kind,
                                      duration_s=3600, actor_id=mod.id)  # fmt: skip
    watcher = await server.connect(live)
    url = f"/api/lives/{live}/chat/sanctions/{{}}"
    async with server.http() as client:
        for user in (mod, viewer):  # named moderators lift a viewer's through the WebSocket
            r = await client.delete(url.format(admin.id), headers=user.auth)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert (await client.delete(url.format(admin.id))).status_code == 401
        for path in (f"/api/lives/{live + 1000}/chat/sanctions/{admin.id}", url.format(999999),
                     url.format(owner.id)):  # fmt: skip
            r = await client.delete(path, headers=owner.auth)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
        # The admin's way back: itself (or the owner) lifts the ban.
        r = await client.delete(url.format(admin.id), headers=admin.auth)
        assert r.status_code == 204, r.text
        event = await watcher.next_of("system")
        assert (event["code"], event["user_id"], event["until"]) == ("unbanned", admin.id, None)
        assert (await server.connect(live, admin)).welcome["type"] == "welcome"
        r = await client.delete(url.format(viewer.id), headers=owner.auth)
        assert r.status_code == 204
        lifted = {(await watcher.next_of("system"))["code"] for _ in range(2)}
        assert lifted == {"unmuted", "unbanned"}
        assert (await client.delete(url.format(viewer.id), headers=owner.auth)).status_code == 404
        r = await client.get(f"/api/lives/{live}/chat/moderation", headers=owner.auth)
        entries = [(e["actor_id"], e["action"], e["target_user_id"]) for e in r.json()["items"]]
    # Every lift is recorded beside the sanction it ended; the bystander's mute still holds.
    assert entries[-3:] == [(admin.id, "unban", admin.id), (owner.id, "unban", viewer.id),
                            (owner.id, "unmute", viewer.id)]  # fmt: skip
    assert [e[1] for e in entries[:5]] == ["add_moderator", "ban", "mute", "ban", "mute"]
    active = await chat_db.active_sanctions(server.pool, live)
    assert [(r["user_id"], r["kind"]) for r in active] == [(bystander.id, "mute")]
    viewer_chat = await server.connect(live, viewer)
    await viewer_chat.say("free again")
    assert (await viewer_chat.next_of("message"))["text"] == "free again"


def test_who_may_act_on_whom() -> None:
    room = Room(1)
    room.owner_id, room.moderators = 10, {20, 21}
    actors = {"admin": (1, "admin"), "owner": (10, "creator"), "mod": (20, "viewer")}
    targets = {"admin": (2, "admin", False), "owner": (10, "creator", False),
               "mod": (21, "viewer", True), "viewer": (30, "creator", False),
               "gone": (None, None, False)}  # fmt: skip
    reached = {(a, action, t) for a, (aid, role) in actors.items()
               for t, (tid, trole, tmod) in targets.items() for action in ("delete", "ban")
               if (t, action) != ("gone", "ban")  # the hub answers not_found first
               and room.may_act(aid, role, action, target_id=tid, target_role=trole,
                                target_is_moderator=tmod)}  # fmt: skip
    assert reached == {
        ("admin", "delete", "owner"), ("admin", "delete", "mod"), ("admin", "ban", "mod"),
        ("admin", "delete", "viewer"), ("admin", "ban", "viewer"), ("admin", "delete", "gone"),
        ("owner", "delete", "owner"), ("owner", "delete", "mod"), ("owner", "ban", "mod"),
        ("owner", "delete", "viewer"), ("owner", "ban", "viewer"), ("owner", "delete", "gone"),
        ("mod", "delete", "viewer"), ("mod", "ban", "viewer"), ("mod", "delete", "gone"),
    }  # fmt: skip
    # Your own messages, yes; yourself, no.
    assert room.may_act(20, "viewer", "delete", target_id=20, target_role="viewer",
                        target_is_moderator=True)  # fmt: skip
    assert not room.may_act(1, "admin", "mute", target_id=1, target_role="admin",
                            target_is_moderator=False)  # fmt: skip
