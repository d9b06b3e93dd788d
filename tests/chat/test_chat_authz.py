"""Who may call the chat endpoints under /api/lives/{id}: the authorization matrix of chat
(tests/web/test_api_authz.py covers the other live endpoints)."""

from __future__ import annotations

from chat_helpers import ChatServer

from web.app import ENDPOINTS

CHAT_PATHS = {
    ("POST", "/api/lives/{live_id:int}/chat/ticket"),
    ("POST", "/api/lives/{live_id:int}/heartbeat"),
    ("PUT", "/api/lives/{live_id:int}/chat/moderators/{user_id:int}"),
    ("DELETE", "/api/lives/{live_id:int}/chat/moderators/{user_id:int}"),
    ("GET", "/api/lives/{live_id:int}/chat/moderation"),
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
