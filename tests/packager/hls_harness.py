"""End-to-end harness of the packager tests: real ffmpeg publishers -> RtmpServer -> Packager ->
LocalStorage, served over HTTP by web/hls.py under uvicorn on loopback, on a real PostgreSQL.

The pieces are wired as the packager's README section proposes for ``streamd serve``; one
difference stands in for a change to ingest that is not made yet: the gate's ``release`` is
told not to end the live, since with a reconnect window the packager ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import av
import imageio_ffmpeg
import m3u8
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from db import lives, users
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import RtmpLimits, RtmpServer
from media.types import MediaPacket, VideoConfig
from packager.hls.playlists import rounded
from packager.options import PackagerOptions
from packager.packager import Packager
from packager.pipeline import OutputCallback
from packager.storage.base import known_object_headers
from packager.storage.local import LocalStorage
from packager.types import PosterWriter, RenditionItem
from web.errors import EXCEPTION_HANDLERS
from web.hls import hls_routes

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


class FakeLadder:
    """A stand-in for packager.ladder.ladder in tests only: it re-emits the source's video under the
    rung name ``fake`` (a little later, on the loop, as a threaded ladder would), so the
    pipeline's plumbing for ladder renditions is exercised without transcoding."""

    name = "fake"

    def __init__(self, on_output: OutputCallback, thumbnailer: PosterWriter | None) -> None:
        self.on_output = on_output
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()
        self.pending = 0
        self.ended = False

    def start(self, source_video: VideoConfig) -> None:
        self._later(source_video)

    def push(self, packet: MediaPacket) -> None:
        self._later(packet)

    def _later(self, item: RenditionItem) -> None:
        self.pending += 1
        self.loop.call_later(0.05, self._emit, item)

    def _emit(self, item: RenditionItem) -> None:
        self.on_output(self.name, item)
        self.pending -= 1
        if self.ended and not self.pending and not self.closed.done():
            self.closed.set_result(None)

    def end(self) -> None:
        self.ended = True
        if not self.pending and not self.closed.done():
            self.closed.set_result(None)

    async def wait_closed(self) -> None:
        await self.closed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Harness:
    server: RtmpServer
    packager: Packager
    pool: asyncpg.Pool
    root: Path
    keys: list[str]
    live_ids: list[int]
    user_id: int
    http: str = ""
    sessions: list[Any] = field(default_factory=list)

    def url(self, i: int = 0) -> str:
        return f"rtmp://127.0.0.1:{self.server.ports()[0]}/live/{self.keys[i]}"

    def path(self, key: str) -> Path:
        return self.root / key

    def text(self, key: str) -> str:
        return self.path(key).read_text()

    def playlist(self, key: str) -> m3u8.M3U8:
        return m3u8.loads(self.text(key))

    def broadcast_dirs(self, live: int = 0) -> list[Path]:
        base = self.root / "hls" / str(self.live_ids[live])
        return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    async def wait_ended(self, live: int = 0, timeout: float = 30) -> None:
        """Until the live's broadcast is over (window passed, recording finalised)."""
        live_id = self.live_ids[live]
        for _ in range(int(timeout * 20)):
            if live_id not in self.packager.lives and not self.server.sessions:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the broadcast did not end")

    async def wait_segments(self, key: str, count: int, timeout: float = 30) -> None:
        for _ in range(int(timeout * 20)):
            if self.path(key).exists() and len(self.playlist(key).segments) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key} never had {count} segments")


@contextlib.asynccontextmanager
async def harness(
    database_url: str, root: Path, options: PackagerOptions, *, ladder: bool = False
) -> AsyncIterator[Harness]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    owner = await users.create(
        pool, username="streamer", email="s@example.com", password_hash="x", role="creator"
    )
    rows = [await lives.create(pool, user_id=owner["id"], title=f"live {i}") for i in range(2)]
    gate = PublishGate(pool, database_url, "live")
    release = gate.release

    async def release_without_ending(live_id: int, *, ended: bool = True) -> None:
        await release(live_id, ended=False)

    gate.release = release_without_ending  # type: ignore[method-assign]
    await gate.open()
    storage = LocalStorage(root)
    packager = Packager(options, storage, pool, ladder_factory=FakeLadder if ladder else None)
    server = RtmpServer(
        gate, IngestMetrics(CollectorRegistry()), RtmpLimits(idle_timeout=10),
        on_session=packager.on_session,
    )  # fmt: skip
    await server.listen("127.0.0.1", 0)
    routes = hls_routes(root, known_object_headers)
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    port = free_port()
    # ffmpeg's HLS reader keeps its HTTP connection; on a loaded machine it may come back
    # after uvicorn's default 5 s keep-alive and read an EOF.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off", timeout_keep_alive=120
    )
    web = uvicorn.Server(config)
    web_task = asyncio.get_running_loop().create_task(web.serve())
    while not web.started:
        await asyncio.sleep(0.02)
    h = Harness(
        server, packager, pool, root, [r["stream_key"] for r in rows], [r["id"] for r in rows],
        owner["id"], f"http://127.0.0.1:{port}",
    )  # fmt: skip
    try:
        yield h
    finally:
        await server.close()
        await packager.close()
        web.should_exit = True
        await web_task
        await gate.close()
        await pool.close()


async def ffmpeg_publish(
    url: str,
    *args: str,
    seconds: float = 4,
    size: str = "640x360",
    gop: int = 60,
    video: str = "libx264",
) -> tuple[int, str]:
    """Publish ``seconds`` of OBS-like media (x264 high, 2 B-frames, AAC 48 kHz stereo)."""
    codec = {
        "libx264": ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2"],
        "libx265": ["-c:v", "libx265", "-preset", "ultrafast",
                    "-x265-params", "log-level=error:open-gop=0"],
        # SVT-AV1's fastest preset; key frames (closed GOPs) only where -g puts them.
        "libsvtav1": ["-c:v", "libsvtav1", "-preset", "12", "-b:v", "800k",
                      "-svtav1-params", "irefresh-type=2"],
    }[video]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        *codec, "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        "-t", str(seconds), *args, "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=seconds * 3 + 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def player_errors(url: str, *, level: str = "error") -> str:
    """What the ffmpeg CLI, playing ``url`` as a player would, complains about."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-v", level, "-nostdin", "-i", url,
        "-map", "0:v:0?", "-map", "0:a:0?", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")
    return err.decode(errors="replace")


def check_media_playlist(playlist: m3u8.M3U8, *, target: float, vod: bool = False) -> None:
    """The Apple HLS authoring and RFC 8216 clauses a live playlist must meet."""
    assert playlist.target_duration >= max(rounded(s.duration) for s in playlist.segments)
    assert playlist.media_sequence is not None
    assert playlist.is_independent_segments
    assert all(s.program_date_time is not None for s in playlist.segments)
    pdts = [s.program_date_time for s in playlist.segments]
    assert pdts == sorted(pdts)
    assert playlist.is_endlist
    if vod:
        assert playlist.playlist_type == "vod"


@dataclass
class Decoded:
    codec: str
    width: int
    height: int
    rate: float
    profile: str | None
    level: int
    key_first: bool
    frames: int
    first_time: float
    audio_codec: str | None


def open_segment(init: bytes, segment: bytes, *, check: Callable[[Any], None] | None = None
                 ) -> Decoded:  # fmt: skip
    """Decode one segment (with its init segment) as a player joining there would."""
    with av.open(io.BytesIO(init + segment)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = list(container.decode(video=0))
        ctx = video.codec_context
        return Decoded(
            ctx.name, ctx.width, ctx.height, float(video.average_rate or 0),
            ctx.profile, getattr(ctx, "level", 0), frames[0].key_frame, len(frames),
            float(frames[0].time or 0), audio.codec_context.name if audio else None,
        )  # fmt: skip
