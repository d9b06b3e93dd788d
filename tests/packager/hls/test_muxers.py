"""fMP4 and MPEG-TS segments of real encoder output, read back with PyAV and the ffmpeg CLI."""

from __future__ import annotations

import io
import itertools
import struct
import subprocess
from pathlib import Path

import av
import pytest

from media.types import AudioConfig, MediaPacket, VideoConfig
from packager.hls.cmaf import NON_SYNC_SAMPLE, SYNC_SAMPLE, CmafMuxer
from packager.hls.mp4 import init_segment
from packager.hls.segment import Segment, TrackFormat
from packager.hls.segmenter import Segmenter
from packager.hls.ts import TsMuxer, crc32_mpeg2
from tests.packager.hls_helpers import FFMPEG, boxes, demux, make_media

Media = tuple[VideoConfig, AudioConfig, list[MediaPacket]]


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return demux(make_media(tmp_path_factory.mktemp("h264") / "a.mp4", gop=30))


@pytest.fixture(scope="module")
def h265(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return demux(make_media(tmp_path_factory.mktemp("hevc") / "a.mp4", codec="libx265", gop=30))


def segments_of(media: Media, *, video: bool = True, audio: bool = True) -> list[Segment]:
    vconf, aconf, packets = media
    seg = Segmenter(1000)
    if video:
        seg.set_video_config(vconf)
    if audio:
        seg.set_audio_config(aconf)
    out = []
    for p in packets:
        out += seg.push(p)
    return out + seg.flush()


def ffmpeg_errors(data: bytes, suffix: str, tmp_path: Path) -> str:
    path = tmp_path / f"all{suffix}"
    path.write_bytes(data)
    done = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    return done.stderr


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_cmaf_segments_decode_one_by_one(
    codec: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    media: Media = request.getfixturevalue(codec)
    segments = segments_of(media)
    muxer = CmafMuxer()
    init = muxer.init_segment(segments[0].fmt)
    data = [muxer.media_segment(s) for s in segments]
    assert len(data) == 4
    previous_end = 0.0
    for segment, body in zip(segments, data, strict=True):
        with av.open(io.BytesIO(init + body)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == ("hevc" if codec == "h265" else "h264")
            frames = list(container.decode(video=0))
        assert frames[0].key_frame
        assert len(frames) == len(segment.video)
        times = [float(f.time) for f in frames if f.time is not None]
        assert times == sorted(times)  # B-frames reordered into presentation order
        assert times[0] == pytest.approx(segment.start_ms / 1000, abs=0.002)
        assert times[0] >= previous_end - 0.001
        previous_end = times[-1]
    whole = init + b"".join(data)
    assert ffmpeg_errors(whole, ".mp4", tmp_path) == ""
    with av.open(io.BytesIO(whole)) as container:
        audio = list(container.decode(audio=0))
    # Every AAC frame from the first keyframe on, end to end, 1024 samples each.
    assert len(audio) == sum(len(s.audio) for s in segments)
    assert (
        sum(len(s.audio) for s in segments) >= len([p for p in media[2] if p.kind == "audio"]) - 5
    )
    steps = {round(float(b.time - a.time) * 48000) for a, b in itertools.pairwise(audio)}
    assert steps == {1024}


def test_boxes_of_a_fragment(h264: Media) -> None:
    segment = segments_of(h264)[1]
    data = CmafMuxer().media_segment(segment)
    top = list(boxes(data))
    assert [kind for kind, _ in top] == [b"moof", b"mdat"]
    moof = top[0][1]
    trafs = [payload for kind, payload in boxes(moof) if kind == b"traf"]
    video_traf = dict(boxes(trafs[0]))
    version_flags, count = struct.unpack(">II", video_traf[b"trun"][:8])
    assert version_flags >> 24 == 1  # signed composition offsets
    assert count == len(segment.video)
    entries = struct.iter_unpack(">IIIi", video_traf[b"trun"][12:])
    flags = [f for _, _, f, _ in entries]
    assert flags[0] == SYNC_SAMPLE and set(flags[1:]) == {NON_SYNC_SAMPLE}
    (base,) = struct.unpack(">Q", video_traf[b"tfdt"][4:])
    assert base == segment.video[0].dts_ms * 90


def test_fragments_within_a_segment(h264: Media, tmp_path: Path) -> None:
    segments = segments_of(h264)
    muxer = CmafMuxer(fragment_ms=250)
    init = muxer.init_segment(segments[0].fmt)
    data = [muxer.media_segment(s) for s in segments]
    kinds = [k for k, _ in boxes(data[0])]
    assert kinds == [b"moof", b"mdat"] * 4  # a 1 s segment in four 250 ms parts
    seqs = [
        struct.unpack(">I", dict(boxes(p))[b"mfhd"][4:8])[0]
        for d in data for k, p in boxes(d) if k == b"moof"
    ]  # fmt: skip
    assert seqs == list(range(1, len(seqs) + 1))
    assert ffmpeg_errors(init + b"".join(data), ".mp4", tmp_path) == ""


def test_init_segments_for_each_track_set(h264: Media) -> None:
    vconf, aconf, _ = h264
    both = dict(boxes(init_segment(TrackFormat(vconf, aconf))))
    assert both[b"ftyp"][:4] == b"iso6"
    assert [k for k, _ in boxes(both[b"moov"])].count(b"trak") == 2
    for fmt in (TrackFormat(vconf, None), TrackFormat(None, aconf)):
        top = dict(boxes(init_segment(fmt)))
        assert [k for k, _ in boxes(top[b"moov"])].count(b"trak") == 1
        assert b"cmfc" in top[b"ftyp"]


@pytest.mark.parametrize(("video", "audio"), [(True, True), (False, True), (True, False)])
def test_audio_only_and_video_only_cmaf(
    h264: Media, tmp_path: Path, video: bool, audio: bool
) -> None:
    segments = segments_of(h264, video=video, audio=audio)
    muxer = CmafMuxer()
    whole = muxer.init_segment(segments[0].fmt) + b"".join(map(muxer.media_segment, segments))
    assert ffmpeg_errors(whole, ".mp4", tmp_path) == ""
    with av.open(io.BytesIO(whole)) as container:
        assert len(container.streams.video) == int(video)
        assert len(container.streams.audio) == int(audio)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_ts_segments_stand_alone(
    codec: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    media: Media = request.getfixturevalue(codec)
    segments = segments_of(media)
    muxer = TsMuxer()
    data = [muxer.media_segment(s) for s in segments]
    for segment, body in zip(segments, data, strict=True):
        assert len(body) % 188 == 0 and body[0] == 0x47
        with av.open(io.BytesIO(body), format="mpegts") as container:
            frames = list(container.decode(video=0))
        assert frames[0].key_frame
        assert len(frames) == len(segment.video)
    assert ffmpeg_errors(b"".join(data), ".ts", tmp_path) == ""
    with av.open(io.BytesIO(b"".join(data)), format="mpegts") as container:
        audio = list(container.decode(audio=0))
    assert len(audio) == sum(len(s.audio) for s in segments)


def test_ts_audio_only(h264: Media, tmp_path: Path) -> None:
    segments = segments_of(h264, video=False)
    muxer = TsMuxer()
    assert ffmpeg_errors(b"".join(map(muxer.media_segment, segments)), ".ts", tmp_path) == ""


def test_crc32_mpeg2() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the CRC catalogue's check value
