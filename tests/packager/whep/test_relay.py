"""The WHEP relay's parts on real media: AVCC -> Annex B that FFmpeg's decoder takes, the
per-viewer queues' bounds, and the relay pacing audio (transcoded) with its video and
continuing timestamps across publish sessions."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from array import array
from fractions import Fraction

import av

from ingest.session import PublishSession
from ingest.whip.h264 import H264Framer
from media.aac import parse_config
from media.types import MediaPacket
from packager.whep.annexb import AnnexB
from packager.whep.relay import LiveRelay, OutFrame, ViewerFeed
from tests.ingest.whip.test_h264 import annexb_frames


def avcc_stream(count: int = 20, gop: int = 10) -> tuple[list[tuple[bytes, bool]], AnnexB]:
    framer = H264Framer()
    out, annexb = [], None
    for data, _ in annexb_frames(count, gop):
        framed = framer.frame(data)
        assert framed is not None
        if framed.config is not None:
            annexb = AnnexB(framed.config)
        out.append((framed.data, framed.keyframe))
    assert annexb is not None
    return out, annexb


def test_annexb_decodes_from_any_keyframe() -> None:
    frames, annexb = avcc_stream()
    keyframes = [i for i, (_, key) in enumerate(frames) if key]
    assert keyframes == [0, 10]
    # A viewer joining at the second keyframe has only what the relay sends from there.
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    for data, key in frames[10:]:
        decoded += decoder.decode(av.Packet(annexb.frame(data, key)))
    decoded += decoder.decode(None)
    assert len(decoded) == 10 and (decoded[0].width, decoded[0].height) == (160, 96)
    assert annexb.frame(frames[10][0], True).startswith(annexb.parameter_sets)
    assert not annexb.frame(frames[11][0], False).startswith(annexb.parameter_sets)


def frame(kind: str, ms: int, keyframe: bool = False) -> OutFrame:
    return OutFrame(kind, ms, b"x", keyframe)


async def test_a_viewer_starts_at_a_keyframe_and_a_full_queue_restarts_at_the_next() -> None:
    feed = ViewerFeed(video_max=3, audio_max=2)
    assert feed.offer(frame("video", 0)) is True  # no keyframe yet: ask for one
    assert feed.offer(frame("video", 33, True)) is False
    feed.offer(frame("video", 66))
    feed.offer(frame("video", 99))
    assert feed.offer(frame("video", 133)) is True  # full: emptied, waits for a keyframe
    assert feed.video.empty() and feed.dropped == 1
    assert feed.offer(frame("video", 166)) is True
    feed.offer(frame("video", 200, True))
    assert feed.video.get_nowait().ms == 200  # type: ignore[union-attr]
    for ms in (0, 20, 40):
        feed.offer(frame("audio", ms))
    assert [feed.audio.get_nowait().ms for _ in range(2)] == [20, 40]  # type: ignore[union-attr]
    feed.close()
    assert feed.video.get_nowait() is None and feed.audio.get_nowait() is None


def aac_packets(seconds: float) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A 440 Hz tone as raw AAC-LC frames at their milliseconds, and its AudioSpecificConfig."""
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "stereo", "fltp"
    encoder.time_base = Fraction(1, 48_000)
    encoder.open()
    packets: list[tuple[int, bytes]] = []
    for start in range(0, int(seconds * 48_000), 1024):
        tone = array("f", (0.2 * math.sin(2 * math.pi * 440 * (start + n) / 48_000)
                           for n in range(1024)))  # fmt: skip
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(tone.tobytes())
        frame.sample_rate, frame.pts = 48_000, start
        packets += [(round(p.pts * 1000 / 48_000), bytes(p)) for p in encoder.encode(frame)
                    if p.pts is not None and p.pts >= 0]  # fmt: skip
    return bytes(encoder.extradata or b""), packets


async def test_the_relay_paces_audio_with_video_and_continues_across_sessions() -> None:
    frames, _ = avcc_stream(count=30, gop=15)
    extradata, audio = aac_packets(1.0)
    relay = LiveRelay(7, delay_s=0.15)
    feed = ViewerFeed()
    relay.add(feed)
    sent: list[tuple[str, int, float]] = []

    async def collect(queue: asyncio.Queue[OutFrame | None]) -> None:
        while (item := await queue.get()) is not None:
            sent.append((item.kind, item.ms, time.monotonic()))

    readers = [asyncio.create_task(collect(q)) for q in (feed.video, feed.audio)]
    framer_config = H264Framer().frame(annexb_frames(1)[0][0])
    assert framer_config is not None and framer_config.config is not None
    for session_start in (5_000, 100):  # a reconnect's timestamps start over
        session = PublishSession(7, "live", "test")
        session.set_video_config(framer_config.config)
        session.set_audio_config(parse_config(extradata))
        relay.attach(session)
        start = time.monotonic()
        a = 0
        for i, (data, key) in enumerate(frames):
            ms = session_start + i * 33
            while a < len(audio) and audio[a][0] <= i * 33:
                at = session_start + audio[a][0]
                session.feed(MediaPacket("audio", at, at, True, audio[a][1]))
                a += 1
            session.feed(MediaPacket("video", ms, ms, key, data))
            await asyncio.sleep(max(0.0, start + i * 0.033 - time.monotonic()))
        await asyncio.sleep(0.4)
        session.end()
    await relay.close()
    for reader in readers:
        await reader
    video = [(ms, t) for kind, ms, t in sent if kind == "video"]
    opus = [(ms, t) for kind, ms, t in sent if kind == "audio"]
    assert len(video) == 60 and len(opus) > 60
    times = [ms for ms, _ in video]
    assert times == sorted(times) and times[30] > times[29]  # the second session goes on
    # Each frame leaves at its media time on one clock: audio, though transcoded on a thread,
    # leaves with the video of the same instant (within a few ms of scheduling noise). The
    # last audio of a session waits for input that never comes (the codecs' frame sizes).
    for first, last in ((times[0], times[29]), (times[30], times[59])):
        mine = [(ms, t) for kind, ms, t in sent if first <= ms <= last - 100 or
                (kind == "video" and first <= ms <= last)]  # fmt: skip
        base = min(t - ms / 1000 for ms, t in mine)
        late = [t - ms / 1000 - base for ms, t in mine]
        assert max(late) < 0.06, sorted(late)[-5:]
        # Unpaced, audio left ~32 ms after its video (the Opus frame waits for enough AAC).
        sound, picture = (
            statistics.median(t - ms / 1000 for _, ms, t in mine_kinds(sent, first, last, kind))
            for kind in ("audio", "video")
        )
        assert abs(sound - picture) < 0.012, (sound - base, picture - base)


def mine_kinds(
    sent: list[tuple[str, int, float]], first: int, last: int, kind: str
) -> list[tuple[str, int, float]]:
    return [s for s in sent if s[0] == kind and first <= s[1] <= last - 100]
