"""The transcoded ABR ladder of one live: decode the source once, scale, encode every rung.

Threads (PyAV releases the GIL in FFmpeg, so they run in parallel; the event loop only queues):

    push() (loop) -> bounded packet queue -> decode thread: decode (FFmpeg frame+slice threads,
        2 by default), decimate, scale per rung -> small bounded frame queue per rung -> one
        encoder thread per rung: libx264 (sliced threads, one per core up to 4), Annex B ->
        AVCC -> loop.call_soon_threadsafe(on_output)

Decisions (see the packager/types.py docstring for the alignment rule they serve):

- Keyframes: x264 never places one itself (huge keyint, no scene cuts, closed GOPs); the frame
  whose pts is a source keyframe's pts is marked I and, with ``forced-idr``, becomes an IDR.
  So every rendition has its IDRs at exactly the source's keyframe timestamps.
- Latency (target: a rung's segment closes at most 0.5 s after the source's): no B-frames in
  rungs (``bframes=0``: dts == pts, nothing to reorder), rc-lookahead 8 instead of veryfast's
  10, x264 *sliced* threads (frame threads add a frame of delay each; measured CPU is the
  same), two decoder threads (not FFmpeg's "cores + 1": each adds a frame too). Delay: the
  source's reorder depth (2 frames for OBS) + 1 decode + 9 encode frames, ~0.42 s at 30 fps
  from a keyframe's push to its rung IDR. B-frames would save some bits at the same bitrate,
  at ~2 more frames of delay.
- Frame rate: rungs are capped at `Rung.fps` by `Decimator` (60 -> 30 keeps every other frame
  by pts); a source keyframe is never dropped (it is a forced IDR) and restarts the grid.
- Scaling: `VideoReformatter` (swscale) per rung with bilinear filtering, one thread, in the
  decode thread. Measured on 1080p -> 720/480/360: same CPU as an `av.filter.Graph` with
  split/scale (~5.8 ms/frame), a third of bicubic. Scaling in the decode thread (rather than in
  each encoder thread) is deliberate: swscale temporarily rewrites colour fields of the *source*
  frame, so rungs must not scale one frame concurrently; and it keeps only small frames queued.
- Shedding: the packet queue is the one overload signal (the decode thread blocks on a full
  rung queue, so any slow stage backs up into it). When it stays above `shed_at` of its bound
  for `shed_after_s` (1.5 s of backlog for 2 s: not a hiccup of a shared machine), the most
  expensive active rung (pixels x fps) stops: its encoder is flushed (every frame handed to
  it comes out) and it emits nothing more. Another rung is shed only after `settle_s` and if the
  queue did not shrink meanwhile. When the queue stays under `calm_at` for the rung's cool-down,
  the last shed rung restarts at the next source keyframe with a fresh encoder (its VideoConfig
  is emitted again only if it differs). A rung shed again soon after a restore doubles its
  cool-down (up to `restore_after_max_s`), so an overloaded machine does not flap. If the queue
  fills anyway, packets are dropped (never blocking push()) and the ladder resumes at the next
  keyframe.
- What a player sees: a shed rung's playlist stops growing (the pipeline keeps the last one);
  a player on it stalls and its ABR logic moves to another variant, the source one included.
  On restore the rung's next segment starts at a source keyframe, after a timestamp gap.

Precondition: pts of the source packets increase within one Ladder (the pipeline owns the
continuous timeline across reconnects); frames whose pts does not are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

from ingest.media import MediaPacket, VideoConfig
from packager.ladder_codec import (
    Decimator,
    RungEncoder,
    make_decoder,
    output_rate,
    rung_size,
    runs_for_source,
    to_av_packet,
)
from packager.ladder_metrics import LadderMetrics, RealtimeWindow
from packager.ladder_queue import DropQueue
from packager.thumbnails import Thumbnailer
from packager.types import RenditionItem, Rung

__all__ = ["Ladder", "LadderMetrics", "LadderPolicy"]

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, RenditionItem], None]
RungState = Literal["waiting", "active", "shed"]


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    """Queue bounds and the shedding/restoring thresholds."""

    queue_packets: int = 90  # 3 s of 30 fps video waiting to be decoded, at most
    shedding: bool = True  # off: a slow ladder only lags (then drops at the queue bound)
    rung_queue_frames: int = 3  # scaled frames waiting for each encoder
    shed_at: float = 0.5  # queue fill (fraction) at which the ladder is behind
    shed_after_s: float = 2.0  # ... for this long without a break: not a passing hiccup
    calm_at: float = 0.1  # queue fill under which the machine is keeping up
    settle_s: float = 3.0  # at least this long between two sheds
    restore_after_s: float = 10.0  # calm time before a shed rung restarts
    restore_after_max_s: float = 320.0  # cool-down cap after repeated sheds
    stable_s: float = 60.0  # a rung running this long is back to the base cool-down


_END = object()  # no more input: flush and stop
_STOP = object()  # rung shed: flush its encoder


@dataclass(frozen=True, slots=True)
class _Reopen:
    width: int
    height: int


@dataclass(eq=False)
class _Rung:
    spec: Rung
    width: int
    height: int
    fps: int
    frame_rate: Fraction  # what the decimator lets through; fps is the rung's cap
    queue: queue.Queue[object]
    cooldown: float
    decimator: Decimator
    reformatter: VideoReformatter = field(default_factory=VideoReformatter)
    window: RealtimeWindow = field(default_factory=RealtimeWindow)
    # Decode thread only.
    state: RungState = "waiting"
    start_from: float = -math.inf  # becomes active at a keyframe with pts >= this
    last_pts: float = -math.inf
    shed_time: float = 0.0
    restored_time: float | None = None
    sheds: int = 0
    restores: int = 0
    # Encoder thread only.
    frames_encoded: int = 0
    packets_out: int = 0
    encoded_ms: int = 0

    @property
    def cost(self) -> int:
        return self.width * self.height * self.fps


class Ladder:
    """Transcodes one live's source video into the rungs that fit under it.

    `on_output(rung_name, item)` runs on the event loop thread: first the rung's `VideoConfig`
    (libx264's avcC), then its `MediaPacket`s (AVCC, 4-byte lengths, ms timestamps on the
    source's clock, keyframe == IDR). With a `thumbnailer`, the ladder feeds it (decoded
    frames while it decodes anyway, keyframe packets otherwise) and starts and ends it; the
    caller then does not push to it.
    """

    def __init__(
        self,
        rungs: Sequence[Rung],
        preset: str = "veryfast",
        *,
        on_output: OutputCallback,
        loop: asyncio.AbstractEventLoop,
        metrics: LadderMetrics | None = None,
        thumbnailer: Thumbnailer | None = None,
        policy: LadderPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
        decode_threads: int = 2,
        encode_threads: int = 0,
    ) -> None:
        self.specs = tuple(rungs)
        self.preset = preset
        self.on_output = on_output
        self.loop = loop
        self.metrics = metrics
        self.thumbnailer = thumbnailer
        self.policy = policy or LadderPolicy()
        self.clock = clock
        self.name = name or "ladder"
        self.decode_threads = decode_threads
        self.encode_threads = encode_threads
        self.rungs: list[_Rung] = []
        self.source: VideoConfig | None = None
        self.packets_in = 0
        self.max_queue_depth = 0  # the most packets ever waiting: how far behind it fell
        self.frames_decoded = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._queue: DropQueue[MediaPacket] = DropQueue(self.policy.queue_packets)
        self._lock = threading.Lock()  # the drop counters, bumped from several threads
        self._closed: asyncio.Future[None] = loop.create_future()
        self._ended = False
        self._resync = False
        self._threads: list[threading.Thread] = []
        # Decode thread only.
        self._decoder: VideoCodecContext | None = None
        self._need_key = True
        self._idle = False
        self._keyframes: collections.deque[int] = collections.deque()
        self._shed_stack: list[_Rung] = []
        self._busy_time = -math.inf
        self._behind_since: float | None = None
        self._shed_time = -math.inf
        self._shed_depth = 0

    # --- loop-thread API ---

    def start(self, source_video: VideoConfig) -> None:
        if self._ended:
            return
        if self.source is not None:
            if source_video != self.source:
                # A new sequence header: same rungs, new decoder (and new sizes if the aspect
                # ratio changed), taken in order with the packets.
                self.source = source_video
                self._queue.put_control(source_video)
            return
        self.source = source_video
        if self.thumbnailer is not None:
            self.thumbnailer.start(source_video)
        # A config without a picture size (VP9 always) runs no rung: nothing to compare.
        chosen = [r for r in self.specs if runs_for_source(r, source_video)]
        for spec in chosen:
            width, height = rung_size(spec, source_video.width, source_video.height)
            fps, rate = spec.fps, output_rate(spec, source_video)
            self.rungs.append(
                _Rung(
                    spec,
                    width,
                    height,
                    fps,
                    rate,
                    queue.Queue(self.policy.rung_queue_frames),
                    self.policy.restore_after_s,
                    Decimator(rate),
                )
            )
        skipped = [r.name for r in self.specs if r not in chosen]
        log.info(
            "%s: %s %dx%d source; rungs %s (skipped: %s)",
            self.name,
            source_video.codec,
            source_video.width,
            source_video.height,
            ", ".join(
                f"{r.spec.name} {r.width}x{r.height}@{float(r.frame_rate):g}" for r in self.rungs
            )
            or "none",
            ", ".join(skipped) or "none",
        )
        if not self.rungs:
            return  # push() hands keyframes to the thumbnailer, if any
        for rung in self.rungs:
            self._spawn(f"{self.name}-{rung.spec.name}", self._encode_loop, rung)
        self._spawn(f"{self.name}-decode", self._decode_loop)

    def push(self, packet: MediaPacket) -> None:
        """Queue one source video packet; never blocks (drops and counts when behind)."""
        if packet.kind != "video" or packet.track_id != 0 or self._ended:
            return
        if self.source is None:
            self._drop("not_started")
            return
        if not self.rungs:
            if self.thumbnailer is not None:
                self.thumbnailer.push(packet)
            return
        self.packets_in += 1
        if self._resync and not packet.keyframe:
            self._drop("overload")
            return
        if not self._queue.put(packet):
            if not self._resync:
                log.warning(
                    "%s: the ladder is %d packets behind: dropping until the next keyframe",
                    self.name,
                    self._queue.maxsize,
                )
            self._resync = True
            self._drop("overload")
            return
        self._resync = False
        self.max_queue_depth = max(self.max_queue_depth, len(self._queue))
        if self.metrics is not None:
            self.metrics.queue_depth.inc()

    def end(self) -> None:
        """Flush the encoders, emit what remains, stop the threads. Idempotent."""
        if self._ended:
            return
        self._ended = True
        if self._threads:
            self._queue.put_control(_END)  # the decode thread closes once all is emitted
        else:
            self._set_closed()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
        if self.thumbnailer is not None:
            await self.thumbnailer.wait_closed()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, object]:
        """Counters for logs and benchmarks (read from any thread; approximate while running)."""
        with self._lock:
            dropped = dict(self.dropped)
        return {
            "packets_in": self.packets_in,
            "frames_decoded": self.frames_decoded,
            "dropped": dropped,
            "queue_depth": self.queue_depth,
            "max_queue_depth": self.max_queue_depth,
            "rungs": {
                r.spec.name: {
                    "width": r.width,
                    "height": r.height,
                    "fps": r.fps,
                    "state": r.state,
                    "frames_encoded": r.frames_encoded,
                    "packets_out": r.packets_out,
                    "encoded_seconds": r.encoded_ms / 1000,
                    "realtime_factor": round(r.window.factor, 3),
                    "sheds": r.sheds,
                    "restores": r.restores,
                }
                for r in self.rungs
            },
        }

    # --- threads ---

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _decode_loop(self) -> None:
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, MediaPacket):
                    if self.metrics is not None:
                        self.metrics.queue_depth.dec()
                    self._on_packet(item)
                elif isinstance(item, VideoConfig):
                    self._reconfigure(item)
            self._drain_decoder()
        finally:
            for rung in self.rungs:
                rung.queue.put(_END)
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()
            self._call_soon(self._set_closed)

    def _on_packet(self, packet: MediaPacket) -> None:
        self._policy_tick(packet, len(self._queue))
        wanted = any(r.state != "shed" for r in self.rungs)
        if not wanted:
            # Every rung is shed: decoding would be wasted. Thumbnails come from keyframes.
            self._idle = True
            if packet.keyframe and self.thumbnailer is not None:
                self.thumbnailer.push(packet)
            return
        if self._idle or self._need_key:
            if not packet.keyframe:
                return  # nothing decodable before a keyframe
            if self._idle and self._decoder is not None:
                self._decoder.flush_buffers()
            self._idle = self._need_key = False
        if packet.keyframe:
            self._keyframes.append(packet.pts_ms)  # its frame becomes an IDR in every rung
        try:
            if self._decoder is None:
                assert self.source is not None  # set by start() before any thread runs
                self._decoder = make_decoder(self.source, self.decode_threads)
            frames = self._decoder.decode(to_av_packet(packet))
        except (av.FFmpegError, ValueError) as exc:
            self._bad_packet(packet, exc)
            return
        for frame in frames:
            self._on_frame(frame)

    def _drain_decoder(self) -> None:
        if self._decoder is None:
            return
        try:
            frames = self._decoder.decode(None)
        except av.FFmpegError as exc:
            log.warning("%s: flushing the decoder failed: %s", self.name, exc)
            return
        for frame in frames:
            self._on_frame(frame)

    def _reconfigure(self, config: VideoConfig) -> None:
        self._drain_decoder()
        self._decoder = None
        self._need_key = True
        self._keyframes.clear()
        for rung in self.rungs:
            width, height = rung_size(rung.spec, config.width, config.height)
            if (width, height) != (rung.width, rung.height):
                rung.width, rung.height = width, height
                rung.queue.put(_Reopen(width, height))
        log.info(
            "%s: new source configuration %s %dx%d",
            self.name,
            config.codec,
            config.width,
            config.height,
        )

    def _on_frame(self, frame: VideoFrame) -> None:
        if frame.pts is None:
            self._drop("no_pts")
            return
        pts = int(frame.pts)
        self.frames_decoded += 1
        keys = self._keyframes
        while keys and keys[0] < pts:
            keys.popleft()  # a keyframe whose frame never came out (a decode error)
        keyframe = bool(keys) and keys[0] == pts
        if keyframe:
            keys.popleft()
            if self.thumbnailer is not None:
                self.thumbnailer.push_frame(frame, pts)
        for rung in self.rungs:
            if rung.state == "waiting" and keyframe and pts >= rung.start_from:
                rung.state = "active"
                rung.decimator.reset()
                if self.metrics is not None:
                    self.metrics.rungs_active.labels(rung.spec.name).inc()
            if rung.state != "active" or not rung.decimator.keep(pts, keyframe):
                continue
            if pts <= rung.last_pts:
                self._drop("non_monotonic")
                continue
            rung.last_pts = pts
            scaled = rung.reformatter.reformat(
                frame,
                rung.width,
                rung.height,
                "yuv420p",
                interpolation=Interpolation.BILINEAR,
                threads=1,
            )
            rung.queue.put((scaled, keyframe))

    # --- shedding ---

    def _policy_tick(self, packet: MediaPacket, depth: int) -> None:
        policy, now = self.policy, self.clock()
        if not policy.shedding:
            return
        if depth >= policy.shed_at * policy.queue_packets:
            self._busy_time = now
            if self._behind_since is None:
                self._behind_since = now
            running = [r for r in self.rungs if r.state != "shed"]
            sustained = now - self._behind_since >= policy.shed_after_s
            # After a shed, another only if the backlog did not shrink meanwhile.
            worse = self._shed_time == -math.inf or depth >= self._shed_depth
            if running and sustained and worse and now - self._shed_time >= policy.settle_s:
                self._shed(max(running, key=lambda r: r.cost), now, depth)
        else:
            self._behind_since = None
            if depth > policy.calm_at * policy.queue_packets:
                self._busy_time = now
        if packet.keyframe and self._shed_stack:
            rung = self._shed_stack[-1]
            if now - max(self._busy_time, rung.shed_time) >= rung.cooldown:
                self._restore(rung, packet.pts_ms, now)

    def _shed(self, rung: _Rung, now: float, depth: int) -> None:
        was_active = rung.state == "active"
        rung.state = "shed"
        rung.shed_time = now
        rung.sheds += 1
        flapping = (
            rung.restored_time is not None and now - rung.restored_time < self.policy.stable_s
        )
        base, cap = self.policy.restore_after_s, self.policy.restore_after_max_s
        rung.cooldown = min(rung.cooldown * 2, cap) if flapping else base
        self._shed_stack.append(rung)
        self._shed_time, self._shed_depth = now, depth
        rung.queue.put(_STOP)
        log.warning(
            "%s: cannot keep up (%d packets queued): shedding rung %s; retry after %.0f s calm",
            self.name,
            depth,
            rung.spec.name,
            rung.cooldown,
        )
        if self.metrics is not None:
            self.metrics.rungs_shed.labels(rung.spec.name).inc()
            self.metrics.realtime_factor.labels(rung.spec.name).set(0)
            if was_active:
                self.metrics.rungs_active.labels(rung.spec.name).dec()

    def _restore(self, rung: _Rung, keyframe_pts: int, now: float) -> None:
        self._shed_stack.pop()
        rung.state = "waiting"
        rung.start_from = keyframe_pts
        rung.restored_time = now
        rung.restores += 1
        self._busy_time = now  # one rung at a time: the next waits for a new calm period
        log.info(
            "%s: load allows: restoring rung %s at pts %d ms",
            self.name,
            rung.spec.name,
            keyframe_pts,
        )
        if self.metrics is not None:
            self.metrics.rungs_restored.labels(rung.spec.name).inc()

    # --- encoder threads ---

    def _encode_loop(self, rung: _Rung) -> None:
        encoder: RungEncoder | None = None
        config: VideoConfig | None = None
        width, height = rung.width, rung.height
        last_pts: int | None = None
        broken = False  # libx264 would not open: the rung stays silent (logged once)
        while True:
            item = rung.queue.get()
            if item is _END or item is _STOP or isinstance(item, _Reopen):
                if encoder is not None:
                    self._emit(rung, self._safe(rung, encoder.flush), last_pts)
                encoder, last_pts = None, None
                if item is _STOP:
                    rung.window.reset()
                if isinstance(item, _Reopen):
                    width, height = item.width, item.height
                if item is _END:
                    break
                continue
            assert isinstance(item, tuple)  # (scaled frame, keyframe), queued by _on_frame
            frame, keyframe = item
            if broken:
                self._drop("encoder")
                continue
            if encoder is None:
                try:
                    encoder = RungEncoder(
                        rung.spec, width, height, rung.frame_rate, self.preset, self.encode_threads
                    )
                except (av.FFmpegError, ValueError) as exc:
                    log.error("%s: cannot open libx264 for %s: %s", self.name, rung.spec.name, exc)
                    broken = True
                    self._drop("encoder")
                    continue
                if encoder.config != config:
                    config = encoder.config
                    self._call_soon(self._deliver, rung.spec.name, [config])
            rung.frames_encoded += 1
            last_pts = self._emit(rung, self._safe(rung, encoder.encode, frame, keyframe), last_pts)
        if self.metrics is not None:
            self.metrics.realtime_factor.labels(rung.spec.name).set(0)

    def _safe(
        self, rung: _Rung, call: Callable[..., list[MediaPacket]], *args: object
    ) -> list[MediaPacket]:
        try:
            return call(*args)
        except av.FFmpegError as exc:
            log.warning("%s: libx264 failed on %s: %s", self.name, rung.spec.name, exc)
            self._drop("encoder")
            return []

    def _emit(self, rung: _Rung, packets: list[MediaPacket], last_pts: int | None) -> int | None:
        if not packets:
            return last_pts
        for packet in packets:
            if last_pts is not None:
                rung.encoded_ms += packet.pts_ms - last_pts
            last_pts = packet.pts_ms
            factor = rung.window.add(packet.pts_ms)
        rung.packets_out += len(packets)
        if self.metrics is not None:
            self.metrics.realtime_factor.labels(rung.spec.name).set(factor)
        self._call_soon(self._deliver, rung.spec.name, packets)
        return last_pts

    # --- back on the loop ---

    def _call_soon(self, callback: Callable[..., None], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to receive the output
            log.debug("%s: event loop closed, output discarded", self.name)

    def _deliver(self, rung_name: str, items: Sequence[RenditionItem]) -> None:
        for item in items:
            try:
                self.on_output(rung_name, item)
            except Exception:  # a consumer bug must not stop the other rungs' output
                log.exception("%s: on_output failed for rung %s", self.name, rung_name)

    def _set_closed(self) -> None:
        if self.metrics is not None:
            for rung in self.rungs:
                if rung.state == "active":
                    self.metrics.rungs_active.labels(rung.spec.name).dec()
        if self.thumbnailer is not None:
            self.thumbnailer.end()
        if not self._closed.done():
            self._closed.set_result(None)

    def _drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += count
        if self.metrics is not None:
            self.metrics.frames_dropped.labels(reason).inc(count)

    def _bad_packet(self, packet: MediaPacket, exc: Exception) -> None:
        self._drop("bad_packet")
        if self.dropped["bad_packet"] in (1, 10, 100) or self.dropped["bad_packet"] % 1000 == 0:
            log.warning(
                "%s: undecodable packet at dts %d ms skipped (%d so far): %s",
                self.name,
                packet.dts_ms,
                self.dropped["bad_packet"],
                exc,
            )
