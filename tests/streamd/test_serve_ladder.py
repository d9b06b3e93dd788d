"""End to end: the transcoded ladder through `streamd serve` as an operator
runs it: 20 s of 1080p30 OBS-like input (H.264 High with B-frames, 2 s GOP, AAC) published
with the real ffmpeg CLI (`-re -c copy`) -> master + source + 720p/480p/360p rungs, checked
against what PyAV reads from the segments and played by the ffmpeg CLI over HTTP.

Shedding is off for this test (STREAMD_HLS_LADDER_SHEDDING=false, with a 60 s backlog): on a
2-core CI machine shared with other tests the 1080p ladder may fall behind real time for a
while, and a shed rung would lose segments at a moment nobody controls. Without shedding the
ladder only lags; the assertions stay exact. Nothing is mocked.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import imageio_ffmpeg
import m3u8
import pytest

from tests.helpers import cli_env, run_cli, serving
from tests.packager.hls_harness import check_media_playlist

pytestmark = pytest.mark.slow

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PASSWORD = "correct horse battery staple\n"
RUNGS = {"720p": (1280, 720), "480p": (854, 480), "360p": (640, 360)}
FRAME_S = 1 / 30


@pytest.fixture(scope="session")
def obs_like_1080p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s as OBS sends it at 1080p30 (x264 High, 2 B-frames, 2 s keyframe interval, AAC
    48 kHz stereo), made once per session like bench/ingest_density.py's file."""
    path = tmp_path_factory.mktemp("serve-ladder") / "obs_like_1080p.flv"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4500k", "-maxrate", "4500k",
         "-bufsize", "9000k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
         "-profile:v", "high", "-bf", "2", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-ac", "2", "-f", "flv", str(path)],
        check=True, timeout=300,
    )  # fmt: skip
    return path


class Segment:
    """One media segment as PyAV reads it with its init segment (a player joining there)."""

    def __init__(self, init: bytes, body: bytes) -> None:
        with av.open(io.BytesIO(init + body)) as container:
            video = container.streams.video[0]
            ctx = video.codec_context
            frames = list(container.decode(video=0))
            self.codec, self.width, self.height = ctx.name, ctx.width, ctx.height
            self.profile = ctx.profile
            self.avcc = bytes(ctx.extradata or b"")
            self.rate = float(video.average_rate or 0)
            self.key_first = frames[0].key_frame
            self.start = float(frames[0].time or 0)
            self.audio = [(s.codec_context.name, s.codec_context.profile) for s in
                          container.streams.audio]  # fmt: skip


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Not under pytest's tmp_path: as root, the embedded PostgreSQL runs as a system user
    that must traverse the parents, and every pytest session that starts meanwhile (another
    run on a shared machine) resets /tmp/pytest-of-root to 0700; this test lasts long enough
    to meet one."""
    with tempfile.TemporaryDirectory(prefix="streamd-serve-ladder-") as tmp:
        yield Path(tmp) / "var"


@pytest.mark.timeout(900)
def test_serve_transcodes_a_1080p_publish_into_the_ladder(
    data_dir: Path, obs_like_1080p: Path
) -> None:
    env = cli_env(
        data_dir,
        STREAMD_HLS_RECONNECT_WINDOW="10",  # the ladder's lag drains before the live ends
        STREAMD_HLS_WINDOW="20",  # the live playlists list the whole broadcast
        STREAMD_HLS_LADDER_SHEDDING="false",
        STREAMD_HLS_LADDER_BACKLOG="60",
    )
    made = run_cli(
        "user", "create", "--username", "lena", "--email", "l@example.com", "--password-stdin",
        "--role", "creator", env=env, stdin=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = run_cli("live", "create", "--user", "lena", "--title", "1080p", env=env)
    live = json.loads(created.stdout)
    # serve's log is read as it comes, so a chatty server never blocks on a full pipe.
    with serving(env) as (server, log):
        publish = subprocess.run(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
             "-i", str(obs_like_1080p), "-c", "copy", "-f", "flv",
             f"rtmp://127.0.0.1:{server.env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert publish.returncode == 0, publish.stderr
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            detail = httpx.get(f"{server.base_url}/api/lives/{live['id']}").json()
            if detail["status"] == "ended":
                break
            time.sleep(0.2)
        assert detail["status"] == "ended", detail

        master_url = f"{server.base_url}/hls/{live['id']}/master.m3u8"
        master = m3u8.loads(httpx.get(master_url).text)
        names = [p.uri.split("/")[1] for p in master.playlists]
        assert sorted(names) == ["360p", "480p", "720p", "source"]
        starts: dict[str, list[float]] = {}
        for variant in master.playlists:
            name = variant.uri.split("/")[1]
            base = f"{server.base_url}/hls/{live['id']}/{variant.uri.rsplit('/', 1)[0]}"
            playlist = m3u8.loads(httpx.get(f"{base}/live.m3u8").text)
            check_media_playlist(playlist, target=2.0)
            assert playlist.target_duration == 2
            assert playlist.media_sequence is not None
            assert playlist.segment_map and playlist.segment_map[0].uri == "init.mp4"
            assert not any(s.discontinuity for s in playlist.segments)
            assert sum(s.duration for s in playlist.segments) == pytest.approx(20, abs=0.3)
            assert all(s.duration <= 2.5 for s in playlist.segments)
            init = httpx.get(f"{base}/init.mp4").content
            segments = [
                Segment(init, httpx.get(f"{base}/{s.uri}").content) for s in playlist.segments
            ]
            starts[name] = [s.start for s in segments]
            info = variant.stream_info
            size = RUNGS.get(name, (1920, 1080))
            for segment in segments:
                assert segment.key_first, (name, segment.start)
                assert (segment.width, segment.height) == info.resolution == size
                assert segment.rate == pytest.approx(info.frame_rate, rel=0.01) == 30
                assert segment.audio == [("aac", "LC")]
            video_codec, audio_codec = info.codecs.split(",")
            # RFC 6381: avc1 + profile, constraint flags and level from the avcC PyAV reads.
            assert segment.codec == "h264" and segment.profile == "High"
            assert video_codec == f"avc1.{segment.avcc[1:4].hex()}"
            assert audio_codec == "mp4a.40.2"
            assert info.bandwidth >= info.average_bandwidth > 100_000
        # Segment boundaries: the same media times in every rendition (within a frame).
        for name in RUNGS:
            assert len(starts[name]) == len(starts["source"]), name
            for rung_start, source_start in zip(starts[name], starts["source"], strict=True):
                assert rung_start == pytest.approx(source_start, abs=FRAME_S + 0.001), name
        # A player, the ffmpeg CLI reading the master over HTTP, decodes every rendition
        # without a warning (B-frames in the source: "non monotonic DTS" would show here).
        for index in range(len(master.playlists)):
            played = subprocess.run(
                [FFMPEG, "-hide_banner", "-v", "warning", "-nostdin", "-i", master_url,
                 "-map", f"0:v:{index}", "-map", "0:a:0", "-f", "null", "-"],
                capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            assert played.returncode == 0, played.stderr
            assert played.stderr == "", (index, played.stderr)
    assert server.proc.returncode == 0, "".join(log[-40:])
    assert not any("dropping until the next keyframe" in line for line in log), "".join(log)
