"""``/api/videos``: the public reads of recordings, against a real PostgreSQL; rows are made
the way the packager makes them (``db.videos.create_recorded``, ``db.live_media``)."""

from __future__ import annotations

from typing import Any

from db import live_media, videos
from tests.web.api_helpers import Api, MakeApi, User

BASE = "http://localhost:8080"  # Settings().http_base_url()


async def record(
    api: Api, owner: User, title: str, *, live: bool = True, thumbnail: str | None = None
) -> dict[str, Any]:
    """A finished recording of a new live of ``owner`` (``live=False``: a video without one)."""
    live_id = None
    prefix = f"hls/x/{title.replace(' ', '_')}"
    if live:
        live_id = (await api.create_live(owner, title=title))["id"]
        prefix = f"hls/{live_id}/1700000000"
    video_id = await videos.create_recorded(
        api.pool, user_id=owner.id, title=title, hls_master_url=f"/{prefix}/vod.m3u8",
        hls_key=f"{prefix}/vod.m3u8", duration=12.5, file_size=1000, thumbnail_url=thumbnail,
    )  # fmt: skip
    if live_id is not None:
        recording = await live_media.create_recording(
            api.pool, live_id=live_id, node="n1", prefix=prefix, poster_key=None
        )
        await live_media.finish_recording(api.pool, recording, video_id)
    return {"id": video_id, "live_id": live_id, "prefix": prefix}


async def test_a_recording_reads_back(api: Api) -> None:
    owner = await api.make_user("creator")
    made = await record(api, owner, "first show", thumbnail="/hls/7/1700000000/poster.jpg")
    r = await api.client.get(f"/api/videos/{made['id']}")
    assert r.status_code == 200, r.text
    body = r.json()
    created = body.pop("created_at")
    assert created.endswith(("Z", "+00:00"))
    assert body == {
        "id": made["id"], "title": "first show", "description": None, "user_id": owner.id,
        "username": owner.username, "live_id": made["live_id"],
        "thumbnail_url": f"{BASE}/hls/7/1700000000/poster.jpg",
        "playback_url": f"{BASE}/{made['prefix']}/vod.m3u8", "duration": 12.5,
    }  # fmt: skip
    # A video that is no live's recording has no live_id.
    upload = await record(api, owner, "no live", live=False)
    assert (await api.client.get(f"/api/videos/{upload['id']}")).json()["live_id"] is None


async def test_the_list_is_newest_first_with_cursors_and_a_user_filter(api: Api) -> None:
    alice, bob = await api.make_user("creator"), await api.make_user("creator")
    made = [await record(api, owner, f"show {n}")
            for n, owner in enumerate([alice, bob, alice, alice, bob])]  # fmt: skip
    ids = [m["id"] for m in reversed(made)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await api.client.get("/api/videos", params=params)
        assert r.status_code == 200, r.text
        seen += [item["id"] for item in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    r = await api.client.get("/api/videos", params={"user": alice.username.upper()})
    assert [item["username"] for item in r.json()["items"]] == [alice.username] * 3
    for bad in ({"limit": 101}, {"limit": 0}, {"cursor": "nope"}):
        assert (await api.client.get("/api/videos", params=bad)).status_code == 422


async def test_only_ready_videos_of_active_accounts(api: Api) -> None:
    owner = await api.make_user("creator")
    ready = await record(api, owner, "ready")
    processing = await record(api, owner, "processing")
    await api.pool.execute("UPDATE videos SET status = 'processing' WHERE id = $1",
                           processing["id"])  # fmt: skip
    r = await api.client.get("/api/videos")
    assert [item["id"] for item in r.json()["items"]] == [ready["id"]]
    assert (await api.client.get(f"/api/videos/{processing['id']}")).status_code == 404
    for missing in ("999999", "0", str(2**63)):
        r = await api.client.get(f"/api/videos/{missing}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    admin = await api.make_user("admin")
    r = await api.client.patch(f"/api/admin/users/{owner.id}", json={"is_active": False},
                               headers=admin.auth)  # fmt: skip
    assert r.status_code == 200
    assert (await api.client.get("/api/videos")).json()["items"] == []
    assert (await api.client.get(f"/api/videos/{ready['id']}")).status_code == 404


async def test_playback_urls_follow_the_cdn_setting(make_api: MakeApi) -> None:
    api = await make_api(cdn_base_url="https://cdn.example.com")
    owner = await api.make_user("creator")
    made = await record(api, owner, "on the cdn", thumbnail="https://img.example.com/p.jpg")
    body = (await api.client.get(f"/api/videos/{made['id']}")).json()
    assert body["playback_url"] == f"https://cdn.example.com/{made['prefix']}/vod.m3u8"
    assert body["thumbnail_url"] == "https://img.example.com/p.jpg"  # absolute: kept
    # The live's own playback URL comes from the same base.
    live = (await api.client.get(f"/api/lives/{made['live_id']}")).json()
    assert live["playback_url"].startswith("https://cdn.example.com/hls/")
