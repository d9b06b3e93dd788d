"""The web app at ``/`` (web/ui_routes.py), from a small build made here (``STREAMD_UI_DIR``)."""

from __future__ import annotations

import asyncio
import gzip
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.api_helpers import Api, MakeApi
from web.ui_routes import CSP

INDEX = b'<!doctype html><html><head><script type="module" src="/assets/index-4f2a9c.js">' \
        b"</script></head><body><div id=app></div></body></html>"  # fmt: skip
SCRIPT = b"console.log('streamd web app');\n" * 40
SECRET = "the secret outside the build"
IDENTITY = {"Accept-Encoding": "identity"}  # httpx asks for gzip unless told otherwise
FILES = {
    "index.html": INDEX,
    "favicon.ico": b"\x00\x00\x01\x00icon",
    "robots.txt": b"User-agent: *\n",
    "assets/index-4f2a9c.js": SCRIPT,
    "assets/index-4f2a9c.js.gz": gzip.compress(SCRIPT),
    "assets/index-4f2a9c.js.br": b"not really brotli",  # read raw: only the choice is tested
    "assets/index-77aa01.css": b"body{margin:0}",
    "assets/inter-latin-400.woff2": b"wOF2font",
    "assets/logo-1b2c3d.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "assets/poster-9f8e7d.png": b"\x89PNG\r\n\x1a\nimage",
}


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_text(SECRET)
    (root / "assets" / "leak.js").symlink_to(tmp_path / "secret.txt")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
async def ui(make_api: MakeApi, dist: Path) -> Api:
    return await make_api(ui_dir=dist)


def assert_index(r: httpx.Response) -> None:
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["content-security-policy"] == CSP
    assert r.content == INDEX


async def test_assets_are_served_immutable_with_their_types(ui: Api) -> None:
    types = {
        "index-4f2a9c.js": "text/javascript; charset=utf-8",
        "index-77aa01.css": "text/css; charset=utf-8",
        "inter-latin-400.woff2": "font/woff2",
        "logo-1b2c3d.svg": "image/svg+xml",
        "poster-9f8e7d.png": "image/png",
    }
    for name, content_type in types.items():
        r = await ui.client.get(f"/assets/{name}", headers=IDENTITY)
        assert r.status_code == 200, name
        assert r.headers["content-type"] == content_type
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.content == FILES[f"assets/{name}"]
        assert "content-encoding" not in r.headers
        head = await ui.client.head(f"/assets/{name}", headers=IDENTITY)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(FILES[f"assets/{name}"]))
    r = await ui.client.get("/assets/index-000000.js")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "not_found"
    # Root files of the build: a short cache.
    r = await ui.client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.headers["cache-control"] == "no-cache"
    assert (await ui.client.get("/robots.txt")).content == FILES["robots.txt"]


@pytest.mark.parametrize("path", ["/", "/index.html", "/lives/12", "/u/alice/videos",
                                  "/settings/", "/assets", "/apis", "/healthz", "/wsx",
                                  "/no/such/page.js", "/hlsx", "/hls.html", "/docsy"])  # fmt: skip
async def test_every_other_page_is_index_html(ui: Api, path: str) -> None:
    assert_index(await ui.client.get(path))


async def test_a_watch_page_preloads_its_live(ui: Api) -> None:
    for path in ("/lives/12", "/lives/12/"):
        r = await ui.client.get(path)
        assert_index(r)
        assert r.headers["link"] == "</api/lives/12>; rel=preload; as=fetch; crossorigin"
    for path in ("/lives/12/stream", "/lives/x", "/lives", "/"):
        assert "link" not in (await ui.client.get(path)).headers, path


async def test_streamds_own_paths_are_not_the_apps(ui: Api) -> None:
    for path in ("/api/nothing", "/api", "/api/lives/abc", "/ws/lives/1/chat", "/hls/1/x.m3u8",
                 "/docs/nothing", "/ws"):  # fmt: skip
        r = await ui.client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/json", path
    assert (await ui.client.get("/health")).json() == {"status": "ok"}
    assert (await ui.client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    assert (await ui.client.get("/docs")).headers["content-security-policy"] != CSP
    assert (await ui.client.get("/metrics")).status_code == 200
    # Other methods on the app's paths: the API's 404, not a 405 from the fallback.
    r = await ui.client.post("/lives/12", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def raw_get(api: Api, path: str) -> tuple[int, bytes]:
    """GET ``path`` as the server would pass it, ``..`` and all (clients normalise them)."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    requested, done = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # a server says "disconnected" only once the response is over
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await api.app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


async def test_no_path_leads_out_of_the_build(ui: Api, dist: Path) -> None:
    outside = str(dist.parent / "secret.txt")
    for path in ("/assets/%2e%2e/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt",
                 "/%2e%2e/secret.txt", "/assets/%2Fetc%2Fpasswd", f"/assets/{outside}",
                 f"/{outside}", "/assets/leak.js", "/leak.txt", "/assets/.%2e/.%2e/secret.txt",
                 "/assets/..%5c..%5csecret.txt"):  # fmt: skip
        r = await ui.client.get(path)
        assert SECRET not in r.text, path
        assert r.status_code in (200, 404), path
        if path.startswith("/assets/"):
            assert r.status_code == 404, path
        else:
            assert_index(r)
    for path in ("/assets/../../secret.txt", "/../secret.txt", "/assets/./../../secret.txt",
                 "//etc/passwd", "/assets//etc/passwd"):  # fmt: skip
        status, body = await raw_get(ui, path)
        assert SECRET.encode() not in body and b"root:" not in body, path
        assert status in (200, 404), path


async def test_precompressed_twins(ui: Api) -> None:
    name = "/assets/index-4f2a9c.js"
    r = await ui.client.get(name, headers={"Accept-Encoding": "gzip, deflate"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["content-length"] == str(len(FILES["assets/index-4f2a9c.js.gz"]))
    assert r.content == SCRIPT  # httpx undid the gzip
    async with ui.client.stream("GET", name, headers={"Accept-Encoding": "gzip, br"}) as s:
        assert s.headers["content-encoding"] == "br"
        assert b"".join([chunk async for chunk in s.aiter_raw()]) == FILES[name[1:] + ".br"]
    for refused in ("identity", "gzip;q=0, br;q=0.0", ""):
        r = await ui.client.get(name, headers={"Accept-Encoding": refused})
        assert "content-encoding" not in r.headers and r.content == SCRIPT, refused
        assert r.headers["vary"] == "Accept-Encoding"
    # A file without a twin is sent as it is.
    r = await ui.client.get("/assets/index-77aa01.css", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers


async def test_etags_answer_304(ui: Api) -> None:
    for path in ("/assets/index-4f2a9c.js", "/", "/lives/3", "/favicon.ico"):
        first = await ui.client.get(path)
        etag = first.headers["etag"]
        r = await ui.client.get(path, headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b"", path
        assert r.headers["etag"] == etag and r.headers["cache-control"]
        r = await ui.client.get(path, headers={"If-None-Match": f'W/{etag}, "other"'})
        assert r.status_code == 304, path
        r = await ui.client.get(path, headers={"If-None-Match": '"other"'})
        assert r.status_code == 200, path
    # The compressed twin is another representation: another ETag.
    plain = await ui.client.get("/assets/index-4f2a9c.js", headers=IDENTITY)
    zipped = await ui.client.get("/assets/index-4f2a9c.js", headers={"Accept-Encoding": "gzip"})
    assert plain.headers["etag"] != zipped.headers["etag"]


async def test_without_a_build(
    make_api: MakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="web.ui_routes"):
        api = await make_api(ui_dir=tmp_path / "nothing")
    warnings = [r for r in caplog.records if r.name == "web.ui_routes"]
    assert len(warnings) == 1 and "./dev ui" in warnings[0].getMessage()
    for path in ("/", "/lives/1"):
        r = await api.client.get(path)
        assert r.status_code == 503
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert "./dev ui" in r.text and "STREAMD_UI_DIR" in r.text
    r = await api.client.get("/assets/index-4f2a9c.js")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await api.client.get("/api/lives")).status_code == 200
    # A build without index.html is no build either.
    (tmp_path / "half" / "assets").mkdir(parents=True)
    half = await make_api(ui_dir=tmp_path / "half")
    assert (await half.client.get("/")).status_code == 503
