"""RTMP ingest end to end: real ffmpeg publishers -> RtmpServer -> sessions, on a real PostgreSQL.

The server runs in the test's event loop (the production classes, wired as ``streamd serve``
wires them) so the tests can read what each publish session received.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import imageio_ffmpeg
import pytest
from prometheus_client import CollectorRegistry

from db import lives, users
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.rtmp.client import RtmpClient
from ingest.server import MAX_LOW_WATER, RtmpLimits, RtmpProtocol, RtmpServer
from ingest.session import PublishSession
from media.types import AudioConfig, MediaPacket, VideoConfig
from tests.flv_samples import DATA_DIR
from tests.helpers import self_signed

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SYSTEM_FFMPEG = shutil.which("ffmpeg")
HANDSHAKE_TIMEOUT = 2.0


@dataclass
class Received:
    session: PublishSession
    items: list[tuple[float, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def video(self) -> list[MediaPacket]:
        return [i for _, i in self.items if isinstance(i, MediaPacket) and i.kind == "video"]

    @property
    def audio(self) -> list[MediaPacket]:
        return [i for _, i in self.items if isinstance(i, MediaPacket) and i.kind == "audio"]

    def max_arrival_gap(self) -> float:
        times = [t for t, i in self.items if isinstance(i, MediaPacket)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class Harness:
    server: RtmpServer
    port: int
    registry: CollectorRegistry
    pool: asyncpg.Pool
    database_url: str
    keys: list[str]
    live_ids: list[int]
    received: list[Received] = field(default_factory=list)

    def url(self, i: int = 0, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{self.keys[i]}"

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def rtmp(database_url: str) -> AsyncIterator[Harness]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    owner = await users.create(
        pool, username="streamer", email="s@example.com", password_hash="x", role="creator"
    )
    rows = [await lives.create(pool, user_id=owner["id"], title=f"live {i}") for i in range(3)]
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    registry = CollectorRegistry()
    received: list[Received] = []

    def on_session(session: PublishSession) -> None:
        rec = Received(session)
        received.append(rec)
        sub = session.subscribe("test", maxsize=100_000)

        async def collect() -> None:
            async for item in sub:
                rec.items.append((time.monotonic(), item))
            rec.done.set()

        asyncio.get_running_loop().create_task(collect())

    server = RtmpServer(
        gate,
        IngestMetrics(registry),
        RtmpLimits(max_connections=50, handshake_timeout=HANDSHAKE_TIMEOUT, idle_timeout=5),
        on_session=on_session,
    )
    await server.listen("127.0.0.1", 0)
    harness = Harness(
        server, server.ports()[0], registry, pool, database_url,
        [r["stream_key"] for r in rows], [r["id"] for r in rows], received,
    )  # fmt: skip
    try:
        yield harness
    finally:
        await server.close()
        await gate.close()
        await pool.close()


async def ffmpeg_publish(
    url: str, *args: str, seconds: float = 3, binary: str = FFMPEG, video: str = "libx264"
) -> tuple[int, str]:
    """Publish ``seconds`` of OBS-like test media; return ffmpeg's exit code and stderr."""
    inputs = [
        "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    ]  # fmt: skip
    codec = {
        "libx264": ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2"],
        "libx265": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
    }[video]
    proc = await asyncio.create_subprocess_exec(
        binary, "-hide_banner", "-loglevel", "error", *inputs,
        *codec, "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-t", str(seconds), *args, "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def _session_done(rtmp: Harness, index: int = 0) -> Received:
    for _ in range(100):
        if len(rtmp.received) > index:
            break
        await asyncio.sleep(0.05)
    rec = rtmp.received[index]
    await asyncio.wait_for(rec.done.wait(), timeout=10)
    return rec


def assert_h264_timing(rec: Received, frames: int) -> None:
    video = rec.video
    assert len(video) == frames
    assert video[0].keyframe
    dts = [p.dts_ms for p in video]
    assert dts == sorted(dts), "dts must be monotonic"
    assert all(p.pts_ms >= p.dts_ms for p in video)
    assert any(p.pts_ms != p.dts_ms for p in video), "B-frames give pts != dts"
    # Every presentation time is distinct and they form the 30 fps grid once sorted.
    pts = sorted(p.pts_ms for p in video)
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps <= {33, 34}
    keyframes = [i for i, p in enumerate(video) if p.keyframe]
    assert keyframes == list(range(0, frames, 60))  # the 2 s GOP we asked for


async def test_obs_like_h264_aac_publish(rtmp: Harness) -> None:
    listener = await asyncpg.connect(rtmp.database_url)
    notes: list[dict[str, Any]] = []
    await listener.add_listener("live_status", lambda *a: notes.append(json.loads(a[3])))
    try:
        publisher = asyncio.create_task(ffmpeg_publish(rtmp.url(0), seconds=3))
        for _ in range(100):
            if rtmp.received:
                break
            await asyncio.sleep(0.05)
        status = await rtmp.pool.fetchval("SELECT status FROM lives WHERE id=$1", rtmp.live_ids[0])
        assert status == "live"
        assert rtmp.metric("streamd_rtmp_publish_sessions") == 1
        code, err = await publisher
        assert code == 0, err
        rec = await _session_done(rtmp)
        for _ in range(100):  # the end is recorded by a task after the session closes
            if len(notes) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()

    v = rec.session.video_config
    a = rec.session.audio_config
    assert isinstance(v, VideoConfig)
    assert (v.codec, v.width, v.height) == ("h264", 640, 360)
    assert v.codec_string.startswith("avc1.64")  # High profile
    assert isinstance(a, AudioConfig)
    assert (a.codec_string, a.sample_rate, a.channels) == ("mp4a.40.2", 48000, 1)
    # Consumers get the configs before any packet.
    assert isinstance(rec.items[0][1], VideoConfig | AudioConfig)
    assert_h264_timing(rec, frames=90)
    assert abs(len(rec.audio) - 3 * 48000 / 1024) <= 3
    assert rec.session.metadata.get("width") == 640.0

    row = await rtmp.pool.fetchrow(
        "SELECT status, start_time, end_time FROM lives WHERE id=$1", rtmp.live_ids[0]
    )
    assert row["status"] == "ended"
    assert row["end_time"] >= row["start_time"]
    assert [n["status"] for n in notes] == ["live", "ended"]
    assert rtmp.metric("streamd_rtmp_publish_sessions") == 0
    assert rtmp.metric("streamd_rtmp_connections") == 0


async def test_system_ffmpeg_publishes_too(rtmp: Harness) -> None:
    """Debian's ffmpeg (installed by ./dev test) is a second, independent RTMP client."""
    assert SYSTEM_FFMPEG, "Debian's ffmpeg is missing: ./dev test installs it (apt-get ffmpeg)"
    code, err = await ffmpeg_publish(rtmp.url(0), seconds=2, binary=SYSTEM_FFMPEG)
    assert code == 0, err
    rec = await _session_done(rtmp)
    assert rec.session.video_config is not None
    assert_h264_timing(rec, frames=60)


async def test_hevc_over_enhanced_rtmp(rtmp: Harness) -> None:
    code, err = await ffmpeg_publish(rtmp.url(0), seconds=2, video="libx265")
    assert code == 0, err
    rec = await _session_done(rtmp)
    v = rec.session.video_config
    assert v is not None
    assert (v.codec, v.width, v.height) == ("hevc", 640, 360)
    assert v.codec_string.startswith("hvc1.")
    assert len(rec.video) == 60
    assert rec.video[0].keyframe
    assert [p.dts_ms for p in rec.video] == sorted(p.dts_ms for p in rec.video)


@pytest.mark.parametrize("drop", ["-vn", "-an"])
async def test_audio_only_and_video_only(rtmp: Harness, drop: str) -> None:
    code, err = await ffmpeg_publish(rtmp.url(0), drop, seconds=2)
    assert code == 0, err
    rec = await _session_done(rtmp)
    if drop == "-vn":
        assert rec.session.video_config is None
        assert not rec.video
        assert rec.session.audio_config is not None
        assert len(rec.audio) > 80
    else:
        assert rec.session.audio_config is None
        assert not rec.audio
        assert len(rec.video) == 60


async def test_obs_style_app_and_key_fields(rtmp: Harness) -> None:
    """OBS: Server rtmp://HOST:1935/live, Stream Key KEY (sent as app and play path)."""
    url = f"rtmp://127.0.0.1:{rtmp.port}"
    code, err = await ffmpeg_publish(
        url, "-rtmp_app", "live", "-rtmp_playpath", rtmp.keys[1], seconds=1
    )
    assert code == 0, err
    rec = await _session_done(rtmp)
    assert rec.session.live_id == rtmp.live_ids[1]


async def test_key_carried_in_the_app_with_an_empty_stream_key(rtmp: Harness) -> None:
    """Server rtmp://HOST/live/KEY with an empty key field: the key arrives inside the app."""
    reader, writer, client = await handshaken(rtmp.port)
    try:
        client.connect(f"live/{rtmp.keys[2]}")
        client.publish_sequence("")
        client.publish(1, "")
        writer.write(client.data_to_send())
        statuses = await _read_statuses(reader, writer, client)
        assert "NetStream.Publish.Start" in statuses
    finally:
        writer.close()
    rec = await _session_done(rtmp)
    assert rec.session.live_id == rtmp.live_ids[2]


async def handshaken(
    port: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, RtmpClient]:
    """A TCP connection whose RTMP handshake is done (C2 sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = RtmpClient()
    writer.write(client.data_to_send())
    while not client.handshake.complete:
        data = await asyncio.wait_for(reader.read(65536), timeout=5)
        assert data, "server closed during the handshake"
        client.receive_data(data)
    writer.write(client.data_to_send())
    return reader, writer, client


async def _read_statuses(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: RtmpClient, wait: float = 3
) -> list[str]:
    """onStatus/_error codes the server sent, until it closes or ``wait`` seconds pass."""
    codes: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
        except TimeoutError:
            break
        if not data:
            codes.append("<closed>")
            break
        client.receive_data(data)
        writer.write(client.data_to_send())
        for msg in client.messages():
            args = getattr(msg, "arguments", ())
            for arg in args:
                if isinstance(arg, dict) and "code" in arg:
                    codes.append(str(arg["code"]))
        if any(c.startswith("NetStream.Publish.") for c in codes):
            break
    return codes


async def test_wrong_key_wrong_app_and_duplicate_publisher(rtmp: Harness) -> None:
    code, err = await ffmpeg_publish(
        f"rtmp://127.0.0.1:{rtmp.port}/live/not-a-key-{'x' * 20}", seconds=1
    )
    assert code != 0
    assert "invalid stream key" in err
    assert rtmp.metric("streamd_rtmp_rejections_total", reason="unknown_key") == 1

    code, err = await ffmpeg_publish(rtmp.url(0, app="vod"), seconds=1)
    assert code != 0
    assert rtmp.metric("streamd_rtmp_rejections_total", reason="wrong_app") == 1

    first = asyncio.create_task(ffmpeg_publish(rtmp.url(0), seconds=4))
    while not rtmp.received:
        await asyncio.sleep(0.05)
    code, err = await ffmpeg_publish(rtmp.url(0), seconds=1)
    assert code != 0
    assert "already has a publisher" in err
    assert rtmp.metric("streamd_rtmp_rejections_total", reason="already_publishing") == 1
    code, err = await first
    assert code == 0, err
    rec = await _session_done(rtmp)
    assert len(rtmp.received) == 1
    assert len(rec.video) == 120  # the first publisher lost nothing
    assert rec.max_arrival_gap() < 1.0


# --- hostile peers, each on its own connection while a real publisher streams ---


def _connect_then(build: Any) -> Any:
    def attack(client: RtmpClient) -> None:
        client.connect("live")
        build(client)

    return attack


ATTACKS: dict[str, tuple[Any, str]] = {
    "set_chunk_size_0x7fffffff": (
        lambda c: c.send_raw(2, 0, 1, 0, b"\x7f\xff\xff\xff"),
        "chunk_size_too_large",
    ),
    "csid_65599_flood": (
        lambda c: [c.send_raw(csid, 0, 8, 1, b"x" * 300) for csid in range(65599, 65299, -1)],
        "too_many_chunk_streams",
    ),
    "header_announcing_0xffffff_bytes": (
        lambda c: c.send_bytes(b"\x06" + bytes(3) + b"\xff\xff\xff\x09" + bytes(4)),
        "message_too_large",
    ),
    "stream_name_300_bytes": (
        _connect_then(lambda c: (c.publish_sequence("k"), c.publish(1, "k" * 300))),
        "name_too_long",
    ),
    "amf0_nested_10000_deep": (
        lambda c: c.send_raw(
            3, 0, 20, 0, b"\x02\x00\x07connect\x00" + bytes(8) + b"\x03\x00\x01k" * 10_000
        ),
        "amf_too_deep",
    ),
}


async def _run_attack(port: int, attack: Any) -> float:
    """Perform one attack after a real handshake; seconds until the server closed on us."""
    reader, writer, client = await handshaken(port)
    started = time.monotonic()
    attack(client)
    try:
        writer.write(client.data_to_send())
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout=10)
            if not data:
                return time.monotonic() - started
            client.receive_data(data)
            writer.write(client.data_to_send())
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    finally:
        writer.close()


async def _random_bytes_handshake(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    junk = random.Random(4).randbytes(4096)
    writer.write(b"\x16" + junk)  # a TLS ClientHello's first byte: version 0x16 is not RTMP
    try:
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def _slow_handshake(port: int) -> float:
    """C0 and C1 sent one byte per second: the handshake timeout must cut it off."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        for byte in b"\x03" + os.urandom(1536):
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(65536), timeout=1.0) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    finally:
        writer.close()
    raise AssertionError("a one-byte-per-second handshake was never cut off")


async def test_hostile_inputs_close_only_their_connection(
    rtmp: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = asyncio.create_task(ffmpeg_publish(rtmp.url(0), seconds=6))
    while not rtmp.received:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    with caplog.at_level(logging.WARNING, logger="ingest.server"):
        closed_after = await asyncio.gather(
            *(_run_attack(rtmp.port, make) for make, _ in ATTACKS.values()),
            _random_bytes_handshake(rtmp.port),
            _slow_handshake(rtmp.port),
        )
        code, err = await publisher
    assert code == 0, err

    names = [*ATTACKS, "random_bytes_handshake", "slow_handshake"]
    reasons = [why for _, why in ATTACKS.values()] + ["bad_version", "handshake_timeout"]
    for name, reason, seconds in zip(names, reasons, closed_after, strict=True):
        assert rtmp.metric("streamd_rtmp_rejections_total", reason=reason) == 1, name
        lines = [r for r in caplog.records if f"({reason})" in r.getMessage()]
        assert len(lines) == 1, (name, [r.getMessage() for r in lines])
        limit = HANDSHAKE_TIMEOUT + 2 if reason == "handshake_timeout" else 2.0
        assert seconds < limit, (name, seconds)

    rec = await _session_done(rtmp)
    assert len(rtmp.received) == 1
    assert len(rec.video) == 180  # every frame of the legitimate publisher arrived
    assert rec.max_arrival_gap() < 1.0
    assert rtmp.metric("streamd_rtmp_connections") == 0


async def test_rtmps(rtmp: Harness, tmp_path: Any) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tls = await rtmp.server.listen("127.0.0.1", 0, context)
    port = tls.sockets[0].getsockname()[1]
    # ffmpeg verifies the server certificate against the CA file we give it.
    url = f"rtmps://127.0.0.1:{port}/live/{rtmp.keys[0]}"
    code, err = await ffmpeg_publish(url, "-ca_file", str(cert), seconds=1)
    assert code == 0, err
    rec = await _session_done(rtmp)
    assert len(rec.video) == 30


async def test_a_stuck_consumer_loses_packets_not_the_publisher(rtmp: Harness) -> None:
    collect = rtmp.server.on_session
    assert collect is not None

    def with_stuck_consumer(session: PublishSession) -> None:
        collect(session)
        session.subscribe("stuck", maxsize=10)  # never read

    rtmp.server.on_session = with_stuck_consumer
    code, err = await ffmpeg_publish(rtmp.url(0), seconds=2)
    assert code == 0, err
    rec = await _session_done(rtmp)
    assert len(rec.video) == 60  # the reading consumer got everything
    assert rec.max_arrival_gap() < 1.0
    assert rtmp.metric("streamd_ingest_consumer_drops_total", consumer="stuck") > 100


async def test_connection_limit_and_idle_timeout(rtmp: Harness) -> None:
    limit = rtmp.server.limits.max_connections
    conns = [await asyncio.open_connection("127.0.0.1", rtmp.port) for _ in range(limit)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", rtmp.port)
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed at once
        writer.close()
        assert rtmp.metric("streamd_rtmp_rejections_total", reason="too_many_connections") == 1
    finally:
        for _, w in conns:
            w.close()
    for _ in range(100):
        if rtmp.metric("streamd_rtmp_connections") == 0:
            break
        await asyncio.sleep(0.05)

    # A publisher that goes silent is dropped after the idle timeout, and its live ends.
    reader, writer, client = await handshaken(rtmp.port)
    try:
        client.connect("live")
        client.publish_sequence(rtmp.keys[1])
        client.publish(1, rtmp.keys[1])
        writer.write(client.data_to_send())
        assert "NetStream.Publish.Start" in await _read_statuses(reader, writer, client)
        started = time.monotonic()
        await asyncio.wait_for(reader.read(), timeout=15)  # returns at EOF: the server hung up
        waited = time.monotonic() - started
    finally:
        writer.close()
    assert rtmp.server.limits.idle_timeout - 1 <= waited <= rtmp.server.limits.idle_timeout + 3
    assert rtmp.metric("streamd_rtmp_rejections_total", reason="idle_timeout") == 1
    rec = await _session_done(rtmp)
    assert rec.session.ended


async def test_unsupported_codec_is_refused_with_a_status_and_a_log_line(
    rtmp: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "3",
        "-c:a", "adpcm_swf", "-f", "flv", rtmp.url(0),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ingest.server"):
        await asyncio.wait_for(proc.communicate(), timeout=30)
        rec = await _session_done(rtmp)
    assert rec.session.ended
    assert not rec.audio
    assert rtmp.metric("streamd_rtmp_rejections_total", reason="unsupported_codec") == 1
    lines = [r.getMessage() for r in caplog.records if "refusing publisher" in r.getMessage()]
    assert len(lines) == 1
    assert "unsupported audio codec" in lines[0]


async def test_reads_are_coalesced_for_busy_publishers_without_losing_frames(rtmp: Harness) -> None:
    cbr = ["-b:v", "4M", "-minrate", "4M", "-maxrate", "4M", "-bufsize", "1M"]
    publisher = asyncio.create_task(
        ffmpeg_publish(rtmp.url(0), *cbr, "-x264-params", "nal-hrd=cbr", seconds=4)
    )
    low_waters: set[int] = set()
    while not publisher.done():
        low_waters |= {c._low_water for c in rtmp.server.connections}
        await asyncio.sleep(0.1)
    code, err = await publisher
    assert code == 0, err
    rec = await _session_done(rtmp)
    assert len(rec.video) == 120
    # ~500 kB/s * 100 ms: the kernel wakes us per ~50 kB instead of per TCP segment.
    assert max(low_waters) > 8 * 1024
    assert rec.max_arrival_gap() < 1.0


async def _start_publishing(
    rtmp: Harness, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: RtmpClient
) -> RtmpProtocol:
    """Publish to the first live like FFmpeg (chunk size 4096); the server's protocol object."""
    client.connect("live")
    client.publish_sequence(rtmp.keys[0])
    client.publish(1, rtmp.keys[0])
    writer.write(client.data_to_send())
    assert "NetStream.Publish.Start" in await _read_statuses(reader, writer, client)
    client.set_chunk_size(4096)
    (conn,) = rtmp.server.connections
    return conn


async def test_read_coalescing_never_holds_back_the_tail_of_a_keyframe(
    rtmp: Harness,
) -> None:
    """Coalescing leaves up to a low-water mark of bytes in the kernel, but a keyframe starts
    a segment: its tail must not wait there for later bytes. The publisher sends a keyframe in
    two writes, the second below the mark, then nothing. Without the keyframe rule its tail
    would stay in the kernel until a tick found the publisher idle (1-2 s)."""
    rtmp.server.coalesce_s = 0.5  # the mark goes to its cap
    reader, writer, client = await handshaken(rtmp.port)
    try:
        conn = await _start_publishing(rtmp, reader, writer, client)
        inter = b"\x27\x01\x00\x00\x00" + bytes(8000)  # AVC inter frames, ~240 kB/s
        ts = 0
        for _ in range(200):  # until a tick measured the rate and raised the mark
            client.send_video(1, ts, inter)
            writer.write(client.data_to_send())
            ts += 33
            await asyncio.sleep(0.033)
            if conn._low_water == MAX_LOW_WATER:
                break
        assert conn._low_water == MAX_LOW_WATER
        client.send_video(1, ts, b"\x17\x01\x00\x00\x00" + bytes(100_000))
        data = client.data_to_send()
        writer.write(data[:70_000])  # over the mark: wakes the server mid-keyframe
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(data[70_000:])  # ~30 kB, under the mark; nothing follows
        sent = time.monotonic()
        rec = rtmp.received[0]
        for _ in range(60):
            if any(p.keyframe for p in rec.video):
                break
            await asyncio.sleep(0.05)
        arrived = next(t for t, p in rec.items if isinstance(p, MediaPacket) and p.keyframe)
        assert arrived - sent < 0.5
    finally:
        writer.close()


async def test_read_coalescing_takes_a_due_keyframe_and_the_frame_before_it(
    rtmp: Harness,
) -> None:
    """Keyframes can be smaller than the low-water mark (OBS-like 1080p at 4.5 Mbit/s sends
    ~44 kB keyframes; 100 ms of it is ~56 kB), and the frames just before one close a
    segment. Here frames are 12 kB, keyframes 40 kB, one every 2.97 s of media time, and the
    mark is at its 64 kB cap. Once the next keyframe is due the mark is half a frame: a frame
    then arrives at once, and so does the keyframe after it (52 kB in all, under the cap,
    nothing after them). Without the rule both would wait in the kernel until a tick found
    the publisher idle."""
    rtmp.server.coalesce_s = 0.5  # the mark goes to its cap
    reader, writer, client = await handshaken(rtmp.port)

    def frame(dts: int, key: bool = False) -> None:
        head = b"\x17\x01\x00\x00\x00" if key else b"\x27\x01\x00\x00\x00"
        client.send_video(1, dts, head + bytes(40_000 if key else 12_000))
        writer.write(client.data_to_send())

    async def arrival(dts: int) -> float:
        rec = rtmp.received[0]
        for _ in range(60):
            if rec.video and rec.video[-1].dts_ms >= dts:
                break
            await asyncio.sleep(0.05)
        return next(t for t, p in rec.items if isinstance(p, MediaPacket) and p.dts_ms == dts)

    try:
        conn = await _start_publishing(rtmp, reader, writer, client)
        for dts in range(0, 4000, 33):  # keyframes at 0 and 2970 ms: the interval is known
            frame(dts, key=dts % 2970 == 0)
        dts = 4000
        for _ in range(200):  # ~360 kB/s until a tick raised the mark; still mid-interval
            frame(dts)
            dts += 4
            await asyncio.sleep(0.033)
            if conn._low_water == MAX_LOW_WATER:
                break
        assert conn._low_water == MAX_LOW_WATER
        assert dts < 2970 + 2970 - 1000  # not yet inside the last 2 * coalesce_s
        for dts in range(5000, 5300, 33):  # 120 kB: over the mark, read, and inside the window
            frame(dts)
        await writer.drain()
        await asyncio.sleep(0.2)
        assert conn._low_water == 6000  # half a frame
        frame(5400)
        sent = time.monotonic()
        assert await arrival(5400) - sent < 0.5
        frame(5940, key=True)  # the keyframe that is due; then nothing
        sent = time.monotonic()
        assert await arrival(5940) - sent < 0.5
    finally:
        writer.close()


def _avc_sequence_header(name: str) -> bytes:
    """The AVC sequence header tag body of a sample file in tests/data/flv."""
    data = (DATA_DIR / name).read_bytes()
    offset = int.from_bytes(data[5:9], "big") + 4
    while offset + 11 <= len(data):
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        body = data[offset + 11 : offset + 11 + size]
        if data[offset] == 9 and body[:2] == b"\x17\x00":
            return body
        offset += 15 + size
    raise AssertionError(f"no AVC sequence header in {name}")


async def test_packets_of_one_read_keep_their_order_with_configs_and_errors(
    rtmp: Harness,
) -> None:
    """The server hands a read's packets to the consumers in one batch. In one write: a
    configuration, frames, a new configuration, more frames, then a chunk header the protocol
    refuses. The consumer gets everything before the error in the order it was sent, and the
    session ends."""
    reader, writer, client = await handshaken(rtmp.port)
    try:
        await _start_publishing(rtmp, reader, writer, client)
        first = _avc_sequence_header("h264_aac.flv")
        second = _avc_sequence_header("h264_interlaced_crop.flv")
        client.send_video(1, 0, first)
        for i in range(3):
            client.send_video(1, i * 33, b"\x27\x01\x00\x00\x00" + bytes([i]) * 900)
            client.send_audio(1, i * 21, b"\xaf\x01" + bytes([i]) * 300)
        client.send_video(1, 99, second)
        for i in range(3, 5):
            client.send_video(1, i * 33, b"\x17\x01\x00\x00\x00" + bytes([i]) * 5000)
        # fmt 2 header on a chunk stream never seen: bad_chunk_header, the connection closes.
        writer.write(client.data_to_send() + b"\x9f\x00\x00\x00")
        rec = await _session_done(rtmp)
    finally:
        writer.close()
    kinds = [
        (i.kind, i.dts_ms, i.keyframe, i.data[:1]) if isinstance(i, MediaPacket) else i.codec_string
        for _, i in rec.items
    ]
    first_config, second_config = (i for _, i in rec.items if isinstance(i, VideoConfig))
    assert first_config != second_config
    assert kinds == [
        first_config.codec_string,
        ("video", 0, False, b"\x00"), ("audio", 0, True, b"\x00"),
        ("video", 33, False, b"\x01"), ("audio", 21, True, b"\x01"),
        ("video", 66, False, b"\x02"), ("audio", 42, True, b"\x02"),
        second_config.codec_string,
        ("video", 99, True, b"\x03"), ("video", 132, True, b"\x04"),
    ]  # fmt: skip
    assert rec.session.ended
    assert rtmp.metric("streamd_rtmp_rejections_total", reason="bad_chunk_header") == 1
