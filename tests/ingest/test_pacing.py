"""ingest.pacing without sockets or sleeps: time and the chunk decoder's partial messages are
passed in. (test_server.py proves the same rules through the kernel's SO_RCVLOWAT.)"""

from __future__ import annotations

from ingest.pacing import MAX_LOW_WATER, MIN_LOW_WATER, ReadPacing
from ingest.rtmp.message import MessageType
from media.types import MediaPacket

KEY_HEAD = b"\x17\x01\x00\x00\x00"  # an AVC keyframe's first bytes
INTER_HEAD = b"\x27\x01\x00\x00\x00"


def video(dts: int, size: int, key: bool = False) -> MediaPacket:
    return MediaPacket("video", dts, dts, key, bytes(size))


def test_no_coalescing_until_a_tick_measured_the_rate() -> None:
    pacing = ReadPacing(0.1, now=0.0)
    assert not pacing.coalescing
    assert pacing.low_water([]) == 1


def test_a_busy_publisher_is_coalesced_to_its_rate_times_coalesce_s() -> None:
    pacing = ReadPacing(0.1, now=0.0)
    assert pacing.tick(1.0, 500_000) == 0.0  # 500 kB/s
    assert pacing.coalescing
    assert pacing.low_water([]) == 49_152  # 50 kB, in steps of 4 KiB
    pacing.tick(2.0, 500_000 + 5_000_000)  # 5 MB/s: capped
    assert pacing.low_water([]) == MAX_LOW_WATER


def test_a_slow_publisher_is_not_worth_coalescing() -> None:
    pacing = ReadPacing(0.1, now=0.0)
    pacing.tick(1.0, 30_000)  # 3 kB per 100 ms: under the floor
    assert pacing.low_water([]) == 1
    assert MIN_LOW_WATER > 3_000


def test_a_quiet_publisher_gets_every_byte_at_once_and_is_idle() -> None:
    pacing = ReadPacing(0.1, now=0.0)
    pacing.tick(1.0, 500_000)
    assert pacing.tick(2.0, 500_000) == 1.0  # nothing since the last tick
    assert not pacing.coalescing
    assert pacing.tick(31.5, 500_000) == 30.5
    assert pacing.tick(32.0, 500_001) == 0.0  # a byte came: not idle any more


def test_a_partial_keyframe_wakes_us_once_it_is_whole() -> None:
    pacing = ReadPacing(0.5, now=0.0)
    pacing.tick(1.0, 1_000_000)
    assert pacing.low_water([]) == MAX_LOW_WATER
    assert pacing.low_water([(MessageType.VIDEO, 30_000, KEY_HEAD)]) == 30_000
    # An inter frame, or audio, may wait for the mark.
    assert pacing.low_water([(MessageType.VIDEO, 30_000, INTER_HEAD)]) == MAX_LOW_WATER
    assert pacing.low_water([(MessageType.AUDIO, 300, b"\xaf\x01")]) == MAX_LOW_WATER


def test_before_a_due_keyframe_the_mark_is_half_the_last_frame() -> None:
    pacing = ReadPacing(0.5, now=0.0)  # the due window: 2 * 0.5 s before the keyframe
    pacing.on_video(video(0, 40_000, key=True))
    pacing.on_video(video(2970, 40_000, key=True))  # the interval: 2.97 s; next due at 5940
    pacing.tick(1.0, 1_000_000)
    pacing.on_video(video(4000, 12_000))
    assert pacing.low_water([]) == MAX_LOW_WATER  # mid-interval
    pacing.on_video(video(4940, 12_000))  # 1 s before the keyframe: inside the window
    assert pacing.low_water([]) == 6_000
    pacing.on_video(video(5940, 40_000, key=True))  # it came: the next is due at 8910
    pacing.on_video(video(5973, 12_000))
    assert pacing.low_water([]) == MAX_LOW_WATER


def test_one_keyframe_says_nothing_of_the_next() -> None:
    pacing = ReadPacing(0.5, now=0.0)
    pacing.tick(1.0, 1_000_000)
    pacing.on_video(video(0, 40_000, key=True))
    for dts in range(33, 100_000, 3_333):
        pacing.on_video(video(dts, 12_000))
        assert pacing.low_water([]) == MAX_LOW_WATER
