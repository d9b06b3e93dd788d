"""One rung of the ladder at run time: its scaler (run by the decode thread) and its encoder
thread (libx264, Annex B -> AVCC, timestamps and the real-time factor)."""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

from media.types import MediaPacket, VideoConfig
from packager.ladder.codec import Decimator, RungEncoder
from packager.ladder.metrics import LadderMetrics, RealtimeWindow
from packager.ladder.shedding import RungLoad
from packager.types import LadderItem, Rung, RungPaused

log = logging.getLogger("packager.ladder.ladder")

END = object()  # no more frames: flush the encoder and stop the thread
STOP = object()  # the rung was shed: flush the encoder; a later frame opens a new one


@dataclass(frozen=True, slots=True)
class Reopen:
    """The source's size changed: flush, and encode at this size from now on."""

    width: int
    height: int


@dataclass(eq=False)
class RungWorker:
    spec: Rung
    width: int
    height: int
    frame_rate: Fraction  # what the decimator lets through (Rung.fps is the cap)
    load: RungLoad
    preset: str
    x264_threads: int
    queue_frames: int
    #: (rung name, items) -> back to the event loop; called from the encoder thread.
    emit: Callable[[str, Sequence[LadderItem]], None]
    drop: Callable[[str], None]
    metrics: LadderMetrics | None = None
    queue: queue.Queue[object] = field(init=False)
    decimator: Decimator = field(init=False)
    reformatter: VideoReformatter = field(default_factory=VideoReformatter)
    window: RealtimeWindow = field(default_factory=RealtimeWindow)
    last_pts: float = -math.inf  # decode thread
    frames_encoded: int = 0  # encoder thread, and below
    packets_out: int = 0
    encoded_ms: int = 0

    def __post_init__(self) -> None:
        self.queue = queue.Queue(self.queue_frames)
        self.decimator = Decimator(self.frame_rate)

    @property
    def name(self) -> str:
        return self.spec.name

    # --- decode thread ---

    def take(self, pts: int, keyframe: bool) -> bool:
        """Whether this rung encodes the decoded frame at `pts`: it runs and its decimator
        keeps the frame (a waiting rung starts at its first keyframe from `start_from`)."""
        if self.load.state == "waiting" and keyframe and pts >= self.load.start_from:
            self.load.state = "active"
            self.decimator.reset()
            if self.metrics is not None:
                self.metrics.rungs_active.labels(self.name).inc()
        if self.load.state != "active" or not self.decimator.keep(pts, keyframe):
            return False
        if pts <= self.last_pts:
            self.drop("non_monotonic")
            return False
        self.last_pts = pts
        return True

    def scale(self, frame: VideoFrame) -> VideoFrame:
        """`frame` (the source's, or a larger rung's) at this rung's size, 4:2:0."""
        return self.reformatter.reformat(
            frame, self.width, self.height, "yuv420p", interpolation=Interpolation.BILINEAR,
            threads=1,
        )  # fmt: skip

    def put(self, scaled: VideoFrame, keyframe: bool) -> None:
        """Queue a scaled frame; blocks while the encoder is `queue_frames` behind."""
        self.queue.put((scaled, keyframe))

    def resize(self, width: int, height: int) -> None:
        if (width, height) != (self.width, self.height):
            self.width, self.height = width, height
            self.queue.put(Reopen(width, height))

    def stop(self) -> None:
        """Shed: the encoder thread flushes what it has and waits for a restore."""
        was_active = self.load.state == "active"
        self.queue.put(STOP)
        if self.metrics is not None:
            self.metrics.realtime_factor.labels(self.name).set(0)
            if was_active:
                self.metrics.rungs_active.labels(self.name).dec()

    # --- encoder thread ---

    def run(self) -> None:
        encoder: RungEncoder | None = None
        config: VideoConfig | None = None
        width, height = self.width, self.height
        last_pts: int | None = None
        broken = False  # libx264 would not open: the rung stays silent (logged once)
        while True:
            item = self.queue.get()
            if item is END or item is STOP or isinstance(item, Reopen):
                if encoder is not None:
                    self._send(self._encode(encoder.flush), last_pts)
                encoder, last_pts = None, None
                if item is STOP:
                    self.window.reset()
                    self.emit(self.name, [RungPaused()])  # after the flushed packets
                if isinstance(item, Reopen):
                    width, height = item.width, item.height
                if item is END:
                    break
                continue
            assert isinstance(item, tuple)  # (scaled frame, keyframe), queued by put()
            frame, keyframe = item
            if broken:
                self.drop("encoder")
                continue
            if encoder is None:
                try:
                    encoder = RungEncoder(
                        self.spec, width, height, self.frame_rate, self.preset, self.x264_threads
                    )
                except (av.FFmpegError, ValueError) as exc:
                    log.error("cannot open libx264 for rung %s: %s", self.name, exc)
                    broken = True
                    self.drop("encoder")
                    continue
                if encoder.config != config:  # a restart with the same avcC is seamless
                    config = encoder.config
                    self.emit(self.name, [config])
            self.frames_encoded += 1
            last_pts = self._send(self._encode(encoder.encode, frame, keyframe), last_pts)
        if self.metrics is not None:
            self.metrics.realtime_factor.labels(self.name).set(0)

    def _encode(self, call: Callable[..., list[MediaPacket]], *args: object) -> list[MediaPacket]:
        try:
            return call(*args)
        except av.FFmpegError as exc:
            log.warning("libx264 failed on rung %s: %s", self.name, exc)
            self.drop("encoder")
            return []

    def _send(self, packets: list[MediaPacket], last_pts: int | None) -> int | None:
        if not packets:
            return last_pts
        for packet in packets:
            if last_pts is not None:
                self.encoded_ms += packet.pts_ms - last_pts
            last_pts = packet.pts_ms
        self.packets_out += len(packets)
        factor = self.window.add(packets[-1].pts_ms)
        if self.metrics is not None:
            self.metrics.realtime_factor.labels(self.name).set(factor)
        self.emit(self.name, packets)
        return last_pts
