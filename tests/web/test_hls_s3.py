"""What viewers and API clients see with S3 storage: /hls reading through the storage (no
bucket in any URL), and API playback URLs on the CDN when one is configured."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from config.settings import Settings
from db import live_media, lives, users
from packager.storage.base import (
    CACHE_IMMUTABLE,
    CACHE_LIVE_PLAYLIST,
    object_headers,
    put_object,
)
from packager.storage.s3 import S3Storage
from streamd.media import build_storage
from streamd.resources import database_pools
from streamd.server import hls_routes_for
from tests.app_helpers import web_app
from tests.s3_fixtures import FaultProxy, make_storage
from web.errors import EXCEPTION_HANDLERS

PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:7\n" + b"#EXTINF:2.000,\nseg_1.m4s\n" * 40


@pytest.fixture
async def hls(proxy: FaultProxy, bucket: str, tmp_path: object, database_url: str) -> AsyncIterator[
    tuple[httpx.AsyncClient, S3Storage]
]:  # fmt: skip
    storage = make_storage(proxy.url, bucket, attempts=2)
    settings = Settings(storage="s3", s3_bucket=bucket, data_dir=tmp_path)  # type: ignore[arg-type]
    app = Starlette(
        routes=hls_routes_for(settings, storage),  # as `streamd serve` mounts /hls
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    # The playback guard asks PostgreSQL whether the live is sold (none is).
    async with (
        database_pools(settings, database_url) as db,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        app.state.db, app.state.settings = db, settings
        yield client, storage
    storage.close()


async def test_hls_serves_objects_through_the_storage(
    hls: tuple[httpx.AsyncClient, S3Storage],
) -> None:
    client, storage = hls
    await put_object(storage, "hls/5/b1/source/live.m3u8", PLAYLIST)
    await put_object(storage, "hls/5/b1/source/seg_1.m4s", b"\x00segment")
    r = await client.get("/hls/5/b1/source/live.m3u8", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content == PLAYLIST  # httpx undoes the gzip
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["cache-control"] == CACHE_LIVE_PLAYLIST
    assert r.headers["access-control-allow-origin"] == "*"
    assert int(r.headers["content-length"]) == len(gzip.compress(PLAYLIST, compresslevel=5))
    r = await client.get("/hls/5/b1/source/seg_1.m4s")
    assert (r.status_code, r.content) == (200, b"\x00segment")
    assert r.headers["content-type"] == "video/iso.segment"
    assert r.headers["cache-control"] == CACHE_IMMUTABLE
    head = await client.head("/hls/5/b1/source/seg_1.m4s")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "8"


@pytest.mark.parametrize(
    "path",
    ["5/b1/source/missing.m4s", "5/%2E%2E/%2E%2E/secret.m3u8", "5/.hidden.m3u8", "5/b1/x.exe"],
)
async def test_hls_refuses_what_is_not_there_or_not_served(
    hls: tuple[httpx.AsyncClient, S3Storage], path: str
) -> None:
    client, _ = hls
    r = await client.get(f"/hls/{path}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert r.headers["access-control-allow-origin"] == "*"


async def test_hls_answers_503_when_the_bucket_is_down(
    hls: tuple[httpx.AsyncClient, S3Storage],
    proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, storage = hls
    await put_object(storage, "hls/5/b1/source/seg_2.m4s", b"segment")
    proxy.inject("503", method="GET")
    with caplog.at_level(logging.WARNING, "web.hls"):
        r = await client.get("/hls/5/b1/source/seg_2.m4s")
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    assert "reading 5/b1/source/seg_2.m4s from storage failed" in caplog.text
    assert storage.options.bucket not in r.text
    proxy.clear()
    assert (await client.get("/hls/5/b1/source/seg_2.m4s")).status_code == 200


@pytest.mark.parametrize(
    "key",
    [
        "hls/5/master.m3u8",
        "hls/5/b1/source/live.m3u8",
        "hls/5/b1/source/vod.m3u8",
        "hls/5/b1/source/init.mp4",
        "hls/5/b1/source/seg_4.m4s",
        "hls/5/b1/ts/seg_4.ts",
        "hls/5/b1/poster.jpg",
    ],
)
async def test_hls_serves_each_kind_with_the_headers_it_was_stored_with(
    hls: tuple[httpx.AsyncClient, S3Storage], key: str
) -> None:
    client, storage = hls
    await put_object(storage, key, PLAYLIST if key.endswith(".m3u8") else b"\x00object")
    for method in ("GET", "HEAD"):
        r = await client.request(method, f"/{key}", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200, (method, key)
        assert (r.headers["content-type"], r.headers["cache-control"]) == object_headers(key)


async def test_api_playback_urls_point_at_the_cdn(database_url: str) -> None:
    settings = Settings(
        jwt_secret="s" * 40, storage="s3", s3_bucket="private-bucket", s3_prefix="media",
        cdn_base_url="https://d111111abcdef8.cloudfront.net",
    )  # fmt: skip
    async with web_app(settings, database_url) as app:
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        try:
            pool = app.state.db.primary
            owner = await users.create(
                pool, username="caster", email="c@example.com", password_hash="x", role="creator"
            )
            row = await lives.create(pool, user_id=owner["id"], title="on the CDN")
            await lives.mark_live(pool, row["id"])
            # The poster URL the packager stores: its storage's URL for the poster's key.
            storage = build_storage(settings, CollectorRegistry())
            assert isinstance(storage, S3Storage)
            poster = storage.url_for(f"hls/{row['id']}/b1/poster.jpg")
            storage.close()
            await live_media.set_thumbnail_url(pool, row["id"], poster)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                one = (await client.get(f"/api/lives/{row['id']}")).json()
                listed = (await client.get("/api/lives")).json()["items"]
            expected = f"https://d111111abcdef8.cloudfront.net/media/hls/{row['id']}/master.m3u8"
            assert one["playback_url"] == expected
            assert one["thumbnail_url"] == expected.replace("master.m3u8", "b1/poster.jpg")
            assert [live["playback_url"] for live in listed] == [expected]
            assert "private-bucket" not in str(one) + str(listed)
        finally:
            await asyncio.wait_for(lifespan.__aexit__(None, None, None), 60)


async def test_hls_errors_from_the_storage_are_json_with_cors(
    hls: tuple[httpx.AsyncClient, S3Storage],
) -> None:
    client, storage = hls
    await put_object(storage, "hls/5/b1/source/seg_3.m4s", b"segment")
    for method in ("POST", "PUT", "DELETE"):
        r = await client.request(method, "/hls/5/b1/source/seg_3.m4s")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    # Objects are served whole: a Range, even past the end, gets the object.
    r = await client.get("/hls/5/b1/source/seg_3.m4s", headers={"Range": "bytes=100-"})
    assert (r.status_code, r.content) == (200, b"segment")
