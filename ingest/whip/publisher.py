"""One WHIP publisher: its peer connection, the taps on its receivers, and the same
`PublishSession` an RTMP publisher feeds, so the packager cannot tell the two apart.

    aiortc receiver (jitter buffer, NACK) --tap--> RTP timestamp + frame bytes
        video: H264Framer (Annex B -> AVCC, parameter sets -> VideoConfig, GOP held after loss)
        audio: Opus, to the AudioTranscoder's thread -> AAC
    PublishClock (sender reports -> one millisecond timeline) -> PublishSession.feed

Everything here runs on the event loop except the audio transcode. Keyframes are asked for
(PLI) when media starts, after a loss, and whenever none came for a target duration: WebRTC
encoders send few on their own, and the segmenter can only cut at one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, OperationError
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from ingest.session import PublishSession
from ingest.whip.audio import OpusToAac
from ingest.whip.clock import PublishClock
from ingest.whip.codecs import AUDIO, VIDEO, keep_codecs
from ingest.whip.h264 import H264Framer, has_idr
from ingest.whip.signaling import SignalingError
from ingest.whip.tap import ReceiverTap
from media.audio_transcode import AudioTranscoder
from media.errors import CodecError
from media.types import MediaPacket

log = logging.getLogger(__name__)

VIDEO_RATE = 90_000
AUDIO_RATE = 48_000
#: A keyframe request at most this often while the stream is waiting for one.
PLI_MIN_INTERVAL_S = 0.5
#: Audio timed before the first video keyframe is out, held for it: ~3 s of 20 ms Opus.
EARLY_AUDIO_FRAMES = 150
#: Held audio this far before the first keyframe still goes out (one Opus frame).
EARLY_AUDIO_SLACK_MS = 20


@dataclass(frozen=True, slots=True)
class Negotiated:
    answer: str
    audio: bool  # video is always there: an offer without it is refused


class WhipPublisher:
    def __init__(
        self,
        session: PublishSession,
        configuration: RTCConfiguration,
        keyframe_interval_s: float,
        on_closed: Callable[[WhipPublisher], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resource_id = secrets.token_urlsafe(18)
        self.etag = f'"{secrets.token_hex(8)}"'
        self.session = session
        session.request_keyframe = self._want_keyframe  # for WHEP viewers that join
        self.pc = RTCPeerConnection(configuration)
        self.keyframe_interval_s = keyframe_interval_s
        self._on_closed = on_closed
        self._now = clock
        self._loop = asyncio.get_running_loop()
        self.framer = H264Framer()
        self.timeline: PublishClock[bytes] = PublishClock(
            {"video": VIDEO_RATE, "audio": AUDIO_RATE}
        )
        self.audio: AudioTranscoder | None = None
        self._video_tap: ReceiverTap | None = None
        self._video_started = False
        # Audio cannot go out before the first keyframe (the packager would start the session
        # on it), and video may be timed later than audio (its sender report comes later):
        # what the timeline releases meanwhile waits here, not dropped.
        self._early_audio: deque[tuple[int, bytes]] = deque(maxlen=EARLY_AUDIO_FRAMES)
        self._last_keyframe = 0.0
        self._last_pli = -PLI_MIN_INTERVAL_S
        self._last_video_ms = -1
        self._last_media = self._now()
        self._tasks: set[asyncio.Task[None]] = set()
        self.bad_frames = 0
        self.closed = False

    # --- negotiation ---

    async def negotiate(self, offer: str) -> Negotiated:
        """Apply the publisher's offer and return the answer, candidates included (OBS sends
        an offer without candidates and learns ours only from the answer)."""
        if "a=simulcast" in offer or "a=rid:" in offer:
            raise SignalingError(
                422, "simulcast_unsupported",
                "simulcast is not supported: turn Simulcast off in OBS (Settings > Stream)",
            )  # fmt: skip
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        except OperationError as exc:  # an m-line with no codec in common (AV1, HEVC, G722...)
            raise SignalingError(
                422, "unsupported_codec", f"{exc}: send H.264 video and Opus audio"
            ) from None
        except (ValueError, KeyError, IndexError, TypeError, InvalidAccessError) as exc:
            raise SignalingError(400, "bad_sdp", f"the offer is not valid SDP: {exc}") from None
        video = audio = False
        for transceiver in self.pc.getTransceivers():
            codecs = [c.name for c in transceiver._codecs if c.name.lower() != "rtx"]
            # One video and one audio track: further m-lines are answered inactive.
            if transceiver.kind == "video" and VIDEO in codecs and not video:
                _prefer(transceiver, VIDEO)
                self._video_tap = ReceiverTap(transceiver.receiver)
                self._video_tap.install(self._on_video, self._on_video_report, self._on_loss)
                video = True
            elif transceiver.kind == "audio" and AUDIO in codecs and not audio:
                _prefer(transceiver, AUDIO)
                ReceiverTap(transceiver.receiver).install(
                    self._on_audio, self._on_audio_report, lambda: None
                )
                audio = True
            else:
                transceiver.direction = "inactive"
        if not video:
            # Audio alone makes no HLS a player shows; VP8/VP9/AV1 are not taken yet.
            raise SignalingError(
                422, "unsupported_codec",
                "the offer has no H.264 video (packetization-mode 1); OBS: use the x264 or a "
                "hardware H.264 encoder",
            )  # fmt: skip
        self.pc.on("connectionstatechange", self._on_state)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)  # gathers every candidate first
        if self.closed:  # closed while gathering (the publish lock lost, a shutdown)
            raise SignalingError(409, "closed", "the publish was closed while it was set up")
        if audio:
            codec = OpusToAac()
            self.audio = AudioTranscoder(
                codec, self._deliver_audio, f"whip-audio-{self.session.live_id}"
            )
            self.session.set_audio_config(codec.config)
        self._spawn(self._watch())
        return Negotiated(self.pc.localDescription.sdp, audio)

    async def abort(self) -> None:
        """Undo a negotiation that failed: nothing was announced, nothing to end."""
        self.closed = True
        if self.audio is not None:
            self.audio.close()
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()

    # --- media (event loop) ---

    def _on_video(self, codec: str, rtp: int, data: bytes) -> None:
        self._last_media = now = self._now()
        if codec != VIDEO:
            return
        if has_idr(data):
            # Timed at arrival: the timeline may hold frames (waiting for a sender report), and
            # the next keyframe request must not wait for that too.
            self._last_keyframe = now
        self._timed(self.timeline.frame("video", rtp, now, data))

    def _on_audio(self, codec: str, rtp: int, data: bytes) -> None:
        self._last_media = now = self._now()
        if codec != AUDIO:
            return
        self._timed(self.timeline.frame("audio", rtp, now, data))

    def _timed(self, frames: list[tuple[str, int, bytes]]) -> None:
        # A frame of one track can release the other's: each goes where its track goes.
        for track, ms, frame in frames:
            if track == "video":
                self._video(ms, frame)
            elif self.audio is None:
                continue
            elif self._video_started:
                self.audio.submit(ms, frame)
            else:
                self._early_audio.append((ms, frame))

    def _on_video_report(self, rtp: int, ntp: int) -> None:
        self.timeline.report("video", rtp, ntp)

    def _on_audio_report(self, rtp: int, ntp: int) -> None:
        self.timeline.report("audio", rtp, ntp)

    def _on_loss(self) -> None:
        if not self.framer.broken:
            log.info("live %d: WHIP video lost frames; waiting for the next keyframe",
                     self.session.live_id)  # fmt: skip
        self.framer.lost()

    def _video(self, ms: int, data: bytes) -> None:
        try:
            framed = self.framer.frame(data)
        except CodecError as exc:
            self.bad_frames += 1
            if self.bad_frames == 1:
                log.warning("live %d: WHIP video frame refused: %s", self.session.live_id, exc)
            self.framer.lost()
            framed = None
        if framed is None:
            if self.framer.broken:
                self._want_keyframe()
            return
        if framed.config is not None:
            self.session.set_video_config(framed.config)
        # No B-frames over WebRTC: decode order is presentation order.
        ms = max(ms, self._last_video_ms + 1)
        self._last_video_ms = ms
        self.session.feed(MediaPacket("video", ms, ms, framed.keyframe, framed.data))
        if not self._video_started:
            self._video_started = True
            self._release_early_audio(ms)

    def _release_early_audio(self, first_video_ms: int) -> None:
        if self.audio is not None:
            for ms, frame in self._early_audio:
                if ms >= first_video_ms - EARLY_AUDIO_SLACK_MS:
                    self.audio.submit(ms, frame)
        self._early_audio.clear()

    def _deliver_audio(self, packets: list[tuple[int, bytes]]) -> None:
        """From the transcoder's thread."""
        self._loop.call_soon_threadsafe(self._feed_audio, packets)

    def _feed_audio(self, packets: list[tuple[int, bytes]]) -> None:
        if self.closed:
            return
        self.session.feed_batch([MediaPacket("audio", ms, ms, True, data) for ms, data in packets])

    def _want_keyframe(self) -> None:
        now = self._now()
        if now - self._last_pli >= PLI_MIN_INTERVAL_S and self._video_tap is not None:
            self._last_pli = now
            self._spawn(self._request_keyframe())

    async def _request_keyframe(self) -> None:
        if self._video_tap is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):  # transport closing
                await self._video_tap.request_keyframe()

    # --- life ---

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._last_media = self._now()  # the media timeout counts from here
            log.info("live %d: WHIP publisher %s connected", self.session.live_id,
                     self.session.client)  # fmt: skip
        elif state in ("failed", "closed"):
            self._spawn(self.close(f"connection {state}"))

    async def _watch(self, media_timeout_s: float = 10.0, connect_timeout_s: float = 15.0) -> None:
        """Keyframes on the segment grid; the end of a publisher that went away silently."""
        started = self._now()
        while not self.closed:
            await asyncio.sleep(min(0.25, self.keyframe_interval_s / 4))
            now = self._now()
            if self.pc.connectionState != "connected":
                if now - started > connect_timeout_s:
                    await self.close("no connection (ICE or DTLS failed)")
                continue
            if now - self._last_media > media_timeout_s:
                await self.close(f"no media for {media_timeout_s:.0f} s")
            elif self._video_started and now - self._last_keyframe >= self.keyframe_interval_s:
                self._want_keyframe()

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("live %d: WHIP publish ended: %s", self.session.live_id, reason)
        if self.audio is not None:
            self.audio.close()
        self.session.end()
        self._on_closed(self)
        await self.pc.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("live %d: WHIP task failed", self.session.live_id,
                      exc_info=task.exception())  # fmt: skip


def _prefer(transceiver: RTCRtpTransceiver, name: str) -> None:
    """Answer with ``name`` only (Chrome lists VP8 first; H.264 is what passes through)."""
    keep_codecs(transceiver, [c for c in transceiver._codecs if c.name == name])
