"""``/api/videos``: reads, search, edits, likes, views and progress events, against a real
PostgreSQL; rows are made the way the packager makes them (``db.videos.create_recorded``,
``db.live_media``) and the way a finished transcode leaves them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from db import live_media, videos
from tests.app_helpers import served_app
from tests.helpers import free_port
from tests.web.api_helpers import Api, MakeApi, User


@contextlib.asynccontextmanager
async def asyncpg_pool(url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of its own: the worker's side of NOTIFY, as another process would send it."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


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
        "status": "ready", "visibility": "public", "processing_progress": 100,
        "processing_stage": None, "eta_seconds": None, "error_message": None, "views": 0,
        "likes": 0, "liked": None, "file_size": 1000, "storyboard_url": None,
        "qualities": [], "price": None, "can_edit": False,
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


async def uploaded(api: Api, owner: User, title: str, *, status: str = "ready",
                   visibility: str = "public", description: str | None = None) -> int:  # fmt: skip
    """A video as an upload and a finished transcode leave it."""
    video_id = await videos.create_upload(
        api.pool, user_id=owner.id, title=title, description=description,
        visibility=visibility, original_format="mp4",
    )  # fmt: skip
    if status == "ready":
        prefix = f"hls/vod/{video_id}/run1"
        await api.pool.execute(
            """UPDATE videos SET status = 'ready', hls_key = $2, hls_master_url = $3,
                      output_prefix = $4, storyboard_key = $5, processing_progress = 100,
                      duration = 60 WHERE id = $1""",
            video_id, f"{prefix}/master.m3u8", f"/{prefix}/master.m3u8", prefix,
            f"{prefix}/storyboard.vtt",
        )  # fmt: skip
        await api.pool.execute(
            """INSERT INTO video_qualities (video_id, name, width, height, bitrate, codecs,
                                            playlist_url)
               VALUES ($1, '720p', 1280, 720, 3300000, 'avc1.64001f,mp4a.40.2', 'x')""",
            video_id,
        )
    elif status != "uploading":
        await api.pool.execute(
            "UPDATE videos SET status = $2, error_message = $3 WHERE id = $1", video_id, status,
            "The file is not a video." if status == "failed" else None,
        )  # fmt: skip
    return video_id


async def ids(api: Api, path: str = "/api/videos", caller: User | None = None,
              **params: Any) -> list[int]:  # fmt: skip
    r = await api.client.get(path, params=params, headers=caller.auth if caller else None)
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


async def test_search_in_english_and_chinese(api: Api) -> None:
    owner = await api.make_user("creator")
    zh = await uploaded(api, owner, "週五直播精華")
    zh2 = await uploaded(api, owner, "週末烹飪直播")
    en = await uploaded(api, owner, "Speedrun highlights", description="any% world record")
    cooking = await uploaded(api, owner, "Cooking pasta at home")
    assert await ids(api, q="直播") == [zh2, zh]  # the substring, inside unsplit Chinese
    assert await ids(api, q="直播精華") == [zh]
    assert await ids(api, q="週五直撥精華") == [zh]  # one wrong character: most pairs match
    assert await ids(api, q="highlights") == [en]
    assert await ids(api, q="HIGHLIGHT") == [en]  # case, and a prefix of the word
    assert await ids(api, q="world record") == [en]  # the description
    assert await ids(api, q="pasta cooking") == [cooking]  # words in any order
    assert await ids(api, q="100%_") == []  # the user's wildcards are literal
    assert await ids(api, q="nothing like this") == []
    trigrams = await videos.has_trigrams(api.pool)
    if trigrams:  # pg_trgm is in the embedded server: typos of Latin words
        assert await ids(api, q="speedrum highlihgts") == [en]


async def test_private_and_unlisted_never_leak(api: Api) -> None:
    owner, other = await api.make_user("creator"), await api.make_user("viewer")
    admin = await api.make_user("admin")
    public = await uploaded(api, owner, "secret plans public")
    unlisted = await uploaded(api, owner, "secret plans unlisted", visibility="unlisted")
    private = await uploaded(api, owner, "secret plans private", visibility="private")
    failed = await uploaded(api, owner, "secret plans failed", status="failed")
    for who in (None, other):
        assert await ids(api, caller=who) == [public]
        assert await ids(api, caller=who, q="secret plans") == [public]
        assert await ids(api, f"/api/users/{owner.username}/videos", caller=who) == [public]
        assert await ids(api, f"/api/users/{owner.username}/videos", caller=who,
                         visibility="private", status="failed") == [public]  # fmt: skip
        assert (await api.client.get(f"/api/videos/{unlisted}")).status_code == 200  # by link
        for hidden in (private, failed):
            r = await api.client.get(f"/api/videos/{hidden}",
                                     headers=who.auth if who else None)  # fmt: skip
            assert r.status_code == 404, hidden
    mine = await ids(api, f"/api/users/{owner.username}/videos", caller=owner)
    assert mine == [failed, private, unlisted, public]
    assert await ids(api, caller=owner, user=owner.username, visibility="private") == [private]
    assert await ids(api, caller=owner, user=owner.username, status="failed") == [failed]
    assert await ids(api, caller=admin, user=owner.username) == mine
    body = (await api.client.get(f"/api/videos/{failed}", headers=owner.auth)).json()
    assert body["status"] == "failed" and body["error_message"] == "The file is not a video."
    assert body["playback_url"] is None and body["can_edit"] is True


async def test_ready_video_fields(api: Api) -> None:
    owner = await api.make_user("creator")
    video_id = await uploaded(api, owner, "a ready upload")
    body = (await api.client.get(f"/api/videos/{video_id}")).json()
    prefix = f"{BASE}/hls/vod/{video_id}/run1"
    assert body["playback_url"] == f"{prefix}/master.m3u8"
    assert body["storyboard_url"] == f"{prefix}/storyboard.vtt"
    assert body["qualities"] == [{"name": "720p", "width": 1280, "height": 720,
                                  "bitrate": 3300000}]  # fmt: skip


async def test_edit_and_delete_by_the_owner_only(api: Api) -> None:
    owner, other = await api.make_user("creator"), await api.make_user("creator")
    video_id = await uploaded(api, owner, "before", description="old")
    r = await api.client.patch(f"/api/videos/{video_id}", json={"title": "hijacked"},
                               headers=other.auth)  # fmt: skip
    assert r.status_code == 404
    r = await api.client.patch(f"/api/videos/{video_id}",
                               json={"title": "after", "visibility": "private"},
                               headers=owner.auth)  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["description"], r.json()["visibility"]) == (
        "after", "old", "private")  # fmt: skip
    r = await api.client.patch(f"/api/videos/{video_id}", json={"description": None},
                               headers=owner.auth)  # fmt: skip
    assert r.json()["description"] is None and r.json()["title"] == "after"
    for bad in ({"title": ""}, {"visibility": "everyone"}, {"title": "x" * 101}, {"views": 9}):
        r = await api.client.patch(f"/api/videos/{video_id}", json=bad, headers=owner.auth)
        assert r.status_code == 422, bad
    assert (await api.client.get(f"/api/videos/{video_id}")).status_code == 404  # private now

    assert (await api.client.delete(f"/api/videos/{video_id}",
                                    headers=other.auth)).status_code == 404  # fmt: skip
    r = await api.client.delete(f"/api/videos/{video_id}", headers=owner.auth)
    assert r.status_code == 204
    assert await api.pool.fetchval("SELECT count(*) FROM videos WHERE id = $1", video_id) == 0
    job = await api.pool.fetchrow("SELECT entrypoint, payload FROM pgqueuer")
    payload = json.loads(job["payload"])
    assert job["entrypoint"] == "vod_purge"
    assert f"hls/vod/{video_id}" in payload["prefixes"]
    assert (await api.client.delete(f"/api/videos/{video_id}",
                                    headers=owner.auth)).status_code == 404  # fmt: skip


async def test_likes_once_per_user_and_views_once_per_window(api: Api) -> None:
    owner, fan = await api.make_user("creator"), await api.make_user("viewer")
    video_id = await uploaded(api, owner, "likeable")
    url = f"/api/videos/{video_id}"
    assert (await api.client.post(f"{url}/like")).status_code == 401
    for _ in range(3):
        r = await api.client.post(f"{url}/like", headers=fan.auth)
        assert r.json() == {"likes": 1, "liked": True}
    assert (await api.client.get(url, headers=fan.auth)).json()["liked"] is True
    r = await api.client.post(f"{url}/like", headers=owner.auth)
    assert r.json()["likes"] == 2
    r = await api.client.delete(f"{url}/like", headers=fan.auth)
    assert r.json() == {"likes": 1, "liked": False}
    r = await api.client.delete(f"{url}/like", headers=fan.auth)
    assert r.json()["likes"] == 1

    r = await api.client.post(f"{url}/views", json={})
    first = r.json()
    assert first["views"] == 1 and len(first["viewer_id"]) >= 16
    r = await api.client.post(f"{url}/views", json={"viewer_id": first["viewer_id"]})
    assert r.json()["views"] == 1  # the same anonymous viewer, inside the window
    assert (await api.client.post(f"{url}/views", json={})).json()["views"] == 2  # another
    for _ in range(2):
        r = await api.client.post(f"{url}/views", json={}, headers=fan.auth)
        assert r.json() == {"views": 3, "viewer_id": None}
    await api.pool.execute("UPDATE video_views SET counted_at = now() - interval '7 hours'")
    r = await api.client.post(f"{url}/views", json={}, headers=fan.auth)
    assert r.json()["views"] == 4  # the window (6 h) has passed
    for bad in ({"viewer_id": "short"}, {"viewer_id": "x" * 16 + "/"}):
        assert (await api.client.post(f"{url}/views", json=bad)).status_code == 422
    private = await uploaded(api, owner, "hidden", visibility="private")
    assert (await api.client.post(f"/api/videos/{private}/views", json={})).status_code == 404
    assert (await api.client.post(f"/api/videos/{private}/like",
                                  headers=fan.auth)).status_code == 404  # fmt: skip
    order = await ids(api, sort="popular")
    assert order[0] == video_id


async def test_progress_events_reach_the_owner(api: Api, database_url: str) -> None:
    """The event stream over real HTTP (uvicorn: the test client buffers whole responses), fed
    by NOTIFY from a pool of its own, as a worker process sends it."""
    owner, other = await api.make_user("creator"), await api.make_user("creator")
    video_id = await uploaded(api, owner, "in progress", status="uploaded")
    await api.pool.execute("UPDATE videos SET status = 'processing', run_token = 'r1' "
                           "WHERE id = $1", video_id)  # fmt: skip
    url = f"/api/videos/{video_id}/events"
    assert (await api.client.get(url, headers=other.auth)).status_code == 404
    assert (await api.client.get(url)).status_code == 401
    settings = dataclasses.replace(api.app.state.settings, http_port=free_port())
    async with (
        served_app(settings, database_url) as (_app, base),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", url, headers=owner.auth) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = aiter_events(r)
        assert (await anext(events))["status"] == "processing"
        async with asyncpg_pool(database_url) as pool:
            await videos.set_progress(pool, video_id, "r1", percent=42,
                                      stage="transcoding", eta_seconds=7)  # fmt: skip
            event = await anext(events)
            assert (event["percent"], event["stage"], event["eta_seconds"]) == (
                42, "transcoding", 7)  # fmt: skip
            await videos.fail_run(pool, video_id, "r1", "The file is not a video.")
            event = await anext(events)
            assert event["status"] == "failed"
            assert event["error_message"] == "The file is not a video."
        with pytest.raises(StopAsyncIteration):
            await anext(events)  # the stream ends after a terminal state


async def aiter_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    data = None
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            yield data
            data = None
