"""The transcoded ABR ladder of one live: decode the source once, scale, encode every rung.

Threads (PyAV releases the GIL in FFmpeg, so they run in parallel; the event loop only queues):

    push() (loop) -> bounded packet queue -> decode thread: decode (FFmpeg frame+slice threads,
        2 by default), decimate, scale (cascaded) -> small bounded frame queue per rung -> one
        encoder thread per rung (`rung.py`): libx264 (sliced threads, one per core up
        to 4), Annex B -> AVCC -> loop.call_soon_threadsafe(on_output)

Decisions (see the packager/types.py docstring for the alignment rule they serve):

- Keyframes: x264 never places one itself (huge keyint, no scene cuts, closed GOPs); the frame
  whose pts is a source keyframe's pts is marked I and, with ``forced-idr``, becomes an IDR.
  So every rendition has its IDRs at exactly the source's keyframe timestamps.
- Latency (target: a rung's segment closes at most 0.5 s after the source's): no B-frames in
  rungs (``bframes=0``: dts == pts, nothing to reorder), rc-lookahead 5 instead of veryfast's
  10, x264 *sliced* threads (frame threads add a frame of delay each; measured CPU is the
  same), two decoder threads (not FFmpeg's "cores + 1": each adds a frame too). Delay: the
  source's reorder depth (2 frames for OBS) + 1 decode + 6 encode frames, ~0.3 s at 30 fps
  from a keyframe's push to its rung IDR. With rc-lookahead 8 bench/segment_lag.py measured a
  median rung lag of 0.49 s (source 0.04 s) on the 2-core machine: too close to the 0.5 s
  target. B-frames would save some bits at the same bitrate, at ~2 more frames of delay.
- Frame rate: `output_rate` divides the source rate by the smallest whole step that fits the
  rung's cap (60 -> 30, 50 -> 25); `Decimator` drops frames by pts accordingly and never drops
  a source keyframe (a forced IDR).
- Scaling: `VideoReformatter` (swscale) per rung with bilinear filtering, one thread, in the
  decode thread. Measured on 1080p -> 720/480/360: same CPU as an `av.filter.Graph` with
  split/scale (~5.8 ms/frame), a third of bicubic. Scaling in the decode thread (rather than in
  each encoder thread) is deliberate: swscale temporarily rewrites colour fields of the *source*
  frame, so rungs must not scale one frame concurrently; and it keeps only small frames queued.
  Scaling cascades: the largest running rung scales from the source, the smaller ones from
  its scaled frame (480p and 360p from 720p, not from 1080p): ~10-20% less scaler CPU in a
  (noisy) microbenchmark, unlike the ffmpeg CLI ladder's split/scale; against a Lanczos scale
  of the source, 480p keeps ~39 dB PSNR (luma) and 360p ~44 dB (direct bilinear: 39 and 48).
- Shedding (`shedding.py`): the packet queue is the one overload signal (the decode
  thread blocks on a full rung queue, so any slow stage backs up into it). Under sustained
  overload the most expensive running rung stops: its encoder is flushed (every frame handed to
  it comes out) and it emits nothing more. After a calm cool-down it restarts at the next
  source keyframe with a fresh encoder (its VideoConfig is emitted again only if it differs).
  If the queue fills anyway, packets are dropped (push() never blocks) and decoding resumes at
  the next keyframe.
- What a player sees: a shed rung's playlist stops growing (the pipeline keeps the last one);
  a player on it stalls and its ABR logic moves to another variant, the source one included.
  The rung emits `RungPaused` after its last packet, so its rendition closes the segment in
  progress there; on restore its next segment starts at a source keyframe, after a hole in
  media time, marked with one EXT-X-DISCONTINUITY.

Precondition: pts of the source packets increase within one Ladder (the pipeline owns the
continuous timeline across reconnects); frames whose pts does not are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame

from media.types import MediaPacket, VideoConfig
from packager.ladder.codec import (
    make_decoder,
    output_rate,
    rung_size,
    runs_for_source,
    to_av_packet,
)
from packager.ladder.drop_queue import DropQueue
from packager.ladder.metrics import LadderMetrics
from packager.ladder.rung import END, RungWorker
from packager.ladder.shedding import LadderPolicy, RungLoad, Shedder
from packager.types import LadderItem, PosterWriter, Rung

__all__ = ["Ladder", "LadderMetrics", "LadderPolicy"]

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, LadderItem], None]


class Ladder:
    """Transcodes one live's source video into the rungs that fit under it.

    `on_output(rung_name, item)` runs on the event loop thread: first the rung's `VideoConfig`
    (libx264's avcC), then its `MediaPacket`s (AVCC, 4-byte lengths, ms timestamps on the
    source's clock, keyframe == IDR); a `RungPaused` when the rung is shed. With a
    `thumbnailer`, the ladder feeds it (decoded frames while it decodes anyway, keyframe
    packets otherwise) and starts and ends it; the caller then does not push to it.
    """

    def __init__(
        self,
        rungs: Sequence[Rung],
        preset: str,
        *,
        on_output: OutputCallback,
        loop: asyncio.AbstractEventLoop,
        policy: LadderPolicy,
        metrics: LadderMetrics | None = None,
        thumbnailer: PosterWriter | None = None,
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
        self.policy = policy
        self.clock = clock
        self.name = name or "ladder"
        self.decode_threads = decode_threads
        self.encode_threads = encode_threads  # 0: x264_threads()
        self.rungs: list[RungWorker] = []
        self.source: VideoConfig | None = None
        self.packets_in = 0
        self.max_queue_depth = 0  # the most packets ever waiting: how far behind it fell
        self.frames_decoded = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()  # the drop counters, bumped from several threads
        self._queue: DropQueue[MediaPacket] = DropQueue(self.policy.queue_packets)
        self._closed: asyncio.Future[None] = loop.create_future()
        self._ended = False
        self._resync = False
        self._threads: list[threading.Thread] = []
        # Decode thread only.
        self._shedder = Shedder(self.policy)
        self._decoder: VideoCodecContext | None = None
        self._need_key = True
        self._idle = False
        self._keyframes: collections.deque[int] = collections.deque()

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
            load = RungLoad(spec.name, width * height * spec.fps, self.policy.restore_after_s)
            self.rungs.append(
                RungWorker(
                    spec,
                    width,
                    height,
                    output_rate(spec, source_video),
                    load,
                    self.preset,
                    self.encode_threads,
                    self.policy.rung_queue_frames,
                    self._emit,
                    self._drop,
                    self.metrics,
                )
            )
        log.info(
            "%s: %s %dx%d source; rungs %s (skipped: %s)",
            self.name,
            source_video.codec,
            source_video.width,
            source_video.height,
            ", ".join(f"{r.name} {r.width}x{r.height}@{float(r.frame_rate):g}" for r in self.rungs)
            or "none",
            ", ".join(r.name for r in self.specs if r not in chosen) or "none",
        )
        if not self.rungs:
            return  # push() hands keyframes to the thumbnailer, if any
        for rung in self.rungs:
            self._spawn(f"{self.name}-{rung.name}", rung.run)
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
            self._queue.put_control(END)  # the decode thread closes once all is emitted
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
                r.name: {
                    "width": r.width,
                    "height": r.height,
                    "fps": float(r.frame_rate),
                    "state": r.load.state,
                    "frames_encoded": r.frames_encoded,
                    "packets_out": r.packets_out,
                    "encoded_seconds": r.encoded_ms / 1000,
                    "realtime_factor": round(r.window.factor, 3),
                    "sheds": r.load.sheds,
                    "restores": r.load.restores,
                }
                for r in self.rungs
            },
        }

    # --- the decode thread ---

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _decode_loop(self) -> None:
        try:
            while (item := self._queue.get()) is not END:
                if isinstance(item, MediaPacket):
                    if self.metrics is not None:
                        self.metrics.queue_depth.dec()
                    self._on_packet(item)
                elif isinstance(item, VideoConfig):
                    self._reconfigure(item)
            self._drain_decoder()
        finally:
            for rung in self.rungs:
                rung.queue.put(END)
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()
            self._call_soon(self._set_closed)

    def _on_packet(self, packet: MediaPacket) -> None:
        self._shed_or_restore(packet)
        if all(r.load.state == "shed" for r in self.rungs):
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
            rung.resize(*rung_size(rung.spec, config.width, config.height))
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
        taken = [r for r in self.rungs if r.take(pts, keyframe)]
        if not taken:
            return
        # Cascade: the largest rung scales from the source, smaller ones from its frame (480p
        # and 360p from 720p read 2.25x fewer pixels than from 1080p). Every frame is scaled
        # before any is queued: swscale briefly rewrites fields of the frame it reads, so no
        # encoder thread may hold that frame yet.
        taken.sort(key=lambda r: r.width * r.height, reverse=True)
        top = taken[0]
        base = top.scale(frame)
        scaled = [(top, base)]
        for rung in taken[1:]:
            fits = rung.width <= top.width and rung.height <= top.height
            scaled.append((rung, rung.scale(base if fits else frame)))
        for rung, picture in scaled:
            rung.put(picture, keyframe)

    def _shed_or_restore(self, packet: MediaPacket) -> None:
        depth = len(self._queue)
        key_pts = packet.pts_ms if packet.keyframe else None
        shed, restored = self._shedder.tick(
            self.clock(), depth, [r.load for r in self.rungs], key_pts
        )
        for rung in self.rungs:
            if rung.load is shed:
                rung.stop()
                log.warning(
                    "%s: cannot keep up (%d packets queued): shedding rung %s; "
                    "retry after %.0f s calm",
                    self.name,
                    depth,
                    rung.name,
                    rung.load.cooldown,
                )
                if self.metrics is not None:
                    self.metrics.rungs_shed.labels(rung.name).inc()
            if rung.load is restored:
                log.info(
                    "%s: load allows: restoring rung %s at pts %d ms", self.name, rung.name, key_pts
                )
                if self.metrics is not None:
                    self.metrics.rungs_restored.labels(rung.name).inc()

    # --- back to the loop ---

    def _emit(self, rung_name: str, items: Sequence[LadderItem]) -> None:
        self._call_soon(self._deliver, rung_name, items)

    def _call_soon(self, callback: Callable[..., None], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to receive the output
            log.debug("%s: event loop closed, output discarded", self.name)

    def _deliver(self, rung_name: str, items: Sequence[LadderItem]) -> None:
        for item in items:
            try:
                self.on_output(rung_name, item)
            except Exception:  # a consumer bug must not stop the other rungs' output
                log.exception("%s: on_output failed for rung %s", self.name, rung_name)

    def _set_closed(self) -> None:
        if self.metrics is not None:
            for rung in self.rungs:
                if rung.load.state == "active":
                    self.metrics.rungs_active.labels(rung.name).dec()
        if self.thumbnailer is not None:
            self.thumbnailer.end()
        if not self._closed.done():
            self._closed.set_result(None)

    def _drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1
        if self.metrics is not None:
            self.metrics.frames_dropped.labels(reason).inc()

    def _bad_packet(self, packet: MediaPacket, exc: Exception) -> None:
        self._drop("bad_packet")
        count = self.dropped["bad_packet"]
        if count in (1, 10, 100) or count % 1000 == 0:
            log.warning(
                "%s: undecodable packet at dts %d ms skipped (%d so far): %s",
                self.name,
                packet.dts_ms,
                count,
                exc,
            )
