"""LL-HLS parts: where the segmenter cuts them, and the fMP4 they become."""

from __future__ import annotations

import dataclasses
import subprocess
from fractions import Fraction
from pathlib import Path

import av

from media.types import MediaPacket
from packager.hls.cmaf import CmafMuxer
from packager.hls.segment import Part, Segment
from packager.hls.segmenter import CutPlan, Segmenter, part_step
from tests.packager.hls_helpers import AUDIO, FFMPEG, VIDEO, demux, make_media, synthetic


def run(packets: list[MediaPacket], segmenter: Segmenter) -> list[Segment | Part]:
    if segmenter.video_config is None:
        segmenter.set_video_config(VIDEO)
    if segmenter.audio_config is None:
        segmenter.set_audio_config(AUDIO)
    out: list[Segment | Part] = []
    for packet in packets:
        out += segmenter.push(packet)
    return out + segmenter.flush()


def grouped(out: list[Segment | Part]) -> list[tuple[Segment, list[Part]]]:
    """Each segment with the parts handed out before it (asserting the order)."""
    groups: list[tuple[Segment, list[Part]]] = []
    parts: list[Part] = []
    for item in out:
        if isinstance(item, Part):
            assert not parts or (item.sequence, item.index) == (
                parts[-1].sequence, parts[-1].index + 1
            )  # fmt: skip
            assert item.sequence == (groups[-1][0].sequence + 1 if groups else 0)
            parts.append(item)
        else:
            assert parts and all(p.sequence == item.sequence for p in parts)
            assert parts[-1].last and not any(p.last for p in parts[:-1])
            groups.append((item, parts))
            parts = []
    assert not parts
    return groups


def test_parts_are_whole_frames_on_a_fixed_grid_and_hold_exactly_the_segment() -> None:
    groups = grouped(run(synthetic(10, gop_ms=2000), Segmenter(2000, part_ms=333)))
    assert len(groups) == 5
    for segment, parts in groups:
        # 2 s at 30 fps in parts of 10 frames (333.3 ms): 6 parts, none over 334 ms.
        assert [len(p.video) for p in parts] == [10] * 6
        assert all(333 <= p.duration_ms <= 334 for p in parts[:-1])
        assert sum(p.duration_ms for p in parts) == segment.duration_ms
        assert [v for p in parts for v in p.video] == segment.video
        assert [a for p in parts for a in p.audio] == segment.audio
        assert [p.independent for p in parts] == [True] + [False] * 5
        # Audio goes with the video of its time: no part's audio starts after its end.
        for part in parts[:-1]:
            assert all(a.pts_ms < part.video_end_dts for a in part.audio)


def test_a_keyframe_inside_a_segment_makes_its_part_independent() -> None:
    packets = synthetic(4, gop_ms=[0, 1000, 2000, 3000])
    groups = grouped(run(packets, Segmenter(2000, part_ms=500)))
    first, parts = groups[0]
    assert len(first.video) == 60
    assert [p.independent for p in parts] == [True, False, True, False]


def test_ladder_renditions_take_the_source_step_from_the_plan() -> None:
    plan = CutPlan()
    source = Segmenter(2000, plan=plan, part_ms=333)
    rung = Segmenter(2000, plan=plan, follow=True, part_ms=333)
    rung.set_video_config(dataclasses.replace(VIDEO, frame_rate=Fraction(25)))
    src_groups = grouped(run(synthetic(6), source))
    rung_groups = grouped(run(synthetic(6, fps=25), rung))
    assert plan.part_step_ms == part_step(333, 1000 / 30)
    # The same boundaries within a frame of the rung's.
    for (_, a), (_, b) in zip(src_groups, rung_groups, strict=True):
        assert len(a) == len(b)
        for pa, pb in zip(a, b, strict=True):
            assert abs(pa.video[0].dts_ms - pb.video[0].dts_ms) <= 40


def test_parts_wait_for_a_closing_segment() -> None:
    """With an audio wait, the next segment's parts come only after the closed segment."""
    out = run(synthetic(8), Segmenter(2000, audio_wait_ms=300, part_ms=333))
    grouped(out)  # asserts the publishing order


def test_parts_of_real_media_decode_with_ffmpeg(tmp_path: Path) -> None:
    """x264 with B-frames and AAC: the parts end to end decode without an error, every
    frame, and an independent part decodes on its own after the init segment."""
    vconf, aconf, packets = demux(make_media(tmp_path / "a.mp4", seconds=4, gop=30))
    segmenter = Segmenter(1000, part_ms=200)
    segmenter.set_video_config(vconf)
    segmenter.set_audio_config(aconf)
    out = run(packets, segmenter)
    groups = grouped(out)
    muxer = CmafMuxer()
    init = muxer.init_segment(groups[0][0].fmt)
    data = {(p.sequence, p.index): muxer.media_part(p) for _, parts in groups for p in parts}
    whole = tmp_path / "all.mp4"
    whole.write_bytes(init + b"".join(data.values()))
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(whole), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    with av.open(str(whole)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == sum(1 for p in packets if p.kind == "video")
    independent = groups[1][1][0]  # a segment's first part starts with its keyframe
    assert independent.independent and independent.index == 0
    alone = tmp_path / "alone.mp4"
    alone.write_bytes(init + data[(independent.sequence, independent.index)])
    with av.open(str(alone)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(independent.video)


def test_without_parts_nothing_changes() -> None:
    out = run(synthetic(6), Segmenter(2000))
    assert all(isinstance(item, Segment) for item in out)
