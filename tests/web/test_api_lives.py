"""Lives through HTTP: create, list (filters, cursors), read, update, delete, keys, stop."""

from __future__ import annotations

import asyncio

import pytest

from db import live_media, lives
from tests.web.api_helpers import Api, MakeApi


async def test_create_read_update_delete(api: Api) -> None:
    creator = await api.make_user("creator")
    c = api.client
    live = await api.create_live(creator, title="  Friday stream ", description="chill")
    assert live["status"] == "offline" and live["title"] == "  Friday stream "
    assert live["username"] == creator.username and live["user_id"] == creator.id
    assert live["playback_url"] == f"http://localhost:8080/hls/{live['id']}/master.m3u8"
    assert live["thumbnail_url"] is None
    assert "stream_key" not in live

    got = (await c.get(f"/api/lives/{live['id']}")).json()
    assert got == live

    r = await c.patch(
        f"/api/lives/{live['id']}",
        headers=creator.auth,
        json={"scheduled_start": "2030-01-02T03:04:05+02:00", "chat_enabled": False},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "scheduled"
    assert r.json()["scheduled_start"] == "2030-01-02T01:04:05Z"
    assert r.json()["chat_enabled"] is False
    # The cached copy was dropped: readers see the change at once.
    assert (await c.get(f"/api/lives/{live['id']}")).json()["status"] == "scheduled"
    r = await c.patch(
        f"/api/lives/{live['id']}",
        headers=creator.auth,
        json={"scheduled_start": None, "description": None},
    )
    assert (r.json()["status"], r.json()["description"]) == ("offline", None)
    r = await c.patch(f"/api/lives/{live['id']}", headers=creator.auth, json={"title": None})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "title"

    assert (await c.delete(f"/api/lives/{live['id']}", headers=creator.auth)).status_code == 204
    assert (await c.get(f"/api/lives/{live['id']}")).status_code == 404


async def test_create_validation_and_roles(api: Api) -> None:
    creator = await api.make_user("creator")
    viewer = await api.make_user("viewer")
    c = api.client
    r = await c.post("/api/lives", json={"title": "x"}, headers=viewer.auth)
    assert r.status_code == 403
    r = await c.post("/api/lives", json={"title": "x"})
    assert r.status_code == 401
    r = await c.post(
        "/api/lives",
        headers=creator.auth,
        json={
            "title": "",
            "description": "d" * 5001,
            "scheduled_start": "2030-01-01T00:00:00",
            "color": "red",
        },
    )
    assert r.status_code == 422
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert fields == ["title", "description", "scheduled_start", "color"]
    live = await api.create_live(creator, scheduled_start="2031-05-05T10:00:00Z")
    assert live["status"] == "scheduled"


async def test_list_filters_and_cursor_pagination(make_api: MakeApi) -> None:
    api = await make_api(api_cache_ttl=0.001)
    alice = await api.make_user("creator")
    bob = await api.make_user("creator")
    c = api.client
    ids = []
    for n in range(7):
        owner = alice if n % 2 == 0 else bob
        ids.append(
            (
                await api.create_live(
                    owner, title=f"live {n}", scheduled_start="2030-01-01T00:00:00Z"
                )
            )["id"]
        )
    offline = await api.create_live(alice, title="not listed")
    await lives.mark_live(api.pool, ids[0])
    await lives.mark_live(api.pool, ids[1])
    await lives.mark_ended(api.pool, ids[1])

    r = await c.get("/api/lives", params={"status": "live"})
    assert [i["id"] for i in r.json()["items"]] == [ids[0]]
    # No poster written yet: no URL (a made-up one answered 404 in every browser).
    assert r.json()["items"][0]["thumbnail_url"] is None
    await live_media.set_thumbnail_url(api.pool, ids[0], f"/hls/{ids[0]}/b1/poster.jpg")
    r = await c.get("/api/lives", params={"status": "live"})
    assert r.json()["items"][0]["thumbnail_url"].endswith(f"/hls/{ids[0]}/b1/poster.jpg")
    r = await c.get("/api/lives", params={"status": "ended"})
    assert [i["id"] for i in r.json()["items"]] == [ids[1]]
    r = await c.get("/api/lives", params={"user": alice.username.upper()})
    assert [i["id"] for i in r.json()["items"]] == [ids[6], ids[4], ids[2], ids[0]]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await c.get("/api/lives", params=params)).json()
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True) and offline["id"] not in seen
    assert pages == 3

    for bad in (
        {"limit": "101"},
        {"limit": "0"},
        {"cursor": "garbage"},
        {"status": "offline"},
        {"cursor": "aWQ6LTE"},
    ):  # "id:-1"
        r = await c.get("/api/lives", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["error"]["details"][0]["field"] in bad
    assert (await c.get("/api/lives", params={"user": "nobody"})).json()["items"] == []


async def test_list_is_cached_and_read_from_the_read_pool(make_api: MakeApi) -> None:
    api = await make_api(api_cache_ttl=60)
    creator = await api.make_user("creator")
    live = await api.create_live(creator, title="first")
    await lives.mark_live(api.pool, live["id"])
    first = (await api.client.get("/api/lives?status=live")).json()
    second_live = await api.create_live(creator, title="second")
    await lives.mark_live(api.pool, second_live["id"])
    # Within the TTL the cached page is served (a viewer load does not reach the lives table).
    assert (await api.client.get("/api/lives?status=live")).json() == first
    cached = await api.pool.fetchval(
        "SELECT count(*) FROM cache_data WHERE key LIKE 'api:lives:live:%'"
    )
    assert cached == 1


async def test_stream_key_rotate_and_ingest(make_api: MakeApi) -> None:
    api = await make_api(public_url="https://live.example.com", rtmp_app="live")
    creator = await api.make_user("creator")
    live = await api.create_live(creator)
    c = api.client
    key = (await c.get(f"/api/lives/{live['id']}/stream-key", headers=creator.auth)).json()
    assert len(key["stream_key"]) >= 22  # >= 128 bits, URL-safe
    assert key["stream_key"] not in (await c.get(f"/api/lives/{live['id']}")).text
    assert key["stream_key"] not in (await c.get("/api/lives")).text

    ingest = (await c.get(f"/api/lives/{live['id']}/ingest", headers=creator.auth)).json()
    assert ingest == {
        "server": "rtmp://live.example.com:1935/live",
        "stream_key": key["stream_key"],
        "rtmps_server": None,
        "whip_url": "https://live.example.com/whip",
    }
    off = await make_api(public_url="https://live.example.com", whip_max_publishers=0)
    owner = await off.make_user("creator")
    other = await off.create_live(owner)
    r = await off.client.get(f"/api/lives/{other['id']}/ingest", headers=owner.auth)
    assert r.json()["whip_url"] is None

    target = await lives.get_publish_target(api.pool, key["stream_key"])
    assert target is not None and target["id"] == live["id"]
    r = await c.post(f"/api/lives/{live['id']}/stream-key/rotate", headers=creator.auth)
    new = r.json()["stream_key"]
    assert new != key["stream_key"] and len(new) >= 22
    # The old key no longer names any live: the ingest gate refuses new publishes with it.
    assert await lives.get_publish_target(api.pool, key["stream_key"]) is None
    assert (await lives.get_publish_target(api.pool, new))["id"] == live["id"]  # type: ignore[index]
    assert (await c.get(f"/api/lives/{live['id']}/stream-key",
                        headers=creator.auth)).json() == {"stream_key": new}  # fmt: skip


async def test_stop_cuts_the_publish_and_marks_ended(api: Api) -> None:
    creator = await api.make_user("creator")
    admin = await api.make_user("admin")
    live = await api.create_live(creator)
    await lives.mark_live(api.pool, live["id"])
    c = api.client
    listener = await api.pool.acquire()
    notes: list[str] = []

    def on_note(*args: object) -> None:
        notes.append(str(args[3]))

    await listener.add_listener("live_control", on_note)
    try:
        r = await c.post(f"/api/lives/{live['id']}/stop", headers=creator.auth)
        assert r.status_code == 200, r.text
        assert r.json()["disconnected"] is True and r.json()["live"]["status"] == "ended"
        assert api.stopped == [(live["id"], "stopped by its owner")]
        await lives.mark_live(api.pool, live["id"])
        r = await c.post(f"/api/lives/{live['id']}/stop", headers=admin.auth)
        assert api.stopped[-1] == (live["id"], "stopped by an admin")
        await listener.execute("SELECT 1")  # let the notifications arrive
        assert len(notes) == 2 and '"action" : "stop"' in notes[0]
    finally:
        await listener.remove_listener("live_control", on_note)
        await api.pool.release(listener)
    # On air, a live cannot be deleted.
    await lives.mark_live(api.pool, live["id"])
    r = await c.delete(f"/api/lives/{live['id']}", headers=creator.auth)
    assert r.status_code == 409


async def test_my_lives_lists_every_status(api: Api) -> None:
    creator = await api.make_user("creator")
    other = await api.make_user("creator")
    mine = [await api.create_live(creator, title=f"t{n}") for n in range(3)]
    await api.create_live(other)
    r = await api.client.get("/api/users/me/lives", params={"limit": 2}, headers=creator.auth)
    page = r.json()
    assert [i["id"] for i in page["items"]] == [mine[2]["id"], mine[1]["id"]]
    r = await api.client.get("/api/users/me/lives", headers=creator.auth,
                             params={"cursor": page["next_cursor"]})  # fmt: skip
    assert [i["id"] for i in r.json()["items"]] == [mine[0]["id"]]
    assert r.json()["next_cursor"] is None


async def test_lives_of_deactivated_owners_are_hidden(api: Api) -> None:
    creator = await api.make_user("creator")
    admin = await api.make_user("admin")
    live = await api.create_live(creator, scheduled_start="2030-01-01T00:00:00Z")
    await lives.mark_live(api.pool, live["id"])
    r = await api.client.patch(f"/api/admin/users/{creator.id}", json={"is_active": False},
                               headers=admin.auth)  # fmt: skip
    assert r.status_code == 200 and r.json()["is_active"] is False
    # Its publish was stopped; the live is gone from public reads.
    assert api.stopped == [(live["id"], "account deactivated")]
    assert (await api.client.get(f"/api/lives/{live['id']}")).status_code == 404
    assert (await api.client.get("/api/lives")).json()["items"] == []


async def test_demotion_to_viewer_stops_publishes_like_deactivation(api: Api) -> None:
    creator = await api.make_user("creator")
    admin = await api.make_user("admin")
    on_air, idle = await api.create_live(creator), await api.create_live(creator)
    await lives.mark_live(api.pool, on_air["id"])
    assert (await api.client.get(f"/api/lives/{on_air['id']}")).json()["status"] == "live"
    listener = await api.pool.acquire()
    notes: list[str] = []

    def on_note(*args: object) -> None:
        notes.append(str(args[3]))

    await listener.add_listener("live_control", on_note)
    try:
        # A change that keeps a role that may stream cuts nothing.
        for role in ("admin", "creator"):
            r = await api.client.patch(f"/api/admin/users/{creator.id}", json={"role": role},
                                       headers=admin.auth)  # fmt: skip
            assert r.status_code == 200 and r.json()["role"] == role
        assert api.stopped == []
        r = await api.client.patch(f"/api/admin/users/{creator.id}", json={"role": "viewer"},
                                   headers=admin.auth)  # fmt: skip
        assert r.status_code == 200 and r.json()["role"] == "viewer"
        await listener.execute("SELECT 1")  # let the notifications arrive
    finally:
        await listener.remove_listener("live_control", on_note)
        await api.pool.release(listener)
    # Cut here and, through NOTIFY live_control, on whichever process holds the publisher.
    assert api.stopped == [(on_air["id"], "account may no longer stream")]
    assert len(notes) == 1 and f'"live_id" : {on_air["id"]}' in notes[0]
    assert (await api.client.get(f"/api/lives/{on_air['id']}")).json()["status"] == "ended"
    assert (await api.client.get(f"/api/lives/{idle['id']}")).json()["status"] == "offline"
    # Unlike deactivation, the account stays signed in (as a viewer).
    r = await api.client.get("/api/users/me", headers=creator.auth)
    assert r.status_code == 200 and r.json()["role"] == "viewer"


@pytest.mark.parametrize("pool_max", [1, 2, 3])
async def test_many_concurrent_cache_misses_do_not_starve_the_pool(
    make_api: MakeApi, pool_max: int
) -> None:
    # Each miss holds a connection for the cache's lock while the query needs another one.
    api = await make_api(db_pool_max=pool_max, db_pool_min=1)
    creator = await api.make_user("creator")
    ids = [(await api.create_live(creator, title=f"t{n}"))["id"] for n in range(3 * pool_max)]
    paths = [f"/api/lives/{i}" for i in ids] + [f"/api/lives?limit={n}" for n in range(1, 7)]
    replies = await asyncio.wait_for(asyncio.gather(*map(api.client.get, paths)), 30)
    assert [r.status_code for r in replies] == [200] * len(paths)
