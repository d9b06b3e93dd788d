"""The /hls origin's fast path (web.hls_origin) in front of web.hls, over ASGI: LL-HLS
playlists from memory, blocking reload held and released by a publish, its 400 and 503
answers, delta updates, the preload hint's part, files read whole, and everything else left
to web.hls. The live renditions are the packager's real LiveRendition objects, published to
by hand (the pipeline that publishes them is tested in tests/packager/hls)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import m3u8
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from packager.hls.low_latency import LiveIndex, LiveRendition, PartEntry
from packager.hls.playlists import LivePlaylist, SegmentEntry
from packager.storage.base import known_object_headers
from web import hls_origin
from web.errors import error_response
from web.hls import hls_routes
from web.hls_origin import HlsOrigin
from web.metrics import HttpMetrics
from web.middleware import RequestContextMiddleware

DIR = "hls/4/b1/source"
URL = f"/{DIR}/live.m3u8"
START = datetime(2026, 1, 1, tzinfo=UTC)

GuardFn = Callable[[Request], Awaitable[Response | bool]]


class Live:
    """One rendition being published to by hand: parts of 333 ms, segments of 2 s."""

    def __init__(self, index: LiveIndex, directory: str = DIR, window: int = 6) -> None:
        self.rendition = LiveRendition(
            directory.rsplit("/", 1)[1], LivePlaylist(window, version=7, minimum_target=2), 333
        )
        index.add(directory, self.rendition)
        self.rendition.add_init("init.mp4", b"init-bytes")
        self.msn = self.part = 0

    def part_out(self) -> None:
        data = f"part {self.msn}.{self.part}".encode()
        self.rendition.add_part(
            PartEntry(self.msn, self.part, 0.3333, self.part == 0, data), discontinuity=False
        )
        self.part += 1

    def segment_out(self) -> None:
        entry = SegmentEntry(self.msn, f"seg_{self.msn}.m4s", 2.0, False,
                             START + timedelta(seconds=2 * self.msn), "init.mp4", 60)  # fmt: skip
        data = b"".join(f"part {self.msn}.{i}".encode() for i in range(self.part))
        self.rendition.add_segment(entry, data)
        self.msn, self.part = self.msn + 1, 0

    def segments(self, n: int) -> None:
        for _ in range(n):
            for _ in range(6):
                self.part_out()
            self.segment_out()


def make_app(index: LiveIndex, root: Path, guard: GuardFn | None = None) -> Starlette:
    return Starlette(
        routes=hls_routes(root, known_object_headers),
        middleware=[
            Middleware(RequestContextMiddleware, metrics=HttpMetrics(CollectorRegistry())),
            Middleware(
                HlsOrigin, lookup=index, root=root, headers=known_object_headers, guard=guard
            ),
        ],
    )


@pytest.fixture
def index() -> LiveIndex:
    return LiveIndex()


@pytest.fixture
async def client(index: LiveIndex, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(index, tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://origin") as client:
        yield client


async def test_the_live_playlist_comes_from_memory(
    index: LiveIndex, client: httpx.AsyncClient
) -> None:
    live = Live(index)
    live.segments(3)
    live.part_out()
    plain = {"accept-encoding": "identity"}
    answer = await client.get(URL, headers=plain)
    assert answer.status_code == 200 and "content-encoding" not in answer.headers
    assert answer.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert answer.headers["cache-control"] == "public, max-age=1"
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["x-request-id"]  # inside the request context
    playlist = m3u8.loads(answer.text)
    assert playlist.preload_hint.uri == "part_3_1.m4s"
    assert [p.uri for p in playlist.segments[-1].parts] == ["part_3_0.m4s"]
    zipped = await client.get(URL, headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == answer.text  # httpx inflates it
    head = await client.head(URL, headers=plain)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(answer.content)


async def test_a_blocking_request_is_held_until_its_part_is_published(
    index: LiveIndex, client: httpx.AsyncClient
) -> None:
    live = Live(index)
    live.segments(2)
    live.part_out()
    held = asyncio.ensure_future(client.get(f"{URL}?_HLS_msn=2&_HLS_part=1"))
    await asyncio.sleep(0.3)
    assert not held.done()
    live.part_out()  # part 2.1: releases it
    answer = await asyncio.wait_for(held, 1)
    assert answer.status_code == 200
    assert "part_2_1.m4s" in answer.text
    assert answer.headers["cache-control"] == "public, max-age=12"  # 6 target durations
    # Already there: answered at once; a whole segment (no _HLS_part) once it is complete.
    now = await asyncio.wait_for(client.get(f"{URL}?_HLS_msn=1&_HLS_part=3"), 0.5)
    assert now.status_code == 200
    whole = asyncio.ensure_future(client.get(f"{URL}?_HLS_msn=2"))
    await asyncio.sleep(0.2)
    assert not whole.done()
    for _ in range(4):
        live.part_out()
    assert not whole.done()
    live.segment_out()
    assert "seg_2.m4s" in (await asyncio.wait_for(whole, 1)).text


async def test_a_part_past_the_last_of_its_segment_is_the_next_segments_first(
    index: LiveIndex, client: httpx.AsyncClient
) -> None:
    live = Live(index)
    live.segments(2)
    for _ in range(6):
        live.part_out()
    held = asyncio.ensure_future(client.get(f"{URL}?_HLS_msn=2&_HLS_part=6"))
    await asyncio.sleep(0.1)
    live.segment_out()  # segment 2 ends with 6 parts: part 6 never comes
    assert (await asyncio.wait_for(held, 1)).status_code == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("_HLS_part=1", "_HLS_part needs _HLS_msn"),
        ("_HLS_msn=5&_HLS_part=0", "more than two segments ahead"),
        ("_HLS_msn=x", "integers"),
        ("_HLS_msn=1&_HLS_part=-1", "not negative"),
    ],
)
async def test_bad_blocking_requests_are_400(
    index: LiveIndex, client: httpx.AsyncClient, query: str, message: str
) -> None:
    live = Live(index)
    live.segments(2)  # last complete: 1; msn 3 may still be waited for, 4 not
    answer = await client.get(f"{URL}?{query}")
    assert answer.status_code == 400
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "no-store"
    assert message in answer.json()["error"]["message"]


async def test_a_request_held_too_long_is_503_never_a_stale_playlist(
    index: LiveIndex, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hls_origin, "HOLD_TARGETS", 0.25)  # 0.5 s instead of 6 s
    live = Live(index)
    live.segments(2)
    answer = await asyncio.wait_for(client.get(f"{URL}?_HLS_msn=2&_HLS_part=0"), 2)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_yet"
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["cache-control"] == "no-store"


async def test_the_end_of_the_live_releases_held_requests(
    index: LiveIndex, client: httpx.AsyncClient
) -> None:
    live = Live(index)
    live.segments(2)
    held = asyncio.ensure_future(client.get(f"{URL}?_HLS_msn=2&_HLS_part=0"))
    await asyncio.sleep(0.1)
    live.rendition.end()
    answer = await asyncio.wait_for(held, 1)
    assert answer.status_code == 200 and answer.text.endswith("#EXT-X-ENDLIST\n")


async def test_a_delta_update(index: LiveIndex, client: httpx.AsyncClient) -> None:
    live = Live(index, window=12)
    live.segments(14)
    live.part_out()
    delta = await client.get(f"{URL}?_HLS_msn=14&_HLS_part=0&_HLS_skip=YES")
    playlist = m3u8.loads(delta.text)
    assert playlist.skip.skipped_segments == 6
    assert playlist.media_sequence == 2
    assert playlist.segments[0].uri == "seg_8.m4s"


async def test_the_hinted_part_is_held_then_served(
    index: LiveIndex, client: httpx.AsyncClient
) -> None:
    live = Live(index)
    live.segments(1)
    live.part_out()
    held = asyncio.ensure_future(client.get(f"/{DIR}/part_1_1.m4s"))
    await asyncio.sleep(0.2)
    assert not held.done()
    live.part_out()
    answer = await asyncio.wait_for(held, 1)
    assert answer.status_code == 200 and answer.content == b"part 1.1"
    assert answer.headers["content-type"] == "video/iso.segment"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    # Hinted, but its segment ends without it: 404 at once, not after the timeout.
    for _ in range(4):
        live.part_out()
    hinted = asyncio.ensure_future(client.get(f"/{DIR}/part_1_6.m4s"))
    await asyncio.sleep(0.1)
    live.segment_out()
    gone = await asyncio.wait_for(hinted, 1)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    # Neither there nor hinted: web.hls answers (the same JSON 404).
    assert (await client.get(f"/{DIR}/part_9_0.m4s")).status_code == 404


async def test_segments_and_init_from_memory_then_from_disk(
    index: LiveIndex, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    live = Live(index)
    live.segments(1)
    answer = await client.get(f"/{DIR}/seg_0.m4s")
    assert answer.content == b"".join(f"part 0.{i}".encode() for i in range(6))
    assert (await client.get(f"/{DIR}/init.mp4")).content == b"init-bytes"
    # Stored: read from disk, with FileResponse's validators.
    live.rendition.stored("seg_0.m4s")
    assert live.rendition.media("seg_0.m4s") is None
    (tmp_path / DIR).mkdir(parents=True)
    (tmp_path / DIR / "seg_0.m4s").write_bytes(b"from disk" * 1000)
    disk = await client.get(f"/{DIR}/seg_0.m4s")
    assert disk.content == b"from disk" * 1000
    assert disk.headers["etag"] and disk.headers["last-modified"]
    assert disk.headers["accept-ranges"] == "bytes"
    assert disk.headers["cache-control"] == "public, max-age=31536000, immutable"
    # A Range goes to web.hls, which answers it.
    ranged = await client.get(f"/{DIR}/seg_0.m4s", headers={"range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"from"


async def test_files_through_symlinks_are_not_served(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.m4s").write_bytes(b"secret")
    (tmp_path / "hls" / "5").mkdir(parents=True)
    (tmp_path / "hls" / "5" / "link.m4s").symlink_to(outside / "secret.m4s")
    (tmp_path / "hls" / "6").symlink_to(outside)
    assert (await client.get("/hls/5/link.m4s")).status_code == 404
    assert (await client.get("/hls/6/secret.m4s")).status_code == 404


async def test_the_guard_applies_to_the_fast_path(index: LiveIndex, tmp_path: Path) -> None:
    async def sold(request: Request) -> Response | bool:
        if request.cookies.get("grant") == "ok":
            return True
        return error_response(403, "playback_forbidden", "buy it", headers={"X": "y"})

    live = Live(index)
    live.segments(1)
    transport = httpx.ASGITransport(app=make_app(index, tmp_path, guard=sold))
    async with httpx.AsyncClient(transport=transport, base_url="http://origin") as client:
        refused = await client.get(URL)
        assert refused.status_code == 403
        client.cookies.set("grant", "ok")
        granted = await client.get(f"/{DIR}/part_0_0.m4s")
        assert granted.status_code == 200
        assert granted.headers["cache-control"] == "private, max-age=60"


async def test_a_thousand_held_requests_are_released_by_one_part(
    index: LiveIndex, client: httpx.AsyncClient
) -> None:
    """Held requests are coroutines on one shared future: no thread each, all released."""
    live = Live(index)
    live.segments(2)
    threads = threading.active_count()
    held = [asyncio.ensure_future(client.get(f"{URL}?_HLS_msn=2&_HLS_part=0")) for _ in range(1000)]
    await asyncio.sleep(0.5)
    assert not any(h.done() for h in held)
    assert threading.active_count() <= threads + 1
    live.part_out()
    answers = await asyncio.wait_for(asyncio.gather(*held), 10)
    assert all(a.status_code == 200 and "part_2_0.m4s" in a.text for a in answers)


async def test_successes_are_logged_at_debug_and_errors_at_info(
    index: LiveIndex, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    live = Live(index)
    live.segments(1)
    with caplog.at_level("DEBUG", logger="streamd.access"):
        await client.get(URL)
        await client.get("/hls/4/b1/source/seg_99.m4s")
    levels = {r.getMessage().split()[1]: r.levelname for r in caplog.records
              if r.name == "streamd.access"}  # fmt: skip
    assert levels == {URL: "DEBUG", "/hls/4/b1/source/seg_99.m4s": "INFO"}


def test_gzip_of_a_playlist_is_computed_once(index: LiveIndex, tmp_path: Path) -> None:
    origin = HlsOrigin(make_app(index, tmp_path), lookup=index, root=tmp_path,
                       headers=known_object_headers)  # fmt: skip
    body = b"#EXTM3U\n" * 100
    first = origin._gzip(body)
    assert origin._gzip(body) is first
    assert gzip.decompress(first) == body
