"""The packager end to end: ffmpeg publishes over RTMP, players read HLS over HTTP."""

from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path

import asyncpg
import av
import pytest

from db import videos
from tests.packager.hls_harness import (
    Harness,
    check_media_playlist,
    ffmpeg_publish,
    harness,
    open_segment,
    player_errors,
)
from tests.packager.hls_helpers import packager_options

pytestmark = pytest.mark.slow


def broadcast_of(h: Harness, live: int = 0) -> str:
    (directory,) = h.broadcast_dirs(live)
    return f"hls/{h.live_ids[live]}/{directory.name}"


async def video_row(h: Harness, live: int = 0) -> asyncpg.Record:
    rows = await h.pool.fetch(
        """SELECT v.* FROM videos v JOIN live_recordings r ON r.video_id = v.id
           WHERE r.live_id = $1 ORDER BY v.id""",
        h.live_ids[live],
    )
    assert len(rows) == 1
    return rows[0]


async def test_twenty_seconds_of_obs_like_input(database_url: str, tmp_path: Path) -> None:
    options = packager_options(hls_reconnect_window=1.0)
    async with harness(database_url, tmp_path, options, ladder=True) as h:
        code, err = await ffmpeg_publish(h.url(), seconds=20, size="960x540")
        assert code == 0, err
        await h.wait_ended()
        prefix = broadcast_of(h)
        master = h.playlist(f"hls/{h.live_ids[0]}/master.m3u8")
        assert [p.uri for p in master.playlists] == [
            f"{prefix.split('/')[-1]}/source/live.m3u8",
            f"{prefix.split('/')[-1]}/fake/live.m3u8",
        ]
        boundaries = []
        for variant in master.playlists:
            name = variant.uri.split("/")[1]
            playlist = h.playlist(f"{prefix}/{name}/live.m3u8")
            check_media_playlist(playlist, target=2.0)
            assert playlist.target_duration == 2
            assert playlist.segment_map[0].uri == "init.mp4"
            assert playlist.version == 7
            # The live window, then the whole broadcast in the VOD playlist.
            assert len(playlist.segments) == options.window
            vod = h.playlist(f"{prefix}/{name}/vod.m3u8")
            check_media_playlist(vod, target=2.0, vod=True)
            assert sum(s.duration for s in vod.segments) == pytest.approx(20, abs=0.3)
            assert all(s.duration <= 2.5 for s in vod.segments)
            assert all(s.duration == pytest.approx(2.0, abs=0.05) for s in vod.segments[:-1])
            boundaries.append([(s.program_date_time, s.duration) for s in vod.segments])
            # Every segment starts with a keyframe and says what the master says.
            init = h.path(f"{prefix}/{name}/init.mp4").read_bytes()
            info = variant.stream_info
            for segment in vod.segments:
                body = h.path(f"{prefix}/{name}/{segment.uri}").read_bytes()
                decoded = open_segment(init, body)
                assert decoded.key_first
                assert (decoded.width, decoded.height) == info.resolution == (960, 540)
                assert decoded.rate == pytest.approx(info.frame_rate, rel=0.01)
                assert decoded.audio_codec == "aac"
            video_codec, audio_codec = info.codecs.split(",")
            assert decoded.codec == "h264" and decoded.profile == "High"
            assert video_codec == f"avc1.6400{decoded.level:02x}"
            assert audio_codec == "mp4a.40.2"
            assert info.bandwidth >= info.average_bandwidth > 100_000
        # Both renditions cut at the same media times.
        assert boundaries[0] == boundaries[1]
        # A player (the ffmpeg CLI over HTTP) decodes the master and every variant cleanly;
        # with B-frames in the source, "non monotonic dts" warnings would show here too.
        vod_master = f"{h.http}/{prefix}/vod.m3u8"
        for url in (f"{h.http}/hls/{h.live_ids[0]}/master.m3u8", vod_master,
                    *(f"{h.http}/{prefix}/{n}/live.m3u8" for n in ("source", "fake"))):  # fmt: skip
            assert await player_errors(url, level="warning") == "", url
        row = await video_row(h)
        assert row["status"] == "ready" and row["user_id"] == h.user_id
        assert row["hls_master_url"] == f"/{prefix}/vod.m3u8"
        assert row["duration"] == pytest.approx(20, abs=0.3)
        assert row["title"] == "live 0"
        status = await h.pool.fetchval("SELECT status FROM lives WHERE id=$1", h.live_ids[0])
        assert status == "ended"


@pytest.mark.parametrize("kind", ["hevc", "audio_only", "video_only", "mpegts"])
async def test_stream_kinds(database_url: str, tmp_path: Path, kind: str) -> None:
    options = packager_options(
        hls_reconnect_window=0.5, hls_segment_format="ts" if kind == "mpegts" else "cmaf"
    )
    args = {"audio_only": ["-vn"], "video_only": ["-an"]}.get(kind, [])
    async with harness(database_url, tmp_path, options) as h:
        code, err = await ffmpeg_publish(
            h.url(), *args, seconds=5, video="libx265" if kind == "hevc" else "libx264"
        )
        assert code == 0, err
        await h.wait_ended()
        prefix = broadcast_of(h)
        master = h.playlist(f"hls/{h.live_ids[0]}/master.m3u8")
        (variant,) = master.playlists
        codecs = variant.stream_info.codecs
        expected = {
            "hevc": ("hvc1.", ",mp4a.40.2"), "audio_only": ("mp4a.40.2", ""),
            "video_only": ("avc1.64", ""), "mpegts": ("avc1.64", ",mp4a.40.2"),
        }[kind]  # fmt: skip
        assert codecs.startswith(expected[0]) and codecs.endswith(expected[1])
        assert ("," in codecs) == (kind in ("hevc", "mpegts"))
        playlist = h.playlist(f"{prefix}/source/live.m3u8")
        check_media_playlist(playlist, target=2.0)
        extension = ".ts" if kind == "mpegts" else ".m4s"
        assert all(s.uri.endswith(extension) for s in playlist.segments)
        assert playlist.version == (3 if kind == "mpegts" else 7)
        assert bool(playlist.segment_map) == (kind != "mpegts")
        if kind == "audio_only":
            assert variant.stream_info.resolution is None
        else:
            assert variant.stream_info.resolution == (640, 360)
        assert sum(s.duration for s in playlist.segments) == pytest.approx(5, abs=0.3)
        for url in (f"{h.http}/hls/{h.live_ids[0]}/master.m3u8", f"{h.http}/{prefix}/vod.m3u8"):
            assert await player_errors(url) == ""


async def test_av1_source_passthrough(database_url: str, tmp_path: Path) -> None:
    """AV1 (SVT-AV1 in the test ffmpeg, over enhanced RTMP) remuxed into CMAF: the master's
    CODECS is the av01 string of the av1C PyAV reads from the init segment, every segment
    starts with a key frame, and the ffmpeg CLI plays it."""
    options = packager_options(hls_reconnect_window=0.5)
    async with harness(database_url, tmp_path, options) as h:
        code, err = await ffmpeg_publish(h.url(), seconds=5, video="libsvtav1")
        assert code == 0, err
        await h.wait_ended()
        prefix = broadcast_of(h)
        master = h.playlist(f"hls/{h.live_ids[0]}/master.m3u8")
        (variant,) = master.playlists
        video_codec, audio_codec = variant.stream_info.codecs.split(",")
        assert audio_codec == "mp4a.40.2"
        assert variant.stream_info.resolution == (640, 360)
        playlist = h.playlist(f"{prefix}/source/live.m3u8")
        check_media_playlist(playlist, target=2.0)
        assert playlist.segment_map[0].uri == "init.mp4"
        assert sum(s.duration for s in playlist.segments) == pytest.approx(5, abs=0.3)
        init = h.path(f"{prefix}/source/init.mp4").read_bytes()
        for segment in playlist.segments:
            decoded = open_segment(init, h.path(f"{prefix}/source/{segment.uri}").read_bytes())
            assert decoded.key_first and (decoded.width, decoded.height) == (640, 360)
            assert decoded.audio_codec == "aac"
        with av.open(io.BytesIO(init)) as container:
            av1c = bytes(container.streams.video[0].codec_context.extradata or b"")
        # av1C (AV1-ISOBMFF 2.3.3): marker+version, seq_profile|seq_level_idx_0,
        # seq_tier_0|high_bitdepth|twelve_bit|...; the codecs string (Annex A) from them.
        assert av1c[0] == 0x81
        profile, level, tier = av1c[1] >> 5, av1c[1] & 0x1F, av1c[2] >> 7
        depth = 12 if av1c[2] & 0x20 else 10 if av1c[2] & 0x40 else 8
        assert video_codec == f"av01.{profile}.{level:02d}{'H' if tier else 'M'}.{depth:02d}"
        assert video_codec.startswith("av01.0.") and video_codec.endswith("M.08")
        for url in (f"{h.http}/hls/{h.live_ids[0]}/master.m3u8", f"{h.http}/{prefix}/vod.m3u8"):
            assert await player_errors(url) == ""


async def test_reconnects_inside_and_after_the_window(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = packager_options(hls_reconnect_window=3.0, hls_window=20)
    async with harness(database_url, tmp_path, options, ladder=True) as h:
        # Two sessions a second apart are one broadcast...
        code, err = await ffmpeg_publish(h.url(), seconds=4)
        assert code == 0, err
        status = await h.pool.fetchval("SELECT status FROM lives WHERE id=$1", h.live_ids[0])
        assert status == "live"  # the window is open: still live
        code, err = await ffmpeg_publish(h.url(), seconds=4)
        assert code == 0, err
        prefix = broadcast_of(h)
        for name in ("source", "fake"):
            await h.wait_segments(f"{prefix}/{name}/live.m3u8", 4)
        live_master = f"{h.http}/hls/{h.live_ids[0]}/master.m3u8"
        await h.wait_ended()  # ...which ends 3 s after the second one left.
        assert h.packager.metrics.reconnects._value.get() == 1
        for name in ("source", "fake"):
            playlist = h.playlist(f"{prefix}/{name}/live.m3u8")
            check_media_playlist(playlist, target=2.0)
            segments = playlist.segments
            assert [s.discontinuity for s in segments] == [False] * 2 + [True] + [False]
            assert playlist.media_sequence == 0
            assert [s.uri for s in segments] == [f"seg_{n}.m4s" for n in range(4)]
            # Timestamps go on: the second session starts after the first one's end.
            first_end = segments[1].program_date_time.timestamp() + segments[1].duration
            assert segments[2].program_date_time.timestamp() >= first_end - 0.05
        assert await player_errors(live_master, level="warning") == ""
        # The output timeline goes on across the reconnect: no jump back, no long hole.
        times = frame_times(h, f"{prefix}/source", 4)
        assert times == sorted(times)
        assert max(b - a for a, b in itertools.pairwise(times)) < 0.2
        row = await video_row(h)
        assert row["duration"] == pytest.approx(8, abs=0.4)
        assert await player_errors(f"{h.http}{row['hls_master_url']}", level="warning") == ""
        status = await h.pool.fetchval("SELECT status FROM lives WHERE id=$1", h.live_ids[0])
        assert status == "ended"

        # Past the window, the next publish is a new broadcast with a recording of its own.
        code, err = await ffmpeg_publish(h.url(), seconds=3)
        assert code == 0, err
        await h.wait_ended()
        assert len(h.broadcast_dirs()) == 2
        count = await h.pool.fetchval(
            "SELECT count(*) FROM live_recordings WHERE live_id=$1 AND video_id IS NOT NULL",
            h.live_ids[0],
        )
        assert count == 2
        master = h.playlist(f"hls/{h.live_ids[0]}/master.m3u8")
        assert master.playlists[0].uri.startswith(h.broadcast_dirs()[1].name)


def frame_times(h: Harness, directory: str, count: int) -> list[float]:
    """Presentation times of every video frame of the first ``count`` segments, in order."""
    data = h.path(f"{directory}/init.mp4").read_bytes()
    data += b"".join(h.path(f"{directory}/seg_{n}.m4s").read_bytes() for n in range(count))
    with av.open(io.BytesIO(data)) as container:
        return [float(f.time) for f in container.decode(video=0) if f.time is not None]


async def test_a_long_keyframe_interval_is_followed_and_reported(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = packager_options(hls_target_duration=1.0, hls_reconnect_window=0.5)
    async with harness(database_url, tmp_path, options) as h:
        with caplog.at_level(logging.WARNING, logger="packager.pipeline"):
            code, err = await ffmpeg_publish(h.url(), seconds=6, gop=75)  # 2.5 s keyframes
            assert code == 0, err
            await h.wait_ended()
        prefix = broadcast_of(h)
        playlist = h.playlist(f"{prefix}/source/vod.m3u8")
        assert [round(s.duration, 1) for s in playlist.segments[:-1]] == [2.5, 2.5]
        assert playlist.target_duration == 3
        live = h.playlist(f"{prefix}/source/live.m3u8")
        assert live.target_duration == 3
        warnings = [r for r in caplog.records if "keyframes every 2.5 s" in r.getMessage()]
        assert len(warnings) == 1
        interval = await h.pool.fetchval(
            "SELECT keyframe_interval_ms FROM lives WHERE id=$1", h.live_ids[0]
        )
        assert interval == 2500
        assert h.packager.metrics.long_keyframe_interval._value.get() == 1
        assert await videos.get(h.pool, (await video_row(h))["id"]) is not None
