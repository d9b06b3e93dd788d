"""The live's poster: a JPEG of a recent keyframe, at most one per interval.

Two ways in. Alone, `push(packet)` takes source keyframes (one per `interval_s` of media time)
and a worker thread decodes each by itself: a keyframe needs no other frame, so nothing but
those packets is ever decoded. Behind a `Ladder`, which decodes every frame anyway,
`push_frame(frame, pts_ms)` takes the decoded keyframe instead (no second decoder). Either
way the picture is scaled to `width` (never up), JPEG-encoded with FFmpeg's mjpeg encoder off
the event loop, and handed to the async `write` callback on the loop (the pipeline stores it
as poster.jpg). The queue holds two jobs; more are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

from media.types import MediaPacket, VideoConfig
from packager.ladder.codec import make_decoder, to_av_packet
from packager.ladder.drop_queue import DropQueue

log = logging.getLogger(__name__)

WriteCallback = Callable[[bytes], Awaitable[None]]
_END = object()
# mjpeg quantiser bounds: 2-3 is FFmpeg's "-q:v 2" territory, a sharp poster of ~20-40 KB.
_JPEG_OPTIONS = {"qmin": "2", "qmax": "3"}


def thumbnail_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    out_w = min(max_width, width)
    out_h = round(height * out_w / width)
    return max(2, out_w // 2 * 2), max(2, out_h // 2 * 2)


def encode_jpeg(frame: VideoFrame) -> bytes:
    """One full-range 4:2:0 JPEG of an already scaled frame."""
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, VideoCodecContext)  # create() with "w" on a video codec
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.options = dict(_JPEG_OPTIONS)
    frame.pts = 0
    frame.time_base = Fraction(1, 1)
    packets = encoder.encode(frame) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


class Thumbnailer:
    def __init__(
        self,
        write: WriteCallback,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        interval_s: float,  # STREAMD_HLS_THUMBNAIL_INTERVAL
        width: int = 640,
        queue_size: int = 2,
        name: str = "",
    ) -> None:
        self.write = write
        self.loop = loop or asyncio.get_running_loop()
        self.interval_ms = round(interval_s * 1000)
        self.width = width
        self.name = name or "thumbnails"
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.keyframes_decoded = 0  # by its own decoder (alone)
        self.frames_taken = 0  # decoded by the ladder (push_frame)
        self._config: VideoConfig | None = None
        self._queue: DropQueue[MediaPacket | VideoFrame] = DropQueue(queue_size)
        self._lock = threading.Lock()  # push/push_frame may come from the ladder's thread
        self._last_pts: int | None = None
        self._reformatter = VideoReformatter()
        self._thread: threading.Thread | None = None
        self._ended = False
        self._closed: asyncio.Future[None] = self.loop.create_future()
        self._writes: set[asyncio.Task[None]] = set()

    def start(self, config: VideoConfig) -> None:
        with self._lock:
            if self._ended:
                return
            if self._config is not None and config != self._config:
                self._queue.put_control(config)  # the worker switches decoders in order
            self._config = config
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self.name}-jpeg", daemon=True
                )
                self._thread.start()

    def push(self, packet: MediaPacket) -> None:
        """A source packet; only a keyframe due for a thumbnail is kept (thread-safe)."""
        if packet.kind != "video" or not packet.keyframe or packet.track_id != 0:
            return
        with self._lock:
            if self._config is None or not self._due(packet.pts_ms):
                return
            self._offer(packet)

    def push_frame(self, frame: VideoFrame, pts_ms: int) -> None:
        """A decoded source frame (from the ladder's decode thread). It is scaled right away,
        in the caller's thread: the caller still owns the frame and may scale it next."""
        with self._lock:
            if self._config is None or not self._due(pts_ms):
                return
            width, height = thumbnail_size(frame.width, frame.height, self.width)
            small = self._reformatter.reformat(
                frame, width, height, "yuvj420p", interpolation=Interpolation.BICUBIC, threads=1
            )
            self.frames_taken += 1
            self._offer(small)

    def end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self._thread is not None:
                self._queue.put_control(_END)
            elif not self._closed.done():
                self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # --- internals ---

    def _due(self, pts_ms: int) -> bool:
        last = self._last_pts
        if self._ended or (last is not None and 0 <= pts_ms - last < self.interval_ms):
            return False
        self._last_pts = pts_ms  # media time going backwards (a new timeline) is due too
        return True

    def _offer(self, job: MediaPacket | VideoFrame) -> None:
        if not self._queue.put(job):
            self.dropped += 1
            self._last_pts = None  # take the next keyframe instead
            log.warning("%s: JPEG encoding is behind, thumbnail skipped", self.name)

    def _run(self) -> None:
        decoder: VideoCodecContext | None = None
        config = self._config
        try:
            while (job := self._queue.get()) is not _END:
                if isinstance(job, VideoConfig):
                    config, decoder = job, None
                    continue
                try:
                    if isinstance(job, MediaPacket):
                        assert config is not None  # start() set it before the first push
                        if decoder is None:
                            decoder = make_decoder(config, threads=1)
                        frame = self._decode_keyframe(decoder, job)
                        if frame is None:
                            continue
                        width, height = thumbnail_size(frame.width, frame.height, self.width)
                        frame = self._reformatter.reformat(
                            frame, width, height, "yuvj420p", interpolation=Interpolation.BICUBIC
                        )
                    else:
                        assert isinstance(job, VideoFrame)  # what push_frame queues
                        frame = job
                    jpeg = encode_jpeg(frame)
                except (av.FFmpegError, ValueError) as exc:
                    self.failed += 1
                    log.warning("%s: thumbnail failed: %s", self.name, exc)
                    continue
                self._call_soon(self._start_write, jpeg)
        finally:
            self._call_soon(self._set_closed)

    def _decode_keyframe(
        self, decoder: VideoCodecContext, packet: MediaPacket
    ) -> VideoFrame | None:
        # Draining right after the keyframe gets its picture out of the decoder's reorder
        # delay; the flush then readies the decoder for the next, unrelated keyframe.
        frames = decoder.decode(to_av_packet(packet)) + decoder.decode(None)
        decoder.flush_buffers()
        self.keyframes_decoded += 1
        if not frames:
            log.warning("%s: keyframe at %d ms gave no picture", self.name, packet.pts_ms)
            return None
        return frames[0]

    def _call_soon(self, callback: Callable[..., None], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to store the poster
            log.debug("%s: event loop closed, thumbnail discarded", self.name)

    def _start_write(self, jpeg: bytes) -> None:
        task = self.loop.create_task(self._write(jpeg))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, jpeg: bytes) -> None:
        try:
            await self.write(jpeg)
        except Exception:  # a failed store is logged; the next thumbnail tries again
            self.failed += 1
            log.exception("%s: storing the thumbnail failed", self.name)
            return
        self.written += 1

    def _set_closed(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
