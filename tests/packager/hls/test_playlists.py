"""Media and master playlists: the RFC 8216 clauses, checked by parsing them back with m3u8."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import m3u8

from packager.hls.playlists import (
    CMAF_VERSION,
    LivePlaylist,
    SegmentEntry,
    Variant,
    render_master,
    render_vod,
    rounded,
)

T0 = datetime(2026, 5, 26, 10, 0, tzinfo=UTC)


def entry(seq: int, duration: float = 2.0, *, disc: bool = False, init: str = "init.mp4"
          ) -> SegmentEntry:  # fmt: skip
    return SegmentEntry(
        seq, f"seg_{seq}.m4s", duration, disc, T0 + timedelta(seconds=2 * seq), init, 1000
    )


def test_the_live_window_slides_and_counts_discontinuities() -> None:
    playlist = LivePlaylist(6, version=CMAF_VERSION, minimum_target=2)
    for seq in range(10):
        playlist.add(entry(seq, disc=seq in (3, 8)))
    parsed = m3u8.loads(playlist.render())
    assert parsed.media_sequence == 4
    assert [s.uri for s in parsed.segments] == [f"seg_{n}.m4s" for n in range(4, 10)]
    # The tag before segment 3 left the window; the one before 8 is still in it.
    assert parsed.discontinuity_sequence == 1
    assert [s.discontinuity for s in parsed.segments] == [False] * 4 + [True, False]
    assert parsed.target_duration == 2
    assert parsed.version == 7
    assert parsed.is_independent_segments
    assert parsed.segment_map[0].uri == "init.mp4"
    assert all(s.program_date_time is not None for s in parsed.segments)
    assert not parsed.is_endlist
    playlist.ended = True
    assert m3u8.loads(playlist.render()).is_endlist


def test_the_first_playlist_has_media_sequence_zero() -> None:
    playlist = LivePlaylist(6, version=CMAF_VERSION, minimum_target=2)
    playlist.add(entry(0))
    assert "#EXT-X-MEDIA-SEQUENCE:0\n" in playlist.render()


def test_target_duration_covers_every_segment() -> None:
    playlist = LivePlaylist(6, version=CMAF_VERSION, minimum_target=2)
    _, raised = playlist.add(entry(0, 2.49))
    assert playlist.target_duration == 2 and not raised
    # A source with 5 s keyframes: fixed from the first segment, before any player saw it.
    long = LivePlaylist(6, version=CMAF_VERSION, minimum_target=2)
    long.add(entry(0, 5.0))
    assert long.target_duration == 5
    # A GOP that grows mid-stream leaves no valid choice but to raise it (and say so).
    _, raised = playlist.add(entry(1, 4.6))
    assert raised and playlist.target_duration == 5
    parsed = m3u8.loads(playlist.render())
    assert all(rounded(s.duration) <= parsed.target_duration for s in parsed.segments)


def test_vod_lists_everything() -> None:
    entries = [entry(n, 2.0 if n < 99 else 0.7, disc=n == 50) for n in range(100)]
    parsed = m3u8.loads(render_vod(entries, version=CMAF_VERSION, minimum_target=2))
    assert parsed.playlist_type == "vod"
    assert parsed.is_endlist
    assert len(parsed.segments) == 100
    assert sum(s.discontinuity for s in parsed.segments) == 1
    assert parsed.target_duration == 2


def test_a_changed_init_segment_gets_its_own_map() -> None:
    entries = [entry(0), entry(1, disc=True, init="init_1.mp4"), entry(2, init="init_1.mp4")]
    text = render_vod(entries, version=CMAF_VERSION, minimum_target=2)
    assert text.count("#EXT-X-MAP:") == 2
    assert [s.init_section.uri for s in m3u8.loads(text).segments] == [
        "init.mp4", "init_1.mp4", "init_1.mp4",
    ]  # fmt: skip


def test_master_playlist_attributes() -> None:
    text = render_master(
        [
            Variant("b1/source/live.m3u8", 5_100_000, 4_600_000, "avc1.64002a,mp4a.40.2",
                    (1920, 1080), 30.0),
            Variant("b1/720p/live.m3u8", 3_300_000, 3_100_000, "avc1.64001f,mp4a.40.2",
                    (1280, 720), 29.97),
            Variant("b1/source/live.m3u8", 130_000, 128_000, "mp4a.40.2", None, None),
        ],
        version=CMAF_VERSION,
    )  # fmt: skip
    parsed = m3u8.loads(text)
    assert parsed.is_variant and parsed.is_independent_segments
    first, second, audio = (p.stream_info for p in parsed.playlists)
    assert (first.bandwidth, first.average_bandwidth) == (5_100_000, 4_600_000)
    assert first.codecs == "avc1.64002a,mp4a.40.2"
    assert first.resolution == (1920, 1080)
    assert first.frame_rate == 30
    assert second.frame_rate == 29.97
    assert audio.resolution is None and audio.frame_rate is None
