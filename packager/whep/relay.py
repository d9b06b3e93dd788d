"""One live's source rendition, relayed to its WHEP viewers.

    PublishSession (RTMP or WHIP) --subscription "whep"--> LiveRelay
        video: AVCC -> Annex B with the parameter sets before each keyframe (`AnnexB`)
        audio: AAC -> Opus on one thread per live (`AacToOpus`), shared by every viewer
    -> paced on one playout clock -> each viewer's bounded `ViewerFeed` -> its aiortc senders

Pacing: a frame leaves at ``base + ms + PLAYOUT_DELAY_S``, ``base`` being the smallest
arrival-minus-media-time seen (the fastest transit). Audio spends longer here (transcoded)
than video; sent as it is ready, it would reach the browser later than the video of the same
instant, and the browser, timing both by our RTCP sender reports (the send time of the last
packet), would play it that much late. Paced, both leave on the media's own clock. A source
that falls behind by more than `LATE_RESET_S` re-anchors the clock instead of bunching.

Timestamps continue across publish sessions (a reconnect inside the window): each session is
placed right after what the previous one sent, so a viewer's RTP timestamps never go back.

Nothing is decoded for video; a viewer starts at a keyframe (and asks the publisher for one
when the source can be asked: WHIP), and after its queue overflowed, at the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.session import PublishSession, Subscription
from media.audio_transcode import AudioTranscoder
from media.errors import CodecError
from media.types import AudioConfig, MediaPacket, VideoConfig
from packager.whep.annexb import AnnexB
from packager.whep.opus import AacToOpus

log = logging.getLogger(__name__)

PLAYOUT_DELAY_S = 0.08
LATE_RESET_S = 0.5
VIDEO_QUEUE = 90  # frames per viewer: ~3 s at 30 fps before it is dropped to a keyframe
AUDIO_QUEUE = 150  # 20 ms Opus frames: 3 s
SUBSCRIPTION_ITEMS = 600
#: Frames of the next session start this far after the last one sent.
SESSION_GAP_MS = 40
#: Video frames seen before a new relay can tell what the stream is (B-frames show in a GOP's
#: first few frames).
PROBE_FRAMES = 8


@dataclass(slots=True)
class OutFrame:
    kind: str  # "video" or "audio"
    ms: int  # the relay's timeline
    data: bytes  # Annex B access unit, or one Opus packet
    keyframe: bool


class ViewerFeed:
    """What one viewer is sent, bounded per kind. Video starts at a keyframe and, after the
    queue overflowed (a viewer slower than the stream), restarts at the next one."""

    def __init__(self, video_max: int = VIDEO_QUEUE, audio_max: int = AUDIO_QUEUE) -> None:
        self.video: asyncio.Queue[OutFrame | None] = asyncio.Queue(video_max)
        self.audio: asyncio.Queue[OutFrame | None] = asyncio.Queue(audio_max)
        self.waiting_keyframe = True
        self.dropped = 0
        self.closed = False

    def offer(self, frame: OutFrame) -> bool:
        """Queue ``frame``; True when this viewer waits for a keyframe (ask the source)."""
        if self.closed:
            return False
        if frame.kind == "audio":
            if self.audio.full():
                self.audio.get_nowait()  # the oldest sound goes: a gap, not a growing delay
                self.dropped += 1
            self.audio.put_nowait(frame)
            return False
        if self.waiting_keyframe:
            if not frame.keyframe:
                return True
            self.waiting_keyframe = False
        if self.video.full():
            while not self.video.empty():
                self.video.get_nowait()
            self.dropped += 1
            self.waiting_keyframe = True
            return True
        self.video.put_nowait(frame)
        return False

    def close(self) -> None:
        """Wake the senders with the end marker."""
        if self.closed:
            return
        self.closed = True
        for q in (self.video, self.audio):
            while q.full():
                q.get_nowait()
            q.put_nowait(None)


class LiveRelay:
    def __init__(
        self, live_id: int, *, delay_s: float = PLAYOUT_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.live_id = live_id
        self.delay_s = delay_s
        self._now = clock
        self._loop = asyncio.get_running_loop()
        self.viewers: set[ViewerFeed] = set()
        self.joining = 0  # viewers being negotiated: the relay is not idle
        self.session: PublishSession | None = None
        self.video: AnnexB | None = None
        #: Why viewers cannot be given video now (a codec WebRTC playback does not take).
        self.unplayable: str | None = None
        self.reorders = False  # B-frames: WebRTC decoders render in decode order
        self.probed = asyncio.Event()  # PROBE_FRAMES video frames seen
        self._video_frames = 0
        self._subscription: Subscription | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._pacer = self._loop.create_task(self._pace(), name=f"whep-pace-{live_id}")
        self._heap: list[tuple[float, int, OutFrame]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._audio: AudioTranscoder | None = None
        self._audio_config: AudioConfig | None = None
        self._audio_generation = 0
        self._offset: int | None = None  # session ms -> relay ms, per session
        self._last_ms = -SESSION_GAP_MS
        self._base: float | None = None
        self.sent = 0
        self.closed = False

    # --- the source ---

    def attach(self, session: PublishSession) -> None:
        """Relay ``session`` from now on (the first, or a reconnect's)."""
        self._detach()
        self.session = session
        self._offset = None
        self._base = None  # a new sender: its own transit time
        self._subscription = session.subscribe("whep", SUBSCRIPTION_ITEMS)
        self._consumer = self._loop.create_task(
            self._consume(self._subscription), name=f"whep-source-{self.live_id}"
        )
        self.request_keyframe()  # every viewer waits for one now

    def _detach(self) -> None:
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = None

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe when it can be asked (WHIP; RTMP cannot)."""
        session = self.session
        if session is not None and session.request_keyframe is not None and not session.ended:
            session.request_keyframe()

    async def _consume(self, subscription: Subscription) -> None:
        dropped = 0
        async for item in subscription:
            try:
                if subscription.dropped != dropped:  # this relay fell behind: a hole
                    dropped = subscription.dropped
                    for viewer in self.viewers:
                        viewer.waiting_keyframe = True
                if isinstance(item, VideoConfig):
                    self._video_config(item)
                elif isinstance(item, AudioConfig):
                    self._set_audio(item)
                else:
                    self._packet(item)
            except CodecError as exc:
                log.warning("live %d: WHEP relay skipped a frame: %s", self.live_id, exc)
                for viewer in self.viewers:
                    viewer.waiting_keyframe = True

    def _video_config(self, config: VideoConfig) -> None:
        try:
            self.video = AnnexB(config)
            self.unplayable = None
        except CodecError as exc:
            self.video = None
            self.unplayable = str(exc)
            log.warning("live %d: no WebRTC playback: %s", self.live_id, exc)
        for viewer in self.viewers:
            viewer.waiting_keyframe = True

    def _set_audio(self, config: AudioConfig) -> None:
        if config == self._audio_config and self._audio is not None:
            return
        if self._audio is not None:
            self._audio.close()
        self._audio_config = config
        self._audio_generation += 1
        generation = self._audio_generation
        try:
            codec = AacToOpus(config)
        except Exception as exc:  # an AAC config FFmpeg refuses: video goes on alone
            log.warning("live %d: WHEP audio off: %s", self.live_id, exc)
            self._audio = None
            return

        def deliver(frames: list[tuple[int, bytes]]) -> None:  # the transcoder's thread
            self._loop.call_soon_threadsafe(self._opus, generation, frames)

        self._audio = AudioTranscoder(codec, deliver, f"whep-audio-{self.live_id}")

    def _packet(self, packet: MediaPacket) -> None:
        if self._offset is None:
            self._offset = self._last_ms + SESSION_GAP_MS - packet.dts_ms
        ms = packet.pts_ms + self._offset
        self._anchor(ms)
        if packet.kind == "audio":
            if self._audio is not None:
                self._audio.submit(ms, packet.data)
            return
        if self.video is None:
            return
        self._video_frames += 1
        if self._video_frames == PROBE_FRAMES:
            self.probed.set()
        if packet.pts_ms != packet.dts_ms and not self.reorders:
            self.reorders = True
            log.warning("live %d: the stream has B-frames; WebRTC playback stutters on them "
                        "(OBS: x264 options bframes=0)", self.live_id)  # fmt: skip
        data = self.video.frame(packet.data, packet.keyframe)
        self._last_ms = max(self._last_ms, ms)
        self._schedule(OutFrame("video", ms, data, packet.keyframe))

    def _opus(self, generation: int, frames: list[tuple[int, bytes]]) -> None:
        if generation != self._audio_generation or self.closed:
            return
        for ms, data in frames:
            self._schedule(OutFrame("audio", ms, data, True))

    # --- the playout clock ---

    def _anchor(self, ms: int) -> None:
        transit = self._now() - ms / 1000
        if self._base is None or transit < self._base or transit - self._base > LATE_RESET_S:
            self._base = transit

    def _schedule(self, frame: OutFrame) -> None:
        if self._base is None:  # the last Opus of a session that just ended, after attach()
            self._anchor(frame.ms)
        assert self._base is not None
        due = self._base + frame.ms / 1000 + self.delay_s
        heapq.heappush(self._heap, (due, next(self._order), frame))
        if self._heap[0][2] is frame:  # a new head: the pacer may be sleeping for a later one
            self._wake.set()

    async def _pace(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = heap[0][0] - self._now()
            if wait > 0.001:
                # A frame scheduled earlier than the head (audio after its video) wakes us.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, 1.0))
                continue
            _, _, frame = heapq.heappop(heap)
            self.sent += 1
            want = False
            for viewer in self.viewers:
                want |= viewer.offer(frame)
            if want and frame.kind == "video":
                self.request_keyframe()

    # --- viewers ---

    def add(self, viewer: ViewerFeed) -> None:
        self.viewers.add(viewer)
        self.request_keyframe()

    def remove(self, viewer: ViewerFeed) -> None:
        self.viewers.discard(viewer)
        viewer.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._detach()
        if self._audio is not None:
            self._audio.close()
        self._pacer.cancel()
        for viewer in list(self.viewers):
            viewer.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pacer
