"""The WHIP timeline: RTP timestamps of two tracks made one millisecond timeline by sender
reports, by arrival when a sender sends none, across RTP wraps."""

from __future__ import annotations

from ingest.whip.clock import MAX_HELD, REPORT_WAIT_S, PublishClock, RtpExtender

NTP_2026 = 3_976_000_000 << 32  # some second in 2026, as a 64-bit NTP timestamp


def ntp(seconds: float) -> int:
    return NTP_2026 + round(seconds * 2**32)


def timed(out: list[tuple[str, int, str]]) -> dict[str, int]:
    """{item: ms}, each item named after its track ("v0" is video's)."""
    assert all(item[0] == track[0] for track, _, item in out), out
    return {item: ms for _, ms, item in out}


def test_extender_crosses_the_32_bit_wrap_and_takes_reordering() -> None:
    ext = RtpExtender()
    assert ext.extend(0xFFFF_FF00) == 0xFFFF_FF00
    assert ext.extend(0x0000_0100) == 0x1_0000_0100
    assert ext.extend(0xFFFF_FFF0) == 0xFFFF_FFF0  # one late packet from before the wrap
    assert ext.extend(0x0000_0200) == 0x1_0000_0200


def test_reports_put_both_tracks_on_the_sender_clock() -> None:
    """Video's RTP clock starts at 1000, audio's at 5_000_000: unrelated. The reports say
    audio's sample 5_000_000 was captured 40 ms after video's frame 1000."""
    clock: PublishClock[str] = PublishClock({"video": 90_000, "audio": 48_000})
    clock.report("video", 1000, ntp(10.0))
    clock.report("audio", 5_000_000, ntp(10.040))
    # Arrival times are noise here: the reports decide.
    out = clock.frame("video", 1000, 100.0, "v0")
    out += clock.frame("audio", 5_000_000, 100.3, "a0")
    out += clock.frame("video", 1000 + 3000, 100.31, "v1")  # +33.3 ms
    out += clock.frame("audio", 5_000_000 + 960, 100.32, "a1")  # +20 ms
    assert timed(out) == {"v0": 0, "a0": 40, "v1": 33, "a1": 60}


def test_frames_wait_for_every_started_track_s_report() -> None:
    clock: PublishClock[str] = PublishClock({"video": 90_000, "audio": 48_000})
    assert clock.frame("video", 0, 1.0, "v0") == []
    assert clock.frame("audio", 480, 1.01, "a0") == []
    clock.report("video", 0, ntp(0))
    assert clock.frame("video", 3000, 1.03, "v1") == []  # audio started without one: all wait
    clock.report("audio", 0, ntp(0))
    released = clock.frame("audio", 960, 1.02, "a1")
    assert timed(released) == {"v0": 0, "v1": 33, "a0": 10, "a1": 20}


def test_without_reports_frames_are_timed_by_arrival() -> None:
    clock: PublishClock[str] = PublishClock({"video": 90_000, "audio": 48_000})
    assert clock.frame("video", 7_000, 50.0, "v0") == []
    assert clock.frame("audio", 123, 50.05, "a0") == []
    out = clock.frame("video", 7_000 + 90_000 * 2, 50.0 + REPORT_WAIT_S + 0.5, "v1")
    assert timed(out) == {"v0": 0, "a0": 50, "v1": 2000}
    assert sorted(clock.by_arrival) == ["audio", "video"]


def test_a_track_late_to_report_keeps_the_others_timeline() -> None:
    """Video reports; audio never does: audio is anchored by arrival on the timeline that
    the video's report put on the arrival clock."""
    clock: PublishClock[str] = PublishClock({"video": 90_000, "audio": 48_000})
    clock.report("video", 0, ntp(500.0))  # the sender's clock is far from ours
    assert [item for _, _, item in clock.frame("video", 0, 10.0, "v0")] == ["v0"]
    clock.frame("audio", 0, 10.1, "a0")
    out = clock.frame("video", 90_000 * 2, 10.0 + REPORT_WAIT_S + 0.5, "v1")
    assert timed(out) == {"a0": 100, "v1": 2000}


def test_held_frames_are_bounded() -> None:
    clock: PublishClock[int] = PublishClock({"video": 90_000})
    for i in range(MAX_HELD + 50):  # no report, all within the wait
        assert clock.frame("video", i * 3000, 1.0, i) == []
    assert clock.dropped == 50
    released = clock.frame("video", 999 * 3000, 1.0 + REPORT_WAIT_S, 999)
    assert [item for _, _, item in released][:2] == [51, 52]
