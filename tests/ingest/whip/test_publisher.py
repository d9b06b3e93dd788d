"""A WHIP publisher's media path, driven frame by frame with a fake clock: real x264 and libopus
frames, aiortc's peer connection created but never connected, the real `PublishSession`."""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration

from ingest.session import PublishSession
from ingest.whip.audio import OpusToAac
from ingest.whip.clock import NTP_UNIX_OFFSET_S
from ingest.whip.publisher import AUDIO_RATE, VIDEO_RATE, WhipPublisher
from media.audio_transcode import AudioTranscoder
from media.types import MediaPacket
from tests.ingest.whip.test_audio import opus_packets
from tests.ingest.whip.test_h264 import annexb_frames

WALL_S = 1_800_000_000.0  # the sender's wall clock at t = 0


def ntp(seconds: float) -> int:
    return int((seconds + NTP_UNIX_OFFSET_S) * 2**32)


async def test_audio_before_a_late_video_report_is_kept() -> None:
    """Chromium's audio report can come a second before its video report: the video is held
    by the timeline meanwhile while audio is timed. That audio must not be lost (it was: the
    first second of sound went missing in the browser A/V test, a flash with no tone)."""
    now = [0.0]
    session = PublishSession(live_id=1, app="live", client="test")
    feed = session.subscribe("test", maxsize=10_000)
    publisher = WhipPublisher(
        session, RTCConfiguration(iceServers=[]), 2.0, lambda _: None, clock=lambda: now[0]
    )
    codec = OpusToAac()
    publisher.audio = AudioTranscoder(codec, publisher._deliver_audio, "test-audio")
    session.set_audio_config(codec.config)
    video = annexb_frames(count=60, gop=300)
    audio = opus_packets(2.0)
    v0, a0 = 1234, 5678  # random RTP starts, as senders pick
    publisher._on_audio_report(a0, ntp(WALL_S))
    events: list[tuple[float, str, int]] = []
    events += [(i * 0.020, "audio", i) for i in range(len(audio))]
    events += [(0.1 + i / 30, "video", i) for i in range(len(video))]
    events.append((1.0, "video report", 0))
    for t, kind, i in sorted(events):
        now[0] = t
        if kind == "audio":
            publisher._on_audio("opus", a0 + round(t * AUDIO_RATE), audio[i])
        elif kind == "video":
            publisher._on_video("H264", v0 + round(t * VIDEO_RATE), video[i][0])
        else:
            publisher._on_video_report(v0 + round(t * VIDEO_RATE), ntp(WALL_S + t))
    publisher.audio.close()
    packets: list[MediaPacket] = []
    for _ in range(100):  # the transcoder's thread hands its output to the loop
        await asyncio.sleep(0.02)
        while (item := feed.get_nowait()) is not None:
            if isinstance(item, MediaPacket):
                packets.append(item)
        if packets and packets[-1].kind == "audio" and packets[-1].pts_ms > 1900:
            break
    await publisher.pc.close()
    first_video = min(p.pts_ms for p in packets if p.kind == "video")
    audio_times = sorted(p.pts_ms for p in packets if p.kind == "audio")
    assert first_video == 100, first_video
    assert audio_times, "no audio came out"
    # Audio starts with the video (one AAC frame of slack, 21 ms), not when its report came.
    assert abs(audio_times[0] - first_video) <= 25, (first_video, audio_times[:5])
    assert audio_times[-1] > 1900
