"""A WHIP publisher for tests: aiortc sending H.264 + Opus, with sync marks.

Both tracks are paced by one clock started once: video is black with a white frame at each
whole second, audio silent with a 100 ms tone starting at each whole second, so a reader of the
output can measure A/V sync (`flashes` and `beeps`). The offer is sent the way OBS sends it
(``Authorization: Bearer KEY``, ``Content-Type: application/sdp``).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import math
import time
from array import array
from dataclasses import dataclass, field

import av
import httpx
import m3u8
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

FPS = 30
RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
TONE_S = 0.1


class _Clock:
    def __init__(self) -> None:
        self.start: float | None = None

    def origin(self) -> float:
        if self.start is None:
            self.start = time.time()
        return self.start


class MarkedVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self, clock: _Clock, width: int, height: int) -> None:
        super().__init__()
        self.clock, self.width, self.height, self.count = clock, width, height, 0
        self._black = av.VideoFrame(width, height, "yuv420p")
        for plane, value in zip(self._black.planes, (16, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)

    async def recv(self) -> av.VideoFrame:
        n = self.count
        self.count += 1
        await asyncio.sleep(max(0.0, self.clock.origin() + n / FPS - time.time()))
        if n % FPS == 0:
            frame = av.VideoFrame(self.width, self.height, "yuv420p")
            for plane, value in zip(frame.planes, (235, 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
        else:
            frame = self._black.reformat()  # a copy: the encoder may hold on to it
        frame.pts = n * (90_000 // FPS)
        frame.time_base = fractions.Fraction(1, 90_000)
        return frame


class MarkedAudio(MediaStreamTrack):
    kind = "audio"

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock, self.count = clock, 0

    async def recv(self) -> av.AudioFrame:
        n = self.count
        self.count += 1
        await asyncio.sleep(max(0.0, self.clock.origin() + n * AUDIO_FRAME / RATE - time.time()))
        samples = array("h")
        for i in range(n * AUDIO_FRAME, (n + 1) * AUDIO_FRAME):
            value = 0
            if i % RATE < TONE_S * RATE:
                value = int(math.sin(2 * math.pi * 1000 * i / RATE) * 12_000)
            samples.extend((value, value))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = n * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


@dataclass
class Published:
    status: int
    headers: httpx.Headers
    body: str
    connected: bool = False
    states: list[str] = field(default_factory=list)


async def publish(
    whip_url: str, key: str, seconds: float, *, size: tuple[int, int] = (640, 360),
    audio: bool = True, delete: bool = True,
) -> Published:  # fmt: skip
    """Publish for ``seconds`` once connected; DELETE the session at the end."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates: no STUN request
    clock = _Clock()
    video = pc.addTransceiver(MarkedVideo(clock, *size), direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "H264"]
    video.setCodecPreferences(h264)
    if audio:
        pc.addTransceiver(MarkedAudio(clock), direction="sendonly")
    connected = asyncio.Event()
    states: list[str] = []

    @pc.on("connectionstatechange")
    def _state() -> None:
        states.append(pc.connectionState)
        if pc.connectionState == "connected":
            connected.set()

    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"}
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(whip_url, content=pc.localDescription.sdp, headers=headers)
        result = Published(response.status_code, response.headers, response.text, states=states)
        if response.status_code != 201:
            await pc.close()
            return result
        await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        try:
            await asyncio.wait_for(connected.wait(), 15)
            result.connected = True
            await asyncio.sleep(seconds)
        finally:
            if delete:
                location = response.headers["location"]
                await http.delete(httpx.URL(whip_url).join(location), headers=headers)
            await pc.close()
    return result


def marks(rendition: str) -> tuple[list[float], list[float]]:
    """Times (s) of the white frames and of the tone onsets in one rendition's segments."""
    playlist = m3u8.loads(httpx.get(f"{rendition}/live.m3u8").text)
    data = httpx.get(f"{rendition}/init.mp4").content + b"".join(
        httpx.get(f"{rendition}/{s.uri}").content for s in playlist.segments
    )
    flashes: list[float] = []
    beeps: list[float] = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            luma = bytes(frame.planes[0])[::97]
            if sum(luma) / len(luma) > 128 and (not flashes or frame.time - flashes[-1] > 0.5):
                flashes.append(float(frame.time))
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            assert frame.format.name == "fltp"
            left = array("f", bytes(frame.planes[0]))[: frame.samples]
            loud = [i for i, value in enumerate(left) if abs(value) > 0.05]
            onset = float(frame.time) + (loud[0] / frame.sample_rate if loud else 0.0)
            if loud and (not beeps or onset - beeps[-1] > 0.5):
                beeps.append(onset)
    return flashes, beeps
