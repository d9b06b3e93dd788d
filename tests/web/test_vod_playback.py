"""Private videos on /hls: the signed playback cookie, against the app with /hls mounted as
``streamd serve`` mounts it (``web.hls`` + ``web.playback.PlaybackGuard``) and a real
PostgreSQL; files on local disk as a transcode leaves them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from db import videos
from packager.storage.base import known_object_headers
from tests.app_helpers import web_app
from tests.web.api_helpers import Api
from web import playback
from web.hls import hls_routes
from web.playback import PlaybackGuard, shared_domain


@contextlib.asynccontextmanager
async def app_with_hls(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(jwt_secret="s" * 40, data_dir=tmp_path)
    routes = hls_routes(settings.media_dir, known_object_headers, None, PlaybackGuard())
    async with (
        web_app(settings, database_url, extra_routes=routes) as app,
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield Api(app, client, app.state.db.primary)


async def ready_video(api: Api, media: Path, user_id: int, visibility: str) -> int:
    video_id = await videos.create_upload(
        api.pool, user_id=user_id, title="film", description=None, visibility=visibility,
        original_format="mp4",
    )  # fmt: skip
    prefix = f"hls/vod/{video_id}/run1"
    await api.pool.execute(
        """UPDATE videos SET status = 'ready', hls_key = $2, hls_master_url = $3,
                  output_prefix = $4, processing_progress = 100 WHERE id = $1""",
        video_id, f"{prefix}/master.m3u8", f"/{prefix}/master.m3u8", prefix,
    )  # fmt: skip
    (media / prefix / "360p").mkdir(parents=True)
    (media / prefix / "master.m3u8").write_text("#EXTM3U\n")
    (media / prefix / "360p" / "seg_1.m4s").write_bytes(b"\x00" * 100)
    return video_id


async def test_private_files_need_the_owner_s_cookie(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(playback, "ACCESS_TTL_S", 0.0)  # every request reads the row
    async with app_with_hls(database_url, tmp_path) as api:
        owner, other = await api.make_user("creator"), await api.make_user("viewer")
        media = tmp_path / "media"
        public = await ready_video(api, media, owner.id, "public")
        private = await ready_video(api, media, owner.id, "private")

        r = await api.client.get(f"/hls/vod/{public}/run1/master.m3u8")
        assert r.status_code == 200 and "private" not in r.headers["cache-control"]
        r = await api.client.post(f"/api/videos/{public}/playback", headers=other.auth)
        assert r.json() == {"private": False, "expires_at": None, "price": None}
        assert "set-cookie" not in r.headers

        for path in ("master.m3u8", "360p/seg_1.m4s"):
            r = await api.client.get(f"/hls/vod/{private}/run1/{path}")
            assert r.status_code == 403, path
            assert r.json()["error"]["code"] == "playback_forbidden"
        r = await api.client.post(f"/api/videos/{private}/playback", headers=other.auth)
        assert r.status_code == 404  # not even its existence
        assert (await api.client.post(f"/api/videos/{private}/playback")).status_code == 401

        r = await api.client.post(f"/api/videos/{private}/playback", headers=owner.auth)
        assert r.status_code == 200 and r.json()["private"] is True
        cookie = r.headers["set-cookie"]
        assert f"Path=/hls/vod/{private}/" in cookie
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        name = playback.cookie_name("video", private)
        token = api.client.cookies[name]
        for path in ("master.m3u8", "360p/seg_1.m4s"):
            r = await api.client.get(f"/hls/vod/{private}/run1/{path}")
            assert r.status_code == 200, path
            assert r.headers["cache-control"] == "private, max-age=60"
        api.client.cookies.clear()

        # The cookie of one video opens no other; forged and expired ones open nothing.
        other_private = await ready_video(api, media, owner.id, "private")
        grant = playback.Grant(owner.id, True)
        expired = playback.sign(api.app.state.settings, "video", private, grant, 1_000_000)
        cases = ((token, other_private), (token[:-2] + "AA", private), (expired, private),
                 ("garbage", private))  # fmt: skip
        for cookie_value, video in cases:
            # Under the other video's name: the browser would never send it there.
            api.client.cookies.set(playback.cookie_name("video", video), cookie_value)
            r = await api.client.get(f"/hls/vod/{video}/run1/master.m3u8")
            assert r.status_code == 403, cookie_value
            api.client.cookies.clear()

        # Made public again: served to anyone (after the visibility cache's few seconds).
        r = await api.client.patch(f"/api/videos/{private}", json={"visibility": "public"},
                                   headers=owner.auth)  # fmt: skip
        assert r.status_code == 200
        assert (await api.client.get(f"/hls/vod/{private}/run1/master.m3u8")).status_code == 200


def test_cloudfront_cookies_need_a_shared_parent_domain() -> None:
    assert shared_domain("app.example.com", "https://cdn.example.com") == "example.com"
    assert shared_domain("example.com", "https://media.example.com") == "example.com"
    assert shared_domain("app.example.com", "https://d111.cloudfront.net") is None
    assert shared_domain("localhost", "https://cdn.example.com") is None
    assert shared_domain(None, "https://cdn.example.com") is None
    assert shared_domain("app.example.com", None) is None
