"""Local storage, and web/hls.py serving it: types, caching, gzip, CORS, HEAD, traversal.

/hls is mounted as ``streamd serve`` mounts it (``streamd.server.hls_routes_for``)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from config.settings import Settings
from packager.storage.base import StorageKeyError, object_headers, put_object
from packager.storage.local import LocalStorage
from streamd.resources import database_pools
from streamd.server import hls_routes_for
from web.errors import EXCEPTION_HANDLERS

PLAYLIST = "#EXTM3U\n" + "".join(f"#EXTINF:2.000,\nseg_{n}.m4s\n" for n in range(40))


async def test_local_storage_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, base_url="https://cdn.example")
    await put_object(storage, "hls/1/b1/source/seg_0.m4s", b"one")
    await put_object(storage, "hls/1/b1/source/seg_0.m4s", b"two")  # replaced whole
    await put_object(storage, "hls/1/b1/source/live.m3u8", b"#EXTM3U\n")
    await put_object(storage, "hls/1/b10/source/seg_0.m4s", b"x")
    assert await storage.get("hls/1/b1/source/seg_0.m4s") == b"two"
    assert await storage.get("hls/1/nothing") is None
    assert await storage.exists("hls/1/b1/source/live.m3u8")
    assert await storage.list("hls/1/b1/") == [
        "hls/1/b1/source/live.m3u8", "hls/1/b1/source/seg_0.m4s",
    ]  # fmt: skip
    assert len(await storage.list("hls/1/b1")) == 3  # a prefix may end inside a name
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
    await storage.delete(["hls/1/b1/source/seg_0.m4s", "hls/1/b1/missing.m4s"])
    assert not await storage.exists("hls/1/b1/source/seg_0.m4s")
    assert storage.url_for("hls/1/b1/vod.m3u8") == "https://cdn.example/hls/1/b1/vod.m3u8"
    for bad in ("", "hls/../x", "/etc/passwd", "hls//x", "hls/./x", "hls\\..\\x"):
        with pytest.raises(StorageKeyError):
            await storage.put(bad, b"", "text/plain", "no-cache")


@pytest.fixture
async def client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    root = tmp_path / "media"  # DATA_DIR/media
    storage = LocalStorage(root)
    await put_object(storage, "hls/7/master.m3u8", PLAYLIST.encode())
    await put_object(storage, "hls/7/b1/source/live.m3u8", PLAYLIST.encode())
    await put_object(storage, "hls/7/b1/source/vod.m3u8", PLAYLIST.encode())
    await put_object(storage, "hls/7/b1/source/init.mp4", b"ftyp")
    await put_object(storage, "hls/7/b1/source/seg_1.m4s", b"m" * 5000)
    await put_object(storage, "hls/7/b1/ts/seg_1.ts", b"G" * 188)
    await put_object(storage, "hls/7/b1/poster.jpg", b"\xff\xd8")
    (root / "hls" / "7" / "b1" / "source" / ".seg_2.m4s.1.tmp").write_bytes(b"partial")
    (root / "secret.m3u8").write_text("#EXTM3U secret")
    (root / "hls" / "7" / "link.m3u8").symlink_to(root / "secret.m3u8")
    settings = Settings(data_dir=tmp_path)
    routes = hls_routes_for(settings, storage)
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    # The playback guard asks PostgreSQL whether live 7 is sold (it is not).
    async with database_pools(settings, database_url) as db:
        app.state.db, app.state.settings = db, settings
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            yield c


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("7/master.m3u8", "application/vnd.apple.mpegurl", "public, max-age=1"),
        ("7/b1/source/live.m3u8", "application/vnd.apple.mpegurl", "public, max-age=1"),
        ("7/b1/source/vod.m3u8", "application/vnd.apple.mpegurl", "public, max-age=3600"),
        ("7/b1/source/init.mp4", "video/mp4", "public, max-age=31536000, immutable"),
        ("7/b1/source/seg_1.m4s", "video/iso.segment", "public, max-age=31536000, immutable"),
        ("7/b1/ts/seg_1.ts", "video/mp2t", "public, max-age=31536000, immutable"),
        ("7/b1/poster.jpg", "image/jpeg", "public, max-age=5"),
    ],
)
async def test_types_and_caching(
    client: httpx.AsyncClient, path: str, content_type: str, cache: str
) -> None:
    response = await client.get(f"/hls/{path}", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == cache
    assert response.headers["access-control-allow-origin"] == "*"
    head = await client.head(f"/hls/{path}", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


async def test_playlists_are_gzipped_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.get("/hls/7/b1/source/live.m3u8", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.text == PLAYLIST  # httpx decoded it
    raw = await client.get(
        "/hls/7/b1/source/live.m3u8", headers={"Accept-Encoding": "gzip;q=0, identity"}
    )
    assert "content-encoding" not in raw.headers
    segment = await client.get("/hls/7/b1/source/seg_1.m4s", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in segment.headers  # media does not compress
    # What went over the wire was gzip indeed, and smaller.
    headers = {"Accept-Encoding": "gzip"}
    async with client.stream("GET", "/hls/7/b1/source/live.m3u8", headers=headers) as stream:
        wire = b"".join([chunk async for chunk in stream.aiter_raw()])
    assert gzip.decompress(wire) == PLAYLIST.encode() and len(wire) < len(PLAYLIST)


@pytest.mark.parametrize(
    "path",
    [
        "/hls/7/nothing.m3u8",
        "/hls/7/b1/source/.seg_2.m4s.1.tmp",
        "/hls/7/b1/source/seg_1.exe",
        "/hls/..%2Fsecret.m3u8",
        "/hls/7/..%2F..%2Fsecret.m3u8",
        "/hls/7/%2e%2e/%2e%2e/secret.m3u8",
        "/hls/7/link.m3u8",
        "/hls/7/b1",
        "/hls/",
    ],
)
async def test_not_found_everywhere_else(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json()["error"]["code"] == "not_found"
    assert "secret" not in response.text


async def test_preflight(client: httpx.AsyncClient) -> None:
    response = await client.options("/hls/7/master.m3u8")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "GET" in response.headers["access-control-allow-methods"]


# One object of each kind the packager writes, as the client fixture stored them.
EACH_KIND = [
    "hls/7/master.m3u8",  # live playlists: master and media
    "hls/7/b1/source/live.m3u8",
    "hls/7/b1/source/vod.m3u8",  # VOD playlist
    "hls/7/b1/source/init.mp4",  # init segment
    "hls/7/b1/source/seg_1.m4s",  # media segments, CMAF and TS
    "hls/7/b1/ts/seg_1.ts",
    "hls/7/b1/poster.jpg",
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("key", EACH_KIND)
async def test_served_with_the_headers_the_packager_stores_with(
    client: httpx.AsyncClient, key: str, method: str
) -> None:
    """/hls and object storage share one table (packager.storage.base): what /hls answers for
    each kind is exactly what object_headers gives the key."""
    r = await client.request(method, f"/{key}", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert (r.headers["content-type"], r.headers["cache-control"]) == object_headers(key)


def _is_hls_error(response: httpx.Response, status: int, code: str) -> bool:
    """Every /hls error is the API's JSON error with the CORS header players need to see it."""
    return (
        response.status_code == status
        and response.headers["content-type"] == "application/json"
        and response.headers["access-control-allow-origin"] == "*"
        and response.json()["error"]["code"] == code
    )


@pytest.mark.parametrize("value", ["bytes=5000-", "bytes=9000-9999", "bytes=-0", "bytes=0-1,6000-"])
async def test_a_range_past_the_end_is_416_json_with_cors(
    client: httpx.AsyncClient, value: str
) -> None:
    path = "/hls/7/b1/source/seg_1.m4s"
    r = await client.get(path, headers={"Range": value})
    assert _is_hls_error(r, 416, "range_not_satisfiable"), r.text
    assert r.headers["content-range"] == "bytes */5000"
    head = await client.head(path, headers={"Range": value})
    assert (head.status_code, head.content) == (416, b"")
    assert head.headers["access-control-allow-origin"] == "*"


async def test_satisfiable_and_malformed_ranges(client: httpx.AsyncClient) -> None:
    path = "/hls/7/b1/source/seg_1.m4s"
    r = await client.get(path, headers={"Range": "bytes=4990-"})
    assert (r.status_code, r.content, r.headers["content-range"]) == (
        206,
        b"m" * 10,
        "bytes 4990-4999/5000",
    )
    assert r.headers["access-control-allow-origin"] == "*"
    r = await client.get(path, headers={"Range": "bytes=-10"})
    assert (r.status_code, r.content) == (206, b"m" * 10)
    r = await client.get(path, headers={"Range": "bytes=0-0,10-19"})
    assert r.status_code == 206 and r.headers["access-control-allow-origin"] == "*"
    # A Range that does not parse is ignored (RFC 9110 §14.2): the whole file, not a text 400.
    for value in ("items=0-1", "bytes=5-2", "bytes=x-y", "bytes=", "bytes=1-2-3"):
        r = await client.get(path, headers={"Range": value})
        assert (r.status_code, len(r.content)) == (200, 5000), value
        assert r.headers["access-control-allow-origin"] == "*"
    # An If-Range naming another version asks for the whole file: no 416 either.
    r = await client.get(path, headers={"Range": "bytes=9000-", "If-Range": '"other"'})
    assert (r.status_code, len(r.content)) == (200, 5000)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405_json_with_cors(client: httpx.AsyncClient, method: str) -> None:
    r = await client.request(method, "/hls/7/master.m3u8")
    assert _is_hls_error(r, 405, "method_not_allowed"), r.text
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_the_hls_root_is_404_json_with_cors(client: httpx.AsyncClient) -> None:
    for path in ("/hls", "/hls/"):
        assert _is_hls_error(await client.get(path), 404, "not_found"), path
