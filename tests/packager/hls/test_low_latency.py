"""LL-HLS state of a live rendition: the playlists a real pipeline publishes (parsed by the
``m3u8`` library, which reads the LL tags), the blocking positions, the media kept in memory,
delta updates and rendition reports. Real segmenter, muxer and local storage; synthetic
packets fed as fast as the pipeline takes them."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import m3u8
import pytest

from packager.hls.low_latency import LiveIndex, LiveRendition, PartEntry, Position, part_uri
from packager.hls.playlists import LivePlaylist, SegmentEntry
from packager.hls.rendition import WallClock
from packager.metrics import PackagerMetrics
from packager.pipeline import LivePipeline
from packager.storage.local import LocalStorage
from tests.packager.hls_helpers import AUDIO, VIDEO, packager_options, synthetic

SOURCE = "hls/3/b1/source"


async def published(tmp_path: Path, seconds: float, **settings: object) -> tuple[
    LivePipeline, LiveIndex, LocalStorage
]:  # fmt: skip
    storage = LocalStorage(tmp_path)
    index = LiveIndex()
    options = packager_options(hls_ladder=(), **settings)
    pipeline = LivePipeline(3, "b1", options, storage, PackagerMetrics(), live_index=index)
    pipeline.feed(VIDEO)
    pipeline.feed(AUDIO)
    for packet in synthetic(seconds):
        pipeline.feed(packet)
    for _ in range(100):  # the writer stores what was queued
        await asyncio.sleep(0.02)
        if pipeline.source._queue.empty():
            break
    await asyncio.sleep(0.05)
    return pipeline, index, storage


def live_of(index: LiveIndex, directory: str = SOURCE) -> LiveRendition:
    found = index.find(f"{directory}/live.m3u8")
    assert found is not None
    return found[0]


async def test_a_pipeline_publishes_an_ll_playlist_with_parts_and_a_hint(tmp_path: Path) -> None:
    pipeline, index, _ = await published(tmp_path, 9.5)
    live = live_of(index)
    text = live.render().decode()
    playlist = m3u8.loads(text)
    assert playlist.version == 9
    assert playlist.target_duration == 2
    # 333 ms at 30 fps is 10 frames (333.3 ms); PART-TARGET rounds it up past the ms rounding.
    assert playlist.part_inf.part_target == pytest.approx(0.335)
    control = playlist.server_control
    assert control.can_block_reload == "YES"
    assert control.part_hold_back == pytest.approx(3 * 0.335)
    assert control.can_skip_until >= 6 * 2
    complete = [s for s in playlist.segments if s.uri]
    assert [s.uri for s in complete] == [f"seg_{i}.m4s" for i in range(4)]
    # Parts for the last three target durations of segments, and the segment in progress.
    assert [len(s.parts) for s in complete] == [0, 6, 6, 6]
    for segment in complete[1:]:
        assert segment.parts[0].independent == "YES"
        assert not any(p.independent for p in segment.parts[1:])
        assert sum(p.duration for p in segment.parts) == pytest.approx(segment.duration, abs=0.002)
    # 9.5 s: segment 4 started at 8 s; its parts up to 9.333 s are out (the frame at 9.333
    # ends the fourth), the fifth is hinted.
    progress = playlist.segments[-1]
    assert progress.uri is None
    assert [p.uri for p in progress.parts] == [f"part_4_{i}.m4s" for i in range(4)]
    assert playlist.preload_hint.hint_type == "PART"
    assert playlist.preload_hint.uri == "part_4_4.m4s"
    assert live.position == Position(msn=4, parts=4, last_complete=3)
    # Media from memory: parts are fMP4 fragments; a stored segment is read from storage.
    parts = [live.media(part_uri(2, i)) for i in range(6)]
    assert all(p is not None and bytes(p[4:8]) == b"moof" for p in parts)
    assert live.media("seg_2.m4s") is None
    assert live.media("init.mp4") is not None
    # A segment is one fragment with the same samples as its parts (players that do not
    # speak LL-HLS, and FFmpeg's HLS demuxer with several variants, read segments).
    segment = (tmp_path / SOURCE / "seg_2.m4s").read_bytes()
    assert segment.count(b"moof") == 1
    sizes = sum(len(p) - 8 - int.from_bytes(bytes(p[:4])) for p in parts if p is not None)
    assert len(segment) - 8 - int.from_bytes(segment[:4]) == sizes  # mdat payloads
    # The stored playlist is plain HLS (what non-origin readers get): no parts, version 7.
    stored = (tmp_path / SOURCE / "live.m3u8").read_text()
    assert "#EXT-X-PART" not in stored and "#EXT-X-VERSION:7" in stored
    assert "seg_3.m4s" in stored
    await pipeline.finish()
    assert index.find(f"{SOURCE}/live.m3u8") is None  # later requests read storage
    assert live.ended and live.render().decode().endswith("#EXT-X-ENDLIST\n")


async def test_old_parts_leave_memory(tmp_path: Path) -> None:
    pipeline, index, _ = await published(tmp_path, 14.5)
    live = live_of(index)
    assert live.media(part_uri(6, 0)) is not None
    assert live.media(part_uri(2, 0)) is None
    await pipeline.finish()


async def test_a_segment_is_served_from_memory_until_storage_has_it() -> None:
    live = filled(6, 2)
    live.add_part(PartEntry(2, 0, 0.333, True, b"p"), discontinuity=False)
    live.add_segment(entry(2, datetime(2026, 1, 1, tzinfo=UTC)), b"segment 2")
    assert live.media("seg_2.m4s") == b"segment 2"
    live.stored("seg_2.m4s")
    assert live.media("seg_2.m4s") is None


async def test_a_waiter_is_released_by_the_part_it_waits_for() -> None:
    live = LiveRendition("source", LivePlaylist(6, version=7, minimum_target=2), 333)
    waiting = asyncio.ensure_future(live.changed())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    live.add_part(PartEntry(0, 0, 0.333, True, b"x"), discontinuity=False)
    await asyncio.wait_for(waiting, 1)
    assert live.position.has(0, 0) and not live.position.has(0, 1)


def test_positions() -> None:
    edge = Position(msn=5, parts=2, last_complete=4)
    assert edge.has(4, None) and not edge.has(5, None)
    assert edge.has(5, 1) and not edge.has(5, 2)
    assert edge.has(4, 9)  # past a complete segment's last part: the next segment's first
    assert not edge.has(6, 0)
    assert not Position(0, 0, None).has(0, None)


def entry(sequence: int, start: datetime, duration: float = 2.0) -> SegmentEntry:
    when = start + timedelta(seconds=sequence * duration)
    return SegmentEntry(sequence, f"seg_{sequence}.m4s", duration, False, when, "init.mp4", 100)


def filled(window: int, segments: int, name: str = "source") -> LiveRendition:
    live = LiveRendition(name, LivePlaylist(window, version=7, minimum_target=2), 333)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(segments):
        for i in range(6):
            live.add_part(PartEntry(n, i, 0.3333, i == 0, b"p"), discontinuity=False)
        live.add_segment(entry(n, start), b"segment")
        live.stored(f"seg_{n}.m4s")
    return live


def test_a_delta_update_skips_what_is_older_than_can_skip_until() -> None:
    live = filled(window=12, segments=20)
    full = m3u8.loads(live.render().decode())
    delta = m3u8.loads(live.render(skip=True).decode())
    assert len(full.segments) == 12
    # 12 s back from the end is kept (CAN-SKIP-UNTIL 12): 6 of the 12 segments are skipped.
    assert delta.skip.skipped_segments == 6
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments[6:]]
    assert delta.media_sequence == full.media_sequence
    assert '#EXT-X-MAP:URI="init.mp4"' in live.render(skip=True).decode()
    # With the default window (6 x 2 s) nothing is old enough to skip.
    assert "EXT-X-SKIP" not in filled(window=6, segments=10).render(skip=True).decode()


def test_renditions_of_a_broadcast_report_each_other() -> None:
    index = LiveIndex()
    source, rung = filled(6, 4), filled(6, 3, name="360p")
    index.add("hls/1/b1/source", source)
    index.add("hls/1/b1/360p", rung)
    index.add("hls/2/b9/source", filled(6, 9))  # another live: not reported
    rung.add_part(PartEntry(3, 0, 0.333, True, b"p"), discontinuity=False)
    reports = m3u8.loads(source.render().decode()).rendition_reports
    assert [(r.uri, r.last_msn, r.last_part) for r in reports] == [("../360p/live.m3u8", 3, 0)]
    index.remove("hls/1/b1/360p")
    assert "RENDITION-REPORT" not in source.render().decode()


def test_a_discontinuity_and_a_new_init_in_the_segment_in_progress() -> None:
    live = filled(6, 2)
    live.add_init("init_1.mp4", b"init")
    live.add_part(PartEntry(2, 0, 0.333, True, b"p"), discontinuity=True)
    text = live.render().decode()
    tail = text[text.index("seg_1.m4s") :]
    assert tail.index("#EXT-X-DISCONTINUITY") < tail.index('#EXT-X-MAP:URI="init_1.mp4"')
    assert tail.index('#EXT-X-MAP:URI="init_1.mp4"') < tail.index("part_2_0.m4s")
    assert m3u8.loads(text).segments[-1].parts[0].uri == "part_2_0.m4s"


@pytest.mark.parametrize("low_latency", [True, False])
@pytest.mark.parametrize("cts_ms", [0, 67])
async def test_a_reconnect_continues_where_the_last_segment_ended(
    tmp_path: Path, low_latency: bool, cts_ms: int
) -> None:
    """The first picture after a reconnect is shown exactly where the last segment before it
    ends (EXTINF), B-frames or not, LL or plain: players have no hole to jump (hls.js reported
    bufferStalledError and bufferSeekOverHole there before), and decode times go on."""
    storage = LocalStorage(tmp_path)
    options = packager_options(hls_ladder=(), hls_low_latency=low_latency)
    pipeline = LivePipeline(3, "b1", options, storage, PackagerMetrics(), live_index=LiveIndex())
    seen: list[tuple[int, int, bool, int]] = []
    pipeline.source.on_segment = lambda _r, s, _e: seen.append(
        (s.start_ms, s.duration_ms, s.discontinuity, s.video[0].dts_ms)
    )
    for session in range(2):
        pipeline.feed(VIDEO)
        pipeline.feed(AUDIO)
        # The publisher comes back with timestamps of its own (here from 50 s).
        for packet in synthetic(5, cts_ms=cts_ms, start_ms=50_000 * session):
            pipeline.feed(packet)
        pipeline.end_session()
    await pipeline.finish()
    assert len(seen) == 6 and [d for _, _, d, _ in seen] == [False] * 3 + [True, False, False]
    last_before, first_after = seen[2], seen[3]
    assert first_after[0] == last_before[0] + last_before[1]
    assert first_after[3] > max(dts for *_, dts in seen[:3])


def test_the_wall_clock_anchor_is_refined_by_packets_that_came_at_the_publishers_pace() -> None:
    """A session's first keyframe arrives late (the publish was being set up): packets at
    the publisher's pace move its PDT anchor back, never later and never before the end of
    the previous session."""
    clock = WallClock()
    clock.anchor(0, 100.5)  # waited 0.5 s
    clock.refine(500, 100.6)  # the burst: says the start was at 100.1
    clock.refine(1000, 101.2)  # at pace, late: says 100.2, ignored
    assert clock.at(0).timestamp() == pytest.approx(100.1)
    clock.anchor(10_000, 120.0)  # a reconnect
    clock.refine(10_500, 105.0)  # would put it before the first session's end: clamped
    assert clock.at(10_000).timestamp() == pytest.approx(110.1)


class GatedStorage(LocalStorage):
    """Local storage whose writes wait while the gate is closed (a stalled backend)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = asyncio.Event()

    async def put(self, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        await self.gate.wait()
        await super().put(key, data, content_type, cache_control)


async def test_an_init_segment_of_a_dropped_segment_is_stored_with_the_next(
    tmp_path: Path,
) -> None:
    """LL-HLS lists a new init segment at once; storage gets it with the next segment queued.
    When that segment is dropped (the queue is full), the init goes with the one after."""
    storage = GatedStorage(tmp_path)
    options = packager_options(hls_ladder=(), hls_recording=True, hls_window=60)
    pipeline = LivePipeline(3, "b1", options, storage, PackagerMetrics(), live_index=LiveIndex())
    pipeline.feed(VIDEO)
    pipeline.feed(AUDIO)
    for packet in synthetic(40):  # 20 segments: 1 being written, 16 queued, the rest dropped
        pipeline.feed(packet)
    wider = dataclasses.replace(VIDEO, width=1280, height=720)
    pipeline.feed(wider)  # a new init segment, while the queue is still full
    for packet in synthetic(4, start_ms=40_000):
        pipeline.feed(packet)
    await asyncio.sleep(0.05)
    assert pipeline.metrics.dropped_segments._value.get() >= 3
    storage.gate.set()
    for packet in synthetic(6, start_ms=44_000):  # the publisher goes on
        pipeline.feed(packet)
    await pipeline.finish()
    assert (tmp_path / SOURCE / "init_1.mp4").exists()
    stored = (tmp_path / SOURCE / "live.m3u8").read_text()
    assert 'URI="init_1.mp4"' in stored
