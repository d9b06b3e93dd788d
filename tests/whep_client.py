"""A WHEP viewer for tests: aiortc receiving (and decoding) what ``POST /whep/{live}`` sends,
and an RTMP publisher with sync marks (a white frame and a 1 kHz tone at each whole second)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from array import array
from dataclasses import dataclass, field

import httpx
import imageio_ffmpeg
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def publish_marked(rtmp_url: str, seconds: float, bframes: int = 0) -> subprocess.Popen[str]:
    """ffmpeg publishing 320x240@30 H.264 (no B-frames unless asked, as OBS sends for
    WebRTC) + AAC over RTMP, in real time, with a flash and a tone at each whole second."""
    video = ("color=c=black:s=320x240:r=30,format=yuv420p,"
             "geq=lum='if(lt(mod(T\\,1)\\,0.034)\\,235\\,16)':cb=128:cr=128")  # fmt: skip
    audio = ("sine=frequency=1000:sample_rate=48000,"  # 1/8 of full scale
             "volume='if(lt(mod(t\\,1)\\,0.1)\\,1\\,0)':eval=frame")  # fmt: skip
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin",
         "-re", "-f", "lavfi", "-i", video, "-re", "-f", "lavfi", "-i", audio,
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "60",
         "-bf", str(bframes), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
         "-t", str(seconds), "-f", "flv", rtmp_url],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def stop(publisher: subprocess.Popen[str]) -> str:
    """Kill the publisher; what it wrote to stderr."""
    publisher.kill()
    _, err = publisher.communicate()
    return err


@dataclass
class Received:
    status: int
    body: str = ""
    location: str | None = None
    #: (arrival monotonic time, mean luma, width, height) per decoded video frame.
    video: list[tuple[float, float, int, int]] = field(default_factory=list)
    #: (arrival monotonic time of the frame, onset offset within it in s) per loud audio frame.
    loud: list[float] = field(default_factory=list)
    audio_frames: int = 0
    audio_peak: float = 0.0
    deleted: int | None = None

    def flashes(self) -> list[float]:
        out: list[float] = []
        for t, luma, _, _ in self.video:
            if luma > 128 and (not out or t - out[-1] > 0.5):
                out.append(t)
        return out

    def beeps(self) -> list[float]:
        out: list[float] = []
        for t in self.loud:
            if not out or t - out[-1] > 0.5:
                out.append(t)
        return out


async def watch(url: str, seconds: float, cookies: dict[str, str] | None = None) -> Received:
    """Play ``url`` (``/whep/{live}``) for ``seconds``, then DELETE the session."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks: list[MediaStreamTrack] = []
    pc.on("track", tracks.append)
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=30, cookies=cookies) as client:
        answer = await client.post(url, content=pc.localDescription.sdp,
                                   headers={"Content-Type": "application/sdp"})  # fmt: skip
        got = Received(answer.status_code, answer.text, answer.headers.get("location"))
        if answer.status_code != 201:
            await pc.close()
            return got
        await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        readers = [asyncio.create_task(_read(track, got)) for track in tracks]
        await asyncio.sleep(seconds)
        assert got.location is not None
        got.deleted = (await client.delete(httpx.URL(url).join(got.location))).status_code
        for reader in readers:
            reader.cancel()
        await pc.close()
    return got


async def _read(track: MediaStreamTrack, got: Received) -> None:
    try:
        while True:
            frame = await track.recv()
            now = time.monotonic()
            if track.kind == "video":
                luma = bytes(frame.planes[0])[::97]  # type: ignore[union-attr]
                got.video.append((now, sum(luma) / len(luma), frame.width, frame.height))  # type: ignore[union-attr]
            else:
                got.audio_frames += 1
                left = _left(frame)  # type: ignore[arg-type]
                got.audio_peak = max([got.audio_peak, *map(abs, left)])
                loud = [i for i, v in enumerate(left) if abs(v) > 0.03]
                if loud:
                    got.loud.append(now + loud[0] / 48_000)
    except MediaStreamError:
        return


def _left(frame: AudioFrame) -> list[float]:
    """The first channel's samples as floats in [-1, 1] (aiortc's decoder gives FFmpeg's
    format: planar float, or interleaved 16-bit)."""
    data = bytes(frame.planes[0])
    if frame.format.name == "fltp":
        return list(array("f", data)[: frame.samples])
    if frame.format.name == "s16":
        return [v / 32768 for v in array("h", data)[:: len(frame.layout.channels)]]
    raise AssertionError(f"unexpected audio format {frame.format.name}")
