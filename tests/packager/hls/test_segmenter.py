"""The segmenter's cut rule, audio assignment and session boundaries, on synthetic packets."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from media.types import MediaPacket
from packager.hls.segment import Segment
from packager.hls.segmenter import CutPlan, Segmenter
from tests.packager.hls_helpers import AUDIO, VIDEO, synthetic


def run(
    packets: list[MediaPacket], segmenter: Segmenter | None = None, *, video: bool = True,
    audio: bool = True,
) -> list[Segment]:  # fmt: skip
    seg = segmenter or Segmenter(2000)
    if video:
        seg.set_video_config(VIDEO)
    if audio:
        seg.set_audio_config(AUDIO)
    out = []
    for packet in packets:
        out += seg.push(packet)
    return out + seg.flush()


def check_audio(segments: list[Segment]) -> None:
    """Every audio frame is in the segment whose [start, end) holds its pts, in order."""
    for s in segments[:-1]:
        assert all(s.start_ms <= p.pts_ms < s.start_ms + s.duration_ms for p in s.audio)
    pts = [p.pts_ms for s in segments for p in s.audio]
    assert pts == sorted(pts)


@pytest.mark.parametrize(
    ("gop", "expected"),
    [(2000, 2000), (1000, 2000), (500, 2000), (1500, 1500), (900, 1800), (700, 2100)],
)
def test_segments_stay_within_half_a_second_of_the_target(gop: int, expected: int) -> None:
    segments = run(synthetic(20, gop_ms=gop))
    assert all(s.video[0].keyframe for s in segments)
    durations = [s.duration_ms for s in segments[:-1]]
    assert all(abs(d - expected) <= 1 for d in durations), durations
    assert all(d <= 2500 for d in durations)
    assert [s.sequence for s in segments] == list(range(len(segments)))
    check_audio(segments)
    # Nothing lost: every packet is in exactly one segment.
    assert sum(len(s.video) for s in segments) == 600
    assert sum(len(s.audio) for s in segments) == len(synthetic(20, video=False))


def test_a_long_keyframe_interval_gives_one_segment_per_gop() -> None:
    segments = run(synthetic(20, gop_ms=5000))
    assert [s.duration_ms for s in segments[:-1]] == [5000, 5000, 5000]


def test_irregular_keyframes_never_make_tiny_segments() -> None:
    keys = [0, 300, 2300, 2400, 4100, 6000, 6100, 8000]
    segments = run(synthetic(10, gop_ms=keys))
    starts = [s.start_ms for s in segments]
    assert starts == [0, 2300, 4100, 6000, 8000]


def test_by_default_segments_are_published_at_the_keyframe() -> None:
    seg = Segmenter(2000)
    seg.set_video_config(VIDEO)
    seg.set_audio_config(AUDIO)
    packets = synthetic(6, cts_ms=67)
    emitted = [(p, seg.push(p)) for p in packets]
    closers = [p for p, out in emitted if out]
    assert all(p.kind == "video" and p.keyframe for p in closers)
    segments = [s for _, out in emitted for s in out] + seg.flush()
    # The audio of [cut dts, cut pts) came after the cut: it starts the next segment, and
    # nothing is lost or reordered.
    late = [p for p in segments[1].audio if p.pts_ms < segments[1].start_ms]
    assert 1 <= len(late) <= 4
    pts = [p.pts_ms for s in segments for p in s.audio]
    assert seg.dropped_audio == 4  # 0, 21, 42 and 64 ms: before the first keyframe's pts
    assert pts == sorted(pts) and len(pts) == len([p for p in packets if p.kind == "audio"]) - 4


def test_closed_segments_can_wait_for_their_audio() -> None:
    seg = Segmenter(2000, audio_wait_ms=1000)
    seg.set_video_config(VIDEO)
    seg.set_audio_config(AUDIO)
    packets = synthetic(6, cts_ms=67)
    emitted: list[tuple[MediaPacket, list[Segment]]] = [(p, seg.push(p)) for p in packets]
    firsts = [(p, out) for p, out in emitted if out]
    # Each segment is emitted by the first audio frame at or after its end, not by the
    # keyframe (whose pts is 67 ms after its dts) that closed it.
    for packet, out in firsts:
        assert packet.kind == "audio"
        assert packet.pts_ms >= out[0].start_ms + out[0].duration_ms
    assert [s.start_ms for _, out in firsts for s in out] == [67, 2067]


def test_stalled_audio_does_not_hold_video_back_for_long() -> None:
    seg = Segmenter(2000, audio_wait_ms=1000)
    seg.set_video_config(VIDEO)
    seg.set_audio_config(AUDIO)
    packets = [p for p in synthetic(8) if p.kind == "video" or p.pts_ms < 1000]
    out = {p.dts_ms: seg.push(p) for p in packets}
    emitted_at = [t for t, segs in out.items() if segs]
    assert emitted_at == [3000, 5000, 7000]  # each cut's end plus the 1 s wait


def test_audio_only_and_video_only() -> None:
    audio_only = run(synthetic(7, video=False), video=False)
    # Cut at the first AAC frame at least 2 s in: less than one frame (21 ms) over.
    assert all(2000 <= s.duration_ms < 2022 for s in audio_only[:-1])
    assert len(audio_only) == 4
    assert all(not s.video and s.fmt.video is None for s in audio_only)
    video_only = run(synthetic(7, audio=False), audio=False)
    assert [s.duration_ms for s in video_only] == [2000, 2000, 2000, 1000]
    assert all(not s.audio and s.fmt.audio is None for s in video_only)


def test_flush_ends_a_session_and_marks_the_next_segment() -> None:
    seg = Segmenter(2000)
    first = run(synthetic(5), seg)
    # The session's last segment lasts until its last frame ends.
    assert first[-1].start_ms == 4000 and first[-1].duration_ms == 1000
    assert first[-1].video_end_dts == first[-1].video[-1].dts_ms + 33
    second = run(synthetic(4, start_ms=5100), seg)
    assert [s.discontinuity for s in first + second] == [False] * 3 + [True, False]
    assert [s.sequence for s in first + second] == list(range(5))
    assert second[0].start_ms == 5100


def test_flush_keeps_audio_of_the_next_session() -> None:
    seg = Segmenter(2000)
    seg.set_video_config(VIDEO)
    seg.set_audio_config(AUDIO)
    for p in synthetic(3):
        seg.push(p)
    later = MediaPacket("audio", 3500, 3500, True, b"x")
    seg.push(later)
    out = seg.flush(until_ms=3100)
    assert later not in out[-1].audio
    nxt = MediaPacket("video", 3400, 3400, True, b"v")
    seg.push(nxt)
    assert seg.flush()[0].audio == [later]


def test_a_codec_change_cuts_at_the_next_keyframe_with_a_new_format() -> None:
    seg = Segmenter(2000)
    seg.set_video_config(VIDEO)
    seg.set_audio_config(AUDIO)
    out: list[Segment] = []
    bigger = dataclasses.replace(VIDEO, width=1280, height=720)
    for p in synthetic(8, gop_ms=1000):
        if p.dts_ms == 2900:
            seg.set_video_config(bigger)
        out += seg.push(p)
    out += seg.flush()
    assert [s.start_ms for s in out] == [0, 2000, 3000, 5000, 7000]
    assert [s.fmt.video.width for s in out if s.fmt.video] == [640, 640, 1280, 1280, 1280]
    assert [s.discontinuity for s in out] == [False, False, True, False, False]


def test_a_late_audio_config_joins_the_first_segment() -> None:
    seg = Segmenter(2000)
    seg.set_video_config(VIDEO)
    out: list[Segment] = []
    for p in synthetic(3):
        if p.dts_ms == 100 and seg.audio_config is None:
            seg.set_audio_config(AUDIO)
        out += seg.push(p)
    out += seg.flush()
    assert out[0].fmt.audio == AUDIO and not out[0].discontinuity
    assert out[0].audio


def test_ladder_renditions_follow_the_source_cuts() -> None:
    plan = CutPlan()
    source = run(synthetic(10, gop_ms=1500, cts_ms=67), Segmenter(2000, plan=plan))
    # The rung has every source keyframe plus stray ones of its own (and no B-frames).
    rung_keys = sorted({s.start_ms for s in source} | {900, 5100})
    rung_video = [
        MediaPacket("video", p.pts_ms, p.pts_ms, p.pts_ms in rung_keys, b"r")
        for p in synthetic(10, audio=False, cts_ms=67)
    ]
    rung_video.sort(key=lambda p: p.dts_ms)
    audio = synthetic(10, video=False)
    follower = Segmenter(2000, plan=plan, follow=True)
    # The rung's video lags: all its audio is already there.
    rung = run(audio + rung_video, follower)
    assert [s.start_ms for s in rung] == [s.start_ms for s in source]
    assert [s.sequence for s in rung] == [s.sequence for s in source]
    assert all(s.video[0].keyframe for s in rung)
    check_audio(rung)


def test_a_late_rung_takes_the_source_sequence_number() -> None:
    plan = CutPlan()
    run(synthetic(10), Segmenter(2000, plan=plan))
    follower = Segmenter(2000, plan=plan, follow=True)
    late = [p for p in synthetic(10, audio=False) if p.dts_ms >= 4000]
    assert [s.sequence for s in run(late, follower, audio=False)] == [2, 3, 4]


def test_video_before_the_first_keyframe_is_dropped() -> None:
    packets = [p for p in synthetic(4) if not (p.kind == "video" and p.dts_ms < 500)]
    packets = [dataclasses.replace(p, keyframe=p.kind == "audio" or p.dts_ms in (1000, 3000))
               for p in packets]  # fmt: skip
    segments = run(packets)
    assert segments[0].start_ms == 1000
    assert all(p.pts_ms >= 1000 for p in segments[0].audio)
    assert [s.start_ms for s in segments] == [1000, 3000]


def test_pairwise_durations_are_contiguous() -> None:
    segments = run(synthetic(12, gop_ms=1000))
    for a, b in itertools.pairwise(segments):
        assert a.start_ms + a.duration_ms == b.start_ms
        assert a.video_end_dts == b.video[0].dts_ms


def test_an_interrupted_rung_closes_at_its_last_frame_and_resumes_as_a_discontinuity() -> None:
    """A shed ladder rung: its video stops at 3 s (mid-segment), comes back at the source's
    keyframe at 8 s. The segment before the hole ends with its last frame (its audio too);
    audio of the hole is not kept; the segment after is the one discontinuity."""
    plan = CutPlan()
    run(synthetic(12), Segmenter(2000, plan=plan))
    follower = Segmenter(2000, plan=plan, follow=True)
    follower.set_video_config(VIDEO)
    follower.set_audio_config(AUDIO)
    video = synthetic(12, audio=False)
    audio = synthetic(12, video=False)
    shed = [p for p in video if 3000 <= p.dts_ms < 8000]
    # The rung's audio (the source's) arrives half a second ahead of its encoded video.
    timeline = sorted(
        [(p.dts_ms - 500, 0, p) for p in audio] + [(p.dts_ms, 1, p) for p in video],
        key=lambda t: (t[0], t[1]),
    )
    out: list[Segment] = []
    for _, _, packet in timeline:
        if packet in shed:
            if packet is shed[0]:
                out += follower.interrupt()
            continue
        out += follower.push(packet)
    out += follower.flush()
    assert [(s.start_ms, s.discontinuity) for s in out] == [
        (0, False), (2000, False), (8000, True), (10000, False),
    ]  # fmt: skip
    before = out[1]
    assert before.duration_ms == 1000  # 2000 ms .. the end of the frame at 2967 ms
    assert max(p.pts_ms for p in before.audio) < 3000
    assert all(p.pts_ms >= 8000 for s in out[2:] for p in s.audio)
    assert all(s.video[0].keyframe for s in out)
    check_audio(out)
