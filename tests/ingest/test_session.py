"""Publish-session fan-out: bounded per-consumer queues that drop, count and resync."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ingest.session import PublishSession, Subscription
from media.types import AudioConfig, MediaPacket, VideoConfig

VIDEO = VideoConfig("h264", b"\x01", 640, 360, "avc1.64001e", 100, 30, 8, 1)
AUDIO = AudioConfig("aac", b"\x12\x10", 2, 48000, 2, "mp4a.40.2")


def frame(i: int, key: bool = False) -> MediaPacket:
    return MediaPacket("video", i * 33, i * 33, key, b"x" * 100)


def drain(sub: Subscription) -> list[object]:
    out = []
    while (item := sub.get_nowait()) is not None:
        out.append(item)
    return out


def test_new_consumer_gets_current_configs_first() -> None:
    session = PublishSession(1, "live", "peer")
    session.set_video_config(VIDEO)
    session.set_audio_config(AUDIO)
    sub = session.subscribe("late")
    session.feed(frame(0, key=True))
    assert drain(sub) == [VIDEO, AUDIO, frame(0, key=True)]


def test_slow_consumer_drops_then_resyncs_on_a_keyframe_with_configs() -> None:
    session = PublishSession(1, "live", "peer")
    drops: list[str] = []
    session.drop_hook = lambda s: drops.append(s.name)
    session.set_video_config(VIDEO)
    fast = session.subscribe("fast", maxsize=1000)
    slow = session.subscribe("slow", maxsize=5)
    session.feed(frame(0, key=True))
    for i in range(1, 30):  # the slow consumer reads nothing meanwhile
        session.feed(frame(i))
    assert len(slow) == 5  # bounded
    assert slow.dropped == 26
    assert drops == ["slow"] * 26
    assert len(drain(fast)) == 31  # config + 30 frames: the fast consumer lost nothing
    drain(slow)
    session.feed(frame(30))  # not a keyframe: still dropped while resyncing
    assert len(slow) == 0
    session.feed(frame(31, key=True))
    assert drain(slow) == [VIDEO, frame(31, key=True)]  # decodable again
    session.feed(frame(32))
    assert drain(slow) == [frame(32)]
    assert session.dropped == 27


def test_audio_only_resync_needs_no_keyframe() -> None:
    session = PublishSession(1, "live", "peer")
    session.set_audio_config(AUDIO)
    sub = session.subscribe("s", maxsize=2)
    audio = [MediaPacket("audio", i * 21, i * 21, True, b"a") for i in range(4)]
    for p in audio[:3]:
        session.feed(p)
    assert sub.dropped == 2  # the config took one of the two places
    assert drain(sub) == [AUDIO, audio[0]]
    session.feed(audio[3])
    assert drain(sub) == [AUDIO, audio[3]]


async def test_iteration_ends_with_the_session_and_never_blocks_the_producer() -> None:
    session = PublishSession(1, "live", "peer")
    sub = session.subscribe("reader", maxsize=10)
    got: list[object] = []

    async def read() -> None:
        async for item in sub:
            got.append(item)

    reader = asyncio.create_task(read())
    session.set_video_config(VIDEO)
    for i in range(5):
        session.feed(frame(i, key=i == 0))
        await asyncio.sleep(0)
    session.end()
    await asyncio.wait_for(reader, 1)
    assert got == [VIDEO, *(frame(i, key=i == 0) for i in range(5))]
    # Subscribing after the end yields nothing and does not hang.
    late = session.subscribe("late")
    assert [item async for item in late] == [VIDEO]
    assert session.packets == 5
    assert session.bytes_in == 500


def test_unsubscribe_stops_delivery() -> None:
    session = PublishSession(1, "live", "peer")
    sub = session.subscribe("gone")
    sub.unsubscribe()
    session.feed(frame(0, key=True))
    assert len(sub) == 0
    assert session.subscriptions == ()


_PACKETS = st.sampled_from(
    [frame(1, key=True), frame(2), MediaPacket("audio", 5, 5, True, b"a" * 10)]
)
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(_PACKETS, max_size=9)),
        st.tuples(st.just("read"), st.integers(0, 6)),
        st.tuples(st.just("config"), st.sampled_from([VIDEO, AUDIO])),
    ),
    max_size=30,
)


@given(steps=_STEPS, maxsize=st.integers(1, 8))
def test_feed_batch_is_feed_of_each_packet(steps: list[tuple[str, Any]], maxsize: int) -> None:
    """A batch (what the server hands over per read) gives every consumer exactly what feeding
    its packets one by one gives: the same items, drops, resyncs and counters, whether the
    batch fits, overflows or comes while the consumer resyncs."""
    one_by_one, batched = PublishSession(1, "live", "a"), PublishSession(1, "live", "b")
    subs = [s.subscribe("c", maxsize=maxsize) for s in (one_by_one, batched)]
    seen: list[list[object]] = [[], []]
    for op, arg in steps:
        if op == "batch":
            for packet in arg:
                one_by_one.feed(packet)
            batched.feed_batch(list(arg))
        elif op == "config":
            for session in (one_by_one, batched):
                session.set_video_config(arg) if arg is VIDEO else session.set_audio_config(arg)
        else:
            for sub, out in zip(subs, seen, strict=True):
                for _ in range(arg):
                    if (item := sub.get_nowait()) is not None:
                        out.append(item)
        assert seen[0] == seen[1]
        assert list(subs[0]._items) == list(subs[1]._items)
        assert (subs[0].dropped, subs[0]._resync) == (subs[1].dropped, subs[1]._resync)
        assert (one_by_one.packets, one_by_one.bytes_in) == (batched.packets, batched.bytes_in)


async def test_a_batch_wakes_a_waiting_consumer_once_with_all_its_packets() -> None:
    session = PublishSession(1, "live", "peer")
    sub = session.subscribe("c")
    got: list[object] = []

    async def consume() -> None:
        async for item in sub:
            got.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    session.feed_batch([frame(0, key=True), frame(1), frame(2)])
    await asyncio.sleep(0)
    assert got == [frame(0, key=True), frame(1), frame(2)]
    session.end()
    await task
