"""The local VOD backend on real media: ffmpeg writes the sources (testsrc2 + a sine), the
outputs are checked with the ffmpeg CLI (every rendition's playlist decodes without an error)
and with PyAV (each rendition's init + segments read back as one fragmented MP4)."""

from __future__ import annotations

import io
import re
import subprocess
import threading
from pathlib import Path

import av
import imageio_ffmpeg
import m3u8
import pytest

from packager.types import Rung
from packager.vod.probe import ProbeResult, probe
from packager.vod.transcode import TranscodeCancelled, TranscodeResult, transcode, vod_ladder

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SECONDS = 8
FPS = 30
# Small rungs and a fast preset keep the tests quick; "veryfast" still has B-frames.
PRESET = "veryfast"
LADDER = [
    Rung("1080p", 1920, 1080, 30, 5_000_000),
    Rung("480p", 854, 480, 30, 800_000),
    Rung("360p", 640, 360, 30, 500_000),
    Rung("240p", 426, 240, 30, 300_000),
]
DEFAULT = [
    Rung("1080p", 1920, 1080, 30, 5_000_000),
    Rung("720p", 1280, 720, 30, 3_000_000),
    Rung("480p", 854, 480, 30, 1_200_000),
    Rung("360p", 640, 360, 30, 700_000),
]


def make_source(path: Path, size: str, seconds: float, rate: int = FPS) -> Path:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "75",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path


def probe_of(path: Path) -> ProbeResult:
    """What the job hands the transcoder: the real probe's answer."""
    return probe(path)


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, stage: str) -> None:
        self.calls.append((fraction, stage))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("vod-src") / "src.mp4", "1920x1080", SECONDS)


@pytest.fixture(scope="module")
def transcoded(
    source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TranscodeResult, Progress]:
    out = tmp_path_factory.mktemp("vod-out")
    progress = Progress()
    # 3 s segments: three cuts in 8 s, so alignment is checked on more than one boundary.
    result = transcode(
        source, out, probe_of(source), LADDER[1:], preset=PRESET, segment_s=3.0,
        progress=progress,
    )  # fmt: skip
    return out, result, progress


def read_rendition(directory: Path) -> bytes:
    """init.mp4 followed by the segments in playlist order: one fragmented MP4."""
    playlist = m3u8.load(str(directory / "vod.m3u8"))
    parts = [directory / playlist.segments[0].init_section.uri]
    parts += [directory / s.uri for s in playlist.segments]
    return b"".join(p.read_bytes() for p in parts)


def video_packets(data: bytes) -> list[tuple[float, bool]]:
    """(pts in s, keyframe) of every video packet, in presentation order."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        out = [
            (float(p.pts * stream.time_base), p.is_keyframe)
            for p in container.demux(stream)
            if p.pts is not None
        ]
    return sorted(out)


# --- the ladder ---


def test_vod_ladder_keeps_rungs_up_to_the_source() -> None:
    assert [r.name for r in vod_ladder(DEFAULT, 1920, 1080)] == ["1080p", "720p", "480p", "360p"]
    assert [r.name for r in vod_ladder(DEFAULT, 1280, 720)] == ["720p", "480p", "360p"]
    assert [r.name for r in vod_ladder(DEFAULT, 1000, 700)] == ["480p", "360p"]
    assert [r.name for r in vod_ladder(DEFAULT, 640, 360)] == ["360p"]
    assert [r.name for r in vod_ladder(DEFAULT, 3840, 2160)] == ["1080p", "720p", "480p", "360p"]


def test_vod_ladder_sizes_follow_the_source_aspect() -> None:
    portrait = vod_ladder(DEFAULT, 1080, 1920)
    assert [(r.width, r.height) for r in portrait] == [
        (1080, 1920), (720, 1280), (480, 854), (360, 640),
    ]  # fmt: skip
    wide = vod_ladder(DEFAULT, 1920, 800)
    assert [(r.width, r.height) for r in wide] == [(1728, 720), (1152, 480), (864, 360)]


def test_a_source_below_every_rung_gets_one_at_its_own_size() -> None:
    (only,) = vod_ladder(DEFAULT, 320, 180)
    assert (only.width, only.height, only.fps) == (320, 180, 30)
    assert 100_000 <= only.video_bitrate < 700_000
    with pytest.raises(ValueError):
        vod_ladder([], 1920, 1080)


# --- a transcode ---


def test_every_rendition_decodes_without_errors(
    transcoded: tuple[Path, TranscodeResult, Progress],
) -> None:
    out, result, _ = transcoded
    for rendition in result.renditions:
        run = subprocess.run(
            [FFMPEG, "-hide_banner", "-v", "error", "-i", str(out / rendition.playlist),
             "-f", "null", "-"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0 and run.stderr == "", (rendition.name, run.stderr)


def test_sizes_duration_and_audio(transcoded: tuple[Path, TranscodeResult, Progress]) -> None:
    out, result, _ = transcoded
    assert [(r.name, r.width, r.height) for r in result.renditions] == [
        ("480p", 854, 480), ("360p", 640, 360), ("240p", 426, 240),
    ]  # fmt: skip
    assert abs(result.duration_s - SECONDS) <= 2 / FPS
    for rendition in result.renditions:
        data = read_rendition(out / rendition.name)
        with av.open(io.BytesIO(data)) as container:
            frames = list(container.decode(video=0))
        assert {(f.width, f.height) for f in frames} == {(rendition.width, rendition.height)}
        assert abs(len(frames) - SECONDS * FPS) <= 2
        span = float(frames[-1].time or 0) - float(frames[0].time or 0) + 1 / FPS
        assert abs(span - SECONDS) <= 2 / FPS
        with av.open(io.BytesIO(data)) as container:
            samples = sum(f.samples for f in container.decode(audio=0))
            rate = container.streams.audio[0].sample_rate
        assert abs(samples / rate - SECONDS) < 0.1


def test_keyframes_and_segment_boundaries_are_the_same_in_every_rung(
    transcoded: tuple[Path, TranscodeResult, Progress],
) -> None:
    out, result, _ = transcoded
    keyframes, durations = [], []
    for rendition in result.renditions:
        packets = video_packets(read_rendition(out / rendition.name))
        # B-frames: presentation order differs from decode order somewhere.
        keyframes.append([round(t, 3) for t, key in packets if key])
        playlist = m3u8.load(str(out / rendition.playlist))
        assert playlist.playlist_type == "vod" and playlist.is_endlist
        durations.append([s.duration for s in playlist.segments])
    assert keyframes[0] == keyframes[1] == keyframes[2]
    assert durations[0] == durations[1] == durations[2]
    start = keyframes[0][0]
    # A keyframe on every 3 s of the source, each starting a segment.
    assert [round(k - start, 3) for k in keyframes[0]] == [0.0, 3.0, 6.0]
    assert durations[0] == pytest.approx([3.0, 3.0, 2.0], abs=0.002)


def test_b_frames_are_used(transcoded: tuple[Path, TranscodeResult, Progress]) -> None:
    out, result, _ = transcoded
    with av.open(io.BytesIO(read_rendition(out / result.renditions[0].name))) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    assert pts != sorted(pts)


def test_master_playlist_lists_every_rendition(
    transcoded: tuple[Path, TranscodeResult, Progress],
) -> None:
    out, result, _ = transcoded
    master = m3u8.load(str(out / result.master))
    assert [p.uri for p in master.playlists] == [r.playlist for r in result.renditions]
    for playlist, rendition in zip(master.playlists, result.renditions, strict=True):
        info = playlist.stream_info
        assert info.resolution == (rendition.width, rendition.height)
        assert info.bandwidth == rendition.bandwidth
        assert info.average_bandwidth == rendition.average_bandwidth
        assert info.bandwidth >= info.average_bandwidth > 0
        assert re.fullmatch(r"avc1\.64[0-9a-f]{4},mp4a\.40\.2", info.codecs)
        assert info.frame_rate == FPS
    # The peak is near the rung's target (VBV caps it at 1.5x, plus audio and muxing).
    rung = LADDER[1]
    assert 0.5 * rung.video_bitrate < result.renditions[0].bandwidth < 2 * rung.video_bitrate


def test_every_file_written_is_listed(transcoded: tuple[Path, TranscodeResult, Progress]) -> None:
    out, result, _ = transcoded
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(result.files) == on_disk
    assert len(result.files) == len(set(result.files))
    assert {"master.m3u8", "poster.jpg", "storyboard.jpg", "storyboard.vtt"} <= on_disk
    assert "240p/init.mp4" in on_disk and "240p/seg_0.m4s" in on_disk


def _timestamp_s(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_storyboard_covers_the_whole_video(
    transcoded: tuple[Path, TranscodeResult, Progress],
) -> None:
    out, result, _ = transcoded
    assert result.storyboard_vtt == "storyboard.vtt"
    with av.open(str(out / "storyboard.jpg")) as container:
        sprite = next(container.decode(video=0))
    text = (out / "storyboard.vtt").read_text()
    assert text.startswith("WEBVTT\n")
    cues = re.findall(
        r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n"
        r"storyboard\.jpg#xywh=(\d+),(\d+),(\d+),(\d+)\n",
        text,
    )
    assert len(cues) == SECONDS  # one tile a second
    end = 0.0
    for start_text, end_text, *xywh in cues:
        start, stop = _timestamp_s(start_text), _timestamp_s(end_text)
        assert start == pytest.approx(end) and stop > start
        end = stop
        x, y, w, h = map(int, xywh)
        assert (w, h) == (160, 90)
        assert x + w <= sprite.width and y + h <= sprite.height
    assert end == pytest.approx(result.duration_s)


def test_poster_is_a_picture(transcoded: tuple[Path, TranscodeResult, Progress]) -> None:
    out, result, _ = transcoded
    assert result.poster == "poster.jpg"
    with av.open(str(out / "poster.jpg")) as container:
        poster = next(container.decode(video=0))
    assert (poster.width, poster.height) == (1280, 720)


def test_progress_is_monotonic_and_ends_finished(
    transcoded: tuple[Path, TranscodeResult, Progress],
) -> None:
    _, _, progress = transcoded
    fractions = [f for f, _ in progress.calls]
    stages = [s for _, s in progress.calls]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    assert progress.calls[-1] == (1.0, "finishing")
    assert "transcoding" not in stages[stages.index("finishing") :]


def test_rungs_above_the_source_are_skipped(tmp_path: Path) -> None:
    src = make_source(tmp_path / "small.mp4", "640x360", 2)
    result = transcode(src, tmp_path / "out", probe_of(src), DEFAULT, preset=PRESET)
    assert [(r.name, r.width, r.height) for r in result.renditions] == [("360p", 640, 360)]
    master = m3u8.load(str(tmp_path / "out" / "master.m3u8"))
    assert [p.uri for p in master.playlists] == ["360p/vod.m3u8"]
    assert abs(result.duration_s - 2) <= 2 / FPS


def test_a_60fps_source_is_decimated_to_the_rung_rate(tmp_path: Path) -> None:
    src = make_source(tmp_path / "fast.mp4", "640x360", 2, rate=60)
    result = transcode(src, tmp_path / "out", probe_of(src), DEFAULT[3:], preset=PRESET)
    with av.open(io.BytesIO(read_rendition(tmp_path / "out" / "360p"))) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames - 2 * 30) <= 1
    assert "FRAME-RATE=30" in (tmp_path / "out" / result.master).read_text()


class CancelAfter(threading.Event):
    """Set once checked `after` times: a cancel that lands mid-transcode, deterministically."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def is_set(self) -> bool:
        self.after -= 1
        return self.after < 0 or super().is_set()


def test_cancel_raises_and_stops_every_thread(source: Path, tmp_path: Path) -> None:
    threads = threading.active_count()
    with pytest.raises(TranscodeCancelled):
        transcode(
            source, tmp_path / "out", probe_of(source), LADDER[2:], preset=PRESET,
            cancel=CancelAfter(60),
        )  # fmt: skip
    assert threading.active_count() == threads
    assert not (tmp_path / "out" / "master.m3u8").exists()


def test_a_source_without_audio_gives_video_only_renditions(tmp_path: Path) -> None:
    src = tmp_path / "silent.mkv"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "2",
         "-c:v", "libx264", "-preset", "ultrafast", str(src)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    probe = probe_of(src)
    assert probe.container == "matroska,webm" and probe.audio_codec is None
    result = transcode(src, tmp_path / "out", probe, DEFAULT[3:], preset=PRESET)
    (rendition,) = result.renditions
    assert re.fullmatch(r"avc1\.64[0-9a-f]{4}", rendition.codecs)
    assert abs(result.duration_s - 2) <= 2 / 25
