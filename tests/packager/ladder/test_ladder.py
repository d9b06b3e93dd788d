"""The transcoded ladder on real media: ffmpeg-made sources parsed by ingest, real PyAV/libx264.

Every rung's output is decoded back with PyAV from its own avcC; keyframes are checked against
the source's keyframe timestamps (the alignment rule of packager/types.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
from fractions import Fraction
from pathlib import Path

import asyncpg
import m3u8
import pytest
from prometheus_client import CollectorRegistry

from config.settings import DEFAULT_LADDER
from db import lives, users
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import RtmpLimits, RtmpServer
from ingest.session import PublishSession
from media.avc import AvcDecoderConfigurationRecord
from media.types import MediaPacket, VideoConfig
from packager.hls.segmenter import MAX_OVERSHOOT_MS
from packager.ladder.codec import (
    Decimator,
    output_rate,
    rung_size,
    runs_for_source,
    split_annexb,
)
from packager.ladder.ladder import Ladder, LadderMetrics
from packager.ladder.shedding import RungLoad, Shedder
from packager.metrics import PackagerMetrics
from packager.options import to_rungs
from packager.pipeline import LivePipeline, OutputCallback
from packager.storage.local import LocalStorage
from packager.types import Rung, RungPaused
from tests.flv_samples import DATA_DIR
from tests.packager.hls_harness import open_segment
from tests.packager.hls_helpers import demux, make_media, packager_options
from tests.packager.ladder.ladder_samples import (
    FFMPEG,
    POLICY,
    PRESET,
    Collected,
    Source,
    assert_timing,
    decode_rung,
    feed,
    make_flv,
    nal_types,
    read_source,
)

DEFAULT_RUNGS = to_rungs(DEFAULT_LADDER)
R240 = Rung("240p", 426, 240, 30, 400_000)
R180 = Rung("180p", 320, 180, 30, 250_000)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ladder-media")


@pytest.fixture(scope="session")
def src_720p(media_dir: Path) -> Source:
    return read_source(make_flv(media_dir / "720p30.flv", size="1280x720", seconds=6))


@pytest.fixture(scope="session")
def src_360p(media_dir: Path) -> Source:
    return read_source(make_flv(media_dir / "360p30.flv", seconds=6))


@pytest.fixture(scope="session")
def src_360p60(media_dir: Path) -> Source:
    return read_source(make_flv(media_dir / "360p60.flv", rate=60, seconds=4))


@pytest.fixture(scope="session")
def src_hevc(media_dir: Path) -> Source:
    return read_source(make_flv(media_dir / "hevc.flv", codec="libx265", seconds=3, gop_s=1))


async def run_ladder(
    source: Source, rungs: tuple[Rung, ...], registry: CollectorRegistry | None = None
) -> tuple[Ladder, Collected]:
    out = Collected()
    metrics = LadderMetrics(registry or CollectorRegistry())
    ladder = Ladder(rungs, PRESET, on_output=out, loop=asyncio.get_running_loop(),
                    policy=POLICY, metrics=metrics, name="test")  # fmt: skip
    ladder.start(source.config)
    await feed(ladder, source.packets)
    ladder.end()
    await asyncio.wait_for(ladder.wait_closed(), timeout=60)
    return ladder, out


def check_rung(
    out: Collected, source: Source, name: str, size: tuple[int, int], frames: int
) -> list[MediaPacket]:
    """The properties every rung must have; returns its packets."""
    items = out.items[name]
    assert isinstance(items[0], VideoConfig), "a rung starts with its VideoConfig"
    config = items[0]
    assert (config.codec, config.width, config.height) == ("h264", *size)
    record = AvcDecoderConfigurationRecord.parse(config.extradata)
    assert config.codec_string == f"avc1.{bytes(config.extradata[1:4]).hex()}"
    assert config.codec_string.startswith("avc1.64")  # High profile
    assert record.nal_length_size == config.nal_length_size == 4
    packets = out.packets(name)
    assert len(packets) == frames
    # AVCC with 4-byte lengths, no in-band parameter sets (they are in the avcC).
    for packet in packets:
        assert not {7, 8} & set(nal_types(packet))
    # IDRs exactly at the source's keyframes, and the keyframe flag means IDR.
    idr = [p.pts_ms for p in packets if 5 in nal_types(p)]
    assert [p.pts_ms for p in packets if p.keyframe] == idr == source.keyframe_pts
    assert packets[0].keyframe
    assert_timing(packets)
    decoded = decode_rung(config, packets)
    assert len(decoded) == frames
    assert {(f.width, f.height) for f in decoded} == {size}
    return packets


async def test_720p_source_runs_480p_and_360p(
    src_720p: Source, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO, logger="packager.ladder.ladder"):
        ladder, out = await run_ladder(src_720p, DEFAULT_RUNGS, registry)
    assert set(out.items) == {"480p", "360p"}  # 720p is not above a 720p source
    assert "rungs 480p 854x480@30, 360p 640x360@30 (skipped: 720p)" in caplog.text
    assert out.threads == {threading.get_ident()}, "on_output runs on the event loop thread"
    frames = len(src_720p.packets)
    for name, size in (("480p", (854, 480)), ("360p", (640, 360))):
        packets = check_rung(out, src_720p, name, size, frames)
        # 30 fps in, 30 fps out, on the source's own timestamps.
        assert [p.pts_ms for p in packets] == sorted(p.pts_ms for p in src_720p.packets)
        assert all(p.dts_ms == p.pts_ms for p in packets)  # no B-frames in rungs
        assert registry.get_sample_value("streamd_ladder_rungs_active", {"rung": name}) == 0
    assert ladder.dropped == {}
    assert registry.get_sample_value("streamd_ladder_queue_depth") == 0


async def test_60fps_source_gives_30fps_rungs(src_360p60: Source) -> None:
    assert len(src_360p60.packets) == 240
    _, out = await run_ladder(src_360p60, (R240,))
    packets = check_rung(out, src_360p60, "240p", (426, 240), 120)
    steps = {b.pts_ms - a.pts_ms for a, b in itertools.pairwise(packets)}
    assert steps <= {33, 34}
    assert out.configs("240p")[0].frame_rate == 30


async def test_hevc_source_gives_h264_rungs(src_hevc: Source) -> None:
    assert src_hevc.config.codec == "hevc"
    _, out = await run_ladder(src_hevc, (R240, R180))
    for rung in (R240, R180):
        check_rung(out, src_hevc, rung.name, (rung.width, rung.height), len(src_hevc.packets))


async def test_av1_source_from_the_ingest_samples() -> None:
    """AV1 (decoded by dav1d) works as well; the committed 320x240 ingest sample suffices,
    and being 4:3 it keeps its aspect ratio in the rung."""
    source = read_source(DATA_DIR / "av1.flv")
    assert (source.config.codec, source.config.width) == ("av1", 320)
    _, out = await run_ladder(source, (R180,))
    check_rung(out, source, "180p", (240, 180), len(source.packets))


async def test_shedding_under_overload_then_restoring(
    src_360p: Source, caplog: pytest.LogCaptureFixture
) -> None:
    """A tiny queue and a burst of packets stand in for a machine that cannot keep up; a fake
    clock makes the cool-down deterministic."""
    now = [1000.0]
    registry = CollectorRegistry()
    out = Collected()
    policy = dataclasses.replace(POLICY, queue_packets=6, shed_after_s=0, settle_s=1,
                                 restore_after_s=5)  # fmt: skip
    ladder = Ladder(
        (R240, R180),
        PRESET,
        on_output=out,
        loop=asyncio.get_running_loop(),
        metrics=LadderMetrics(registry),
        policy=policy,
        clock=lambda: now[0],
    )
    ladder.start(src_360p.config)
    keys = src_360p.keyframe_pts
    first_gop = [p for p in src_360p.packets if p.dts_ms < 2000]
    rest = [p for p in src_360p.packets if p.dts_ms >= 2000]
    assert rest[0].keyframe

    with caplog.at_level(logging.WARNING, logger="packager.ladder.ladder"):
        for packet in first_gop:  # all at once: far faster than real time
            ladder.push(packet)
        for _ in range(2000):
            if ladder.queue_depth == 0:
                break
            await asyncio.sleep(0.005)
    assert registry.get_sample_value("streamd_ladder_rungs_shed_total", {"rung": "240p"}) == 1
    assert registry.get_sample_value("streamd_ladder_rungs_shed_total", {"rung": "180p"}) is None
    assert ladder.dropped["overload"] > 0, "push() dropped instead of blocking"
    overload = {"reason": "overload"}
    assert registry.get_sample_value("streamd_ladder_frames_dropped_total", overload) > 0
    assert "shedding rung 240p" in caplog.text

    now[0] += 10  # calm for longer than the cool-down
    await feed(ladder, rest, max_queued=1)
    ladder.end()
    await asyncio.wait_for(ladder.wait_closed(), timeout=60)
    assert registry.get_sample_value("streamd_ladder_rungs_restored_total", {"rung": "240p"}) == 1

    # The shed rung came back at the first source keyframe after the calm period: its first
    # packet from then on is an IDR exactly there, and all later source frames follow.
    restored = [p for p in out.packets("240p") if p.pts_ms >= rest[0].pts_ms]
    assert restored[0].keyframe and restored[0].pts_ms == keys[1]
    assert [p.pts_ms for p in restored] == sorted(p.pts_ms for p in rest)
    assert len(out.configs("240p")) == 1, "an identical VideoConfig is not re-sent"
    # The shed rung said so once, after its last packet before the hole: its rendition closes
    # there and marks the restored segment as a discontinuity.
    items = out.items["240p"]
    paused = [i for i, item in enumerate(items) if isinstance(item, RungPaused)]
    assert len(paused) == 1
    assert items.index(restored[0]) > paused[0]
    assert all(p.pts_ms < rest[0].pts_ms for p in items[: paused[0]] if isinstance(p, MediaPacket))
    assert not any(isinstance(item, RungPaused) for item in out.items["180p"])
    for name in ("240p", "180p"):
        packets = out.packets(name)
        assert {p.pts_ms for p in packets if p.keyframe} <= set(keys)
        assert_timing(packets)
        assert len(decode_rung(out.configs(name)[0], packets)) == len(packets)
    # The rung that was never shed encoded every frame it was given after the burst.
    assert [p.pts_ms for p in out.packets("180p") if p.pts_ms >= rest[0].pts_ms] == [
        p.pts_ms for p in restored
    ]


async def test_a_restored_rung_marks_its_hole_with_one_discontinuity(
    media_dir: Path, tmp_path: Path
) -> None:
    """Through the pipeline and real storage: a rung shed for a while and restored has a hole
    in media time; its playlist closes the segment before the hole at its last frame and
    marks the one after with exactly one EXT-X-DISCONTINUITY (the source's has none), and no
    segment stretches over the hole. Overload is a burst into a tiny queue, the cool-down a
    fake clock, as in the shedding test above."""
    video, audio, packets = demux(make_media(media_dir / "av_10s.mp4", seconds=10, gop=60))
    now = [1000.0]
    loop = asyncio.get_running_loop()
    policy = dataclasses.replace(POLICY, queue_packets=6, shed_after_s=0, settle_s=1,
                                 restore_after_s=5)  # fmt: skip
    ladders: list[Ladder] = []

    def ladder_factory(on_output: OutputCallback, thumbnailer: object) -> Ladder:
        ladder = Ladder((R180,), PRESET, on_output=on_output, loop=loop, policy=policy,
                        clock=lambda: now[0], name="test")  # fmt: skip
        ladders.append(ladder)
        return ladder

    options = packager_options(hls_window=20)
    pipeline = LivePipeline(
        1, "b1", options, LocalStorage(tmp_path), PackagerMetrics(CollectorRegistry()),
        ladder_factory=ladder_factory,
    )  # fmt: skip

    async def paced(items: list[MediaPacket]) -> None:
        for item in items:  # one at a time: an empty queue is the calm a restore waits for
            while ladders[0].queue_depth >= 1:
                await asyncio.sleep(0.002)
            pipeline.feed(item)

    pipeline.feed(video)
    pipeline.feed(audio)
    await paced([p for p in packets if p.dts_ms < 2000])
    for packet in [p for p in packets if 2000 <= p.dts_ms < 4000]:
        pipeline.feed(packet)  # all at once: the ladder falls behind and sheds its rung
    for _ in range(2000):
        if ladders[0].queue_depth == 0:
            break
        await asyncio.sleep(0.005)
    assert ladders[0].rungs[0].load.sheds == 1
    now[0] += 10  # calm for longer than the cool-down: restored at the keyframe at 4 s
    await paced([p for p in packets if p.dts_ms >= 4000])
    pipeline.end_session()
    await pipeline.finish()
    assert ladders[0].rungs[0].load.restores == 1

    base = tmp_path / "hls" / "1" / "b1"
    source_text = (base / "source" / "live.m3u8").read_text()
    assert "#EXT-X-DISCONTINUITY\n" not in source_text
    text = (base / "180p" / "live.m3u8").read_text()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1, text
    playlist = m3u8.loads(text)
    assert playlist.target_duration == 2
    longest = options.target_duration + MAX_OVERSHOOT_MS / 1000
    assert all(s.duration <= longest for s in playlist.segments)
    marked = [i for i, s in enumerate(playlist.segments) if s.discontinuity]
    assert len(marked) == 1 and marked[0] > 0
    init = (base / "180p" / "init.mp4").read_bytes()
    decoded = [open_segment(init, (base / "180p" / s.uri).read_bytes()) for s in playlist.segments]
    assert all(d.key_first for d in decoded)
    before, after = decoded[marked[0] - 1], decoded[marked[0]]
    # It starts where a source segment starts: the first source keyframe after the calm.
    src_init = (base / "source" / "init.mp4").read_bytes()
    source = m3u8.loads(source_text)
    starts = [
        open_segment(src_init, (base / "source" / s.uri).read_bytes()).first_time
        for s in source.segments
    ]
    assert any(3.9 < t < 4.2 and t == pytest.approx(after.first_time, abs=0.002) for t in starts)
    hole = after.first_time - (before.first_time + playlist.segments[marked[0] - 1].duration)
    assert hole > 1.5  # the shed GOP (2-4 s) is missing, not stretched into a segment
    assert sum(s.duration for s in source.segments) == pytest.approx(10, abs=0.2)


async def test_a_short_burst_drops_packets_but_sheds_nothing(src_360p: Source) -> None:
    """Overload must last `shed_after_s` before a rung goes: a burst (frozen clock) only
    costs the packets that did not fit, and the ladder resumes at the next keyframe."""
    registry = CollectorRegistry()
    out = Collected()
    ladder = Ladder(
        (R180,),
        PRESET,
        on_output=out,
        loop=asyncio.get_running_loop(),
        metrics=LadderMetrics(registry),
        policy=dataclasses.replace(POLICY, queue_packets=6),
        clock=lambda: 1000.0,
    )
    ladder.start(src_360p.config)
    first_gop = [p for p in src_360p.packets if p.dts_ms < 2000]
    for packet in first_gop:
        ladder.push(packet)
    await feed(ladder, [p for p in src_360p.packets if p.dts_ms >= 2000], max_queued=3)
    ladder.end()
    await asyncio.wait_for(ladder.wait_closed(), timeout=60)
    assert registry.get_sample_value("streamd_ladder_rungs_shed_total", {"rung": "180p"}) is None
    assert ladder.dropped["overload"] == len(first_gop) - 6
    packets = out.packets("180p")
    later = [p.pts_ms for p in src_360p.packets if p.dts_ms >= 2000]
    assert [p.pts_ms for p in packets][-len(later) :] == sorted(later)
    assert_timing(packets)


async def test_a_new_source_config_switches_decoders(src_360p: Source, src_hevc: Source) -> None:
    """A new sequence header mid-stream (here H.264 -> HEVC, same size): the ladder drains the
    old decoder, starts the new one at its first keyframe, and the rung goes on."""
    out = Collected()
    ladder = Ladder((R180,), PRESET, on_output=out, loop=asyncio.get_running_loop(), policy=POLICY)
    ladder.start(src_360p.config)
    first = src_360p.packets[:60]
    await feed(ladder, first)
    shift = 10_000  # the pipeline keeps one timeline across configs
    later = [
        dataclasses.replace(p, dts_ms=p.dts_ms + shift, pts_ms=p.pts_ms + shift)
        for p in src_hevc.packets
    ]
    ladder.start(src_hevc.config)
    await feed(ladder, later)
    ladder.end()
    await asyncio.wait_for(ladder.wait_closed(), timeout=60)
    packets = out.packets("180p")
    assert len(packets) == len(first) + len(later)
    expected_keys = [p.pts_ms for p in first if p.keyframe] + [
        p.pts_ms for p in later if p.keyframe
    ]
    assert [p.pts_ms for p in packets if p.keyframe] == expected_keys
    assert len(out.configs("180p")) == 1  # same size: the same encoder carries on
    assert_timing(packets)
    assert len(decode_rung(out.configs("180p")[0], packets)) == len(packets)


async def test_bad_packets_are_counted_and_skipped(
    src_360p: Source, caplog: pytest.LogCaptureFixture
) -> None:
    packets = list(src_360p.packets[:90])
    # A NAL length prefix larger than the packet: FFmpeg's h264 decoder rejects it.
    packets[45] = MediaPacket("video", packets[45].dts_ms, packets[45].pts_ms, False,
                              b"\x7f\xff\xff\xff\x41\x9a")  # fmt: skip
    source = Source(src_360p.config, tuple(packets))
    with caplog.at_level(logging.WARNING, logger="packager.ladder.ladder"):
        ladder, out = await run_ladder(source, (R180,))
    assert ladder.dropped["bad_packet"] == 1
    assert "undecodable packet" in caplog.text
    # Frames after it still come out (the decoder conceals the missing reference).
    assert len(out.packets("180p")) >= 85


async def test_end_and_wait_closed_without_start_or_rungs(src_360p: Source) -> None:
    loop = asyncio.get_running_loop()
    out = Collected()
    idle = Ladder(DEFAULT_RUNGS, PRESET, on_output=out, loop=loop, policy=POLICY)
    idle.end()
    idle.end()  # idempotent
    await asyncio.wait_for(idle.wait_closed(), timeout=5)

    # A 360p source is not above any rung of the default ladder: nothing to do.
    small = Ladder(DEFAULT_RUNGS, PRESET, on_output=out, loop=loop, policy=POLICY)
    small.start(src_360p.config)
    for packet in src_360p.packets[:10]:
        small.push(packet)
    small.end()
    await asyncio.wait_for(small.wait_closed(), timeout=5)
    assert not out.items


def test_rung_geometry() -> None:
    def config(width: int, height: int) -> VideoConfig:
        return VideoConfig("h264", b"", width, height, "avc1.640028", 100, 40, 8, 1)

    assert [r.name for r in DEFAULT_RUNGS if runs_for_source(r, config(1920, 1080))] == [
        "720p",
        "480p",
        "360p",
    ]
    assert [r.name for r in DEFAULT_RUNGS if runs_for_source(r, config(1280, 720))] == [
        "480p",
        "360p",
    ]
    # Portrait: the short side (width) decides, and the rung's height becomes its width.
    assert [r.name for r in DEFAULT_RUNGS if runs_for_source(r, config(720, 1280))] == [
        "480p",
        "360p",
    ]
    assert rung_size(DEFAULT_RUNGS[1], 1920, 1080) == (854, 480)
    assert rung_size(DEFAULT_RUNGS[1], 1080, 1920) == (480, 854)
    assert rung_size(DEFAULT_RUNGS[0], 1440, 1080) == (960, 720)  # 4:3 keeps its aspect
    assert rung_size(DEFAULT_RUNGS[2], 2560, 1080) == (854, 360)  # 21:9, even width


@pytest.mark.parametrize(
    ("fps", "known", "kept_per_second"),
    [(60, True, 30), (50, True, 25), (40, True, 20), (30, True, 30), (25, True, 25),
     (60, False, 30), (50, False, 30), (30, False, 30), (25, False, 25)],
)  # fmt: skip
def test_decimator_caps_the_frame_rate(fps: int, known: bool, kept_per_second: int) -> None:
    source = VideoConfig(
        "h264", b"", 640, 360, "avc1.640028", 100, 40, 8, 1, Fraction(fps) if known else None
    )
    rate = output_rate(R240, source)
    assert rate == (kept_per_second if known else 30)
    decimator = Decimator(rate)
    pts = [round(i * 1000 / fps) for i in range(fps * 4)]
    kept = [p for p in pts if decimator.keep(p, keyframe=False)]
    assert len(kept) == kept_per_second * 4
    if known:  # evenly spaced, up to millisecond rounding
        assert (
            max(b - a for a, b in itertools.pairwise(kept))
            - min(b - a for a, b in itertools.pairwise(kept))
            <= 1
        )


def test_decimator_never_drops_a_keyframe() -> None:
    decimator = Decimator(30)
    pts = [round(i * 1000 / 60) for i in range(240)]
    odd_key = pts[61]  # a keyframe off the 30 fps grid
    kept = [p for p in pts if decimator.keep(p, keyframe=p == odd_key)]
    assert odd_key in kept
    assert abs(len(kept) - 120) <= 1


def test_split_annexb_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\x64\x00" + b"\x00\x00\x01\x68\xee\x00\x00\x00\x00\x01\x65\x88"
    assert split_annexb(stream) == [b"\x67\x64", b"\x68\xee", b"\x65\x88"]


async def test_ladder_behind_a_real_rtmp_publish(database_url: str) -> None:
    """The production ingest path (gate, RtmpServer, session fan-out) feeding a ladder, with
    ffmpeg publishing live (-re) as OBS would."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    owner = await users.create(
        pool, username="streamer", email="s@example.com", password_hash="x", role="creator"
    )
    live = await lives.create(pool, user_id=owner["id"], title="ladder")
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    out = Collected()
    configs: list[VideoConfig] = []
    source: list[MediaPacket] = []
    ladders: list[tuple[Ladder, asyncio.Task[None]]] = []

    def on_session(session: PublishSession) -> None:
        ladder = Ladder((R240,), PRESET, on_output=out, loop=asyncio.get_running_loop(),
                        policy=POLICY, name="rtmp")  # fmt: skip
        sub = session.subscribe("ladder")

        async def consume() -> None:
            async for item in sub:
                if isinstance(item, VideoConfig):
                    configs.append(item)
                    ladder.start(item)
                elif isinstance(item, MediaPacket) and item.kind == "video":
                    source.append(item)
                    ladder.push(item)
            ladder.end()

        ladders.append((ladder, asyncio.get_running_loop().create_task(consume())))

    server = RtmpServer(
        gate, IngestMetrics(CollectorRegistry()), RtmpLimits(idle_timeout=5), on_session
    )
    await server.listen("127.0.0.1", 0)
    try:
        url = f"rtmp://127.0.0.1:{server.ports()[0]}/live/{live['stream_key']}"
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "3",
            "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2",
            "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
            "-f", "flv", url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
        for _ in range(200):
            if ladders and ladders[0][1].done():
                break
            await asyncio.sleep(0.05)
        ladder, _task = ladders[0]
        await asyncio.wait_for(ladder.wait_closed(), timeout=30)
    finally:
        await server.close()
        await gate.close()
        await pool.close()

    assert len(source) == 90
    published = Source(configs[0], tuple(source))
    assert len(published.keyframe_pts) == 3
    check_rung(out, published, "240p", (426, 240), 90)


def test_shedder_waits_for_sustained_overload_then_sheds_the_costliest() -> None:
    # Behind: >= 50 packets for 2 s.
    shedder = Shedder(dataclasses.replace(POLICY, queue_packets=100))
    big, small = RungLoad("720p", 3, 10.0, "active"), RungLoad("360p", 1, 10.0, "active")
    rungs = [big, small]
    assert shedder.tick(0.0, 60, rungs, None) == (None, None)
    assert shedder.tick(1.0, 40, rungs, None) == (None, None)  # a hiccup: the clock restarts
    assert shedder.tick(1.5, 60, rungs, None) == (None, None)
    assert shedder.tick(3.4, 65, rungs, None) == (None, None)
    assert shedder.tick(3.5, 70, rungs, None) == (big, None)  # 2 s behind: the costliest goes
    assert big.state == "shed" and big.sheds == 1
    assert shedder.tick(5.0, 90, rungs, None) == (None, None)  # settling
    assert shedder.tick(7.0, 60, rungs, None) == (None, None)  # the backlog shrinks: it worked
    assert shedder.tick(8.0, 75, rungs, None) == (small, None)  # growing again after 3 s
    assert shedder.tick(20.0, 99, rungs, None) == (None, None)  # nothing left to shed


def test_shedder_restores_one_rung_per_calm_period_at_keyframes() -> None:
    shedder = Shedder(dataclasses.replace(POLICY, queue_packets=100, shed_after_s=0, settle_s=0))
    big, small = RungLoad("720p", 3, 10.0, "active"), RungLoad("360p", 1, 10.0, "active")
    rungs = [big, small]
    assert shedder.tick(0.0, 50, rungs, None) == (big, None)
    assert shedder.tick(1.0, 60, rungs, None) == (small, None)
    assert shedder.tick(2.0, 15, rungs, 2000) == (None, None)  # not calm yet (over 10 %)
    assert shedder.tick(12.0, 0, rungs, None) == (None, None)  # calm long enough, no keyframe
    assert shedder.tick(12.1, 0, rungs, 12_000) == (None, small)  # last shed, first back
    assert (small.state, small.start_from, small.restores) == ("waiting", 12_000, 1)
    assert shedder.tick(20.0, 0, rungs, 20_000) == (None, None)  # the next waits 10 s more
    assert shedder.tick(22.2, 0, rungs, 22_000) == (None, big)


def test_shedder_backs_off_a_flapping_rung() -> None:
    policy = dataclasses.replace(POLICY, queue_packets=100, shed_after_s=0, settle_s=0)
    shedder = Shedder(policy)
    rung = RungLoad("720p", 3, policy.restore_after_s, "active")
    cooldowns = []
    now = 0.0
    for _ in range(4):
        assert shedder.tick(now, 90, [rung], None) == (rung, None)
        cooldowns.append(rung.cooldown)
        now += rung.cooldown
        assert shedder.tick(now, 0, [rung], int(now * 1000)) == (None, rung)
        rung.state = "active"
        now += 5  # shed again soon after each restore
    assert cooldowns == [10, 20, 40, 80]
    now += policy.stable_s  # ran long enough: back to the base cool-down
    shedder.tick(now, 90, [rung], None)
    assert rung.cooldown == 10
    off = Shedder(dataclasses.replace(POLICY, shedding=False))
    assert off.tick(0.0, 10**6, [rung], None) == (None, None)
